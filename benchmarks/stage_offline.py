"""Stage what an offline GPU machine needs to run ``benchmarks/gpu_check.sh``: this project's wheel, wheels of the
packages such machines lack (pinned to the versions installed here), and coco128 with its images shrunk to the
benchmark's training size (labels are normalised, so they stay valid).

    python benchmarks/stage_offline.py .offline --python-version 3.12 --imgsz 320
    # copy the repository with .offline/ to the GPU machine, then there:
    STAGE=.offline bash benchmarks/gpu_check.sh runs/gpu_check

Needs a package index here (``pip download``); the GPU machine needs none.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ultralytics", "ultralytics-thop", "polars", "polars-runtime-32")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def pinned(names: tuple[str, ...]) -> list[str]:
    """``name==version`` for each package installed here (ones not installed are skipped)."""
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def download_wheels(pins: list[str], python_version: str, dest: Path) -> None:
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(dest)]
    cmd += ["--python-version", python_version, "--implementation", "cp", *platforms, *pins]
    subprocess.run(cmd, check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), str(ROOT)], check=True)


def shrink_dataset(src: Path, dest: Path, imgsz: int) -> None:
    """Copy a YOLO dataset folder, resizing every image so that its long side is at most ``imgsz``."""
    import cv2

    for path in sorted(src.rglob("*")):
        out = dest / path.relative_to(src)
        if path.is_dir() or path.suffix == ".cache":
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() not in {".jpg", ".jpeg", ".png"}:
            shutil.copy2(path, out)
            continue
        image = cv2.imread(str(path))
        scale = imgsz / max(image.shape[:2])
        if scale < 1:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(out), image, [cv2.IMWRITE_JPEG_QUALITY, 90])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path, help="stage folder (emptied first)")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    parser.add_argument("--imgsz", type=int, default=320, help="long side of the staged images (default 320)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "coco128")
    args = parser.parse_args()

    shutil.rmtree(args.dest, ignore_errors=True)
    args.dest.mkdir(parents=True)
    download_wheels(pinned(PACKAGES), args.python_version, args.dest)
    shrink_dataset(args.data, args.dest / args.data.name, args.imgsz)
    total = sum(p.stat().st_size for p in args.dest.rglob("*") if p.is_file())
    for wheel in sorted(args.dest.glob("*.whl")):
        print(f"{wheel.name}: {wheel.stat().st_size / 2**20:.1f} MiB")
    print(f"{args.dest}: {total / 2**20:.1f} MiB in all")


if __name__ == "__main__":
    main()
