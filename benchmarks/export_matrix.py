"""Export formats beyond the CI set (NCNN, MNN, CoreML, ...): export each family's checkpoint with `yolo export`,
run the exported file through Ultralytics' AutoBackend (what `yolo predict` uses) and compare its raw output with
PyTorch's. Writes a markdown table; the README's export table quotes it.

    python benchmarks/export_matrix.py --formats ncnn mnn coreml --out benchmarks/results/export_matrix.md
    python benchmarks/export_matrix.py --formats mnn --args int8=True    # quantized variants: key=value for export

The toolchains are not dependencies of the plugin: `pip install ncnn pnnx MNN coremltools` first. The checkpoints
are random-init models calibrated as tests/test_export.py calibrates them (``tests/export_check.py``: BN
statistics from coco8, spread head outputs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ultralytics import YOLO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the export checks the tests run (tests/export_check.py)

from export_check import FAMILIES, calibrated_checkpoint, errors, resized, torch_output

DATASETS = Path(os.environ.get("YOLO_MOBILEVIT_DATASETS", ROOT.parent / "shared" / "datasets"))

SUFFIX = {
    "ncnn": "_ncnn_model",
    "mnn": ".mnn",
    "coreml": ".mlpackage",
    "coreai": ".aimodel",
    "tflite": ".tflite",
    "litert": ".tflite",
    "onnx": ".onnx",
    "openvino": "_openvino_model",
    "paddle": "_paddle_model",
    "executorch": "_executorch_model",
    "saved_model": "_saved_model",
    "tfjs": "_web_model",
    "imx": "_imx_model",
    "rknn": "_rknn_model",
    "deepx": "_deepx_model",
    "qnn": "_qnn.onnx",
    "xilinx": "_xilinx_model",
}


def exported_path(pt: Path, fmt: str) -> Path:
    suffix = SUFFIX[fmt]
    return pt.with_suffix(suffix) if suffix.startswith(".") else pt.with_name(pt.stem + suffix)


def run_backend(path: Path, x: torch.Tensor) -> np.ndarray:
    from ultralytics.nn.autobackend import AutoBackend

    backend = AutoBackend(str(path), device=torch.device("cpu"))
    y = backend(x)
    y = y[0] if isinstance(y, (list, tuple)) else y
    return y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)


def shown(arg: str) -> str:
    """A ``key=value`` export argument as the table shows it: a path value by its file name only."""
    key, _, value = arg.partition("=")
    return f"{key}={Path(value).name}" if "/" in value else arg


def measure(
    family: str, fmt: str, imgsz: int, work: Path, extra: tuple[str, ...] = (), image: Path | None = None
) -> dict[str, str]:
    """Export ``family``'s calibrated checkpoint to ``fmt`` with ``extra`` ``key=value`` export arguments and compare
    its AutoBackend output with PyTorch's on ``image`` (else seeded uniform noise): a table row."""
    label = " ".join((fmt, *(shown(a) for a in extra)))
    pt = work / f"{family}.pt"
    if not pt.exists():
        shipped = ROOT / "cfg" / f"{FAMILIES.get(family, family)}".removesuffix(".yaml")
        config = f"{shipped}.yaml" if Path(f"{shipped}.yaml").exists() else f"{family}.yaml"  # else stock YOLO
        calibrated_checkpoint(config, DATASETS / "coco8" / "images", pt)
    start = time.perf_counter()
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("yolo")), "export", f"model={pt}", f"format={fmt}", f"imgsz={imgsz}",
         "device=cpu", *extra],
        cwd=work, capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    out = exported_path(pt, fmt)
    if proc.returncode != 0 or not out.exists():
        lines = (proc.stdout + proc.stderr).splitlines()
        reason = next((ln for ln in reversed(lines) if "rror" in ln and "_pytree" not in ln), "no file")
        return {"family": family, "format": label, "export": f"fails: {reason.strip()[:160]}"}
    if image is None:
        x = torch.rand(1, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))
    else:
        x = resized(image, imgsz)[None]
    expected = torch_output(YOLO(str(pt)).model.float().eval(), x)
    try:
        got = run_backend(out, x)
    except Exception as e:  # noqa: BLE001 (any runtime failure is a result to report, not a reason to stop)
        return {"family": family, "format": label, "export": f"ok ({seconds:.0f} s)", "run": f"fails: {e}"[:160]}
    box, score = errors(got, expected)
    return {
        "family": family,
        "format": label,
        "export": f"ok ({seconds:.0f} s)",
        "run": "ok",
        "box err (px)": f"{box:.2e}",
        "score err": f"{score:.2e}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", nargs="+", default=["ncnn", "mnn", "coreml"])
    parser.add_argument(
        "--families",
        nargs="+",
        default=list(FAMILIES),
        help=f"{', '.join(FAMILIES)}, a cfg/ file by name (yolov8-mobilevit-win) or a stock Ultralytics model with a Detect head (yolov8n, yolo11n) as the control",
    )
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--args", nargs="*", default=[], help="extra key=value export arguments, e.g. int8=True")
    parser.add_argument(
        "--image",
        type=Path,
        default=None,
        help="compare on this image instead of noise (INT8 exports: noise lies outside the calibrated ranges)",
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--append", action="store_true", help="add this run's table to --out instead of replacing it")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="export_matrix_"))
    rows = [
        measure(f, fmt, args.imgsz, work, tuple(args.args), args.image) for fmt in args.formats for f in args.families
    ]
    cols = ["family", "format", "export", "run", "box err (px)", "score err"]
    lines = [
        f"Export matrix at imgsz {args.imgsz} (torch {torch.__version__}; `{' '.join(map(shown, sys.argv))}`)",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    lines += ["| " + " | ".join(r.get(c, "-") for c in cols) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        previous = args.out.read_text() + "\n" if args.append and args.out.exists() else ""
        args.out.write_text(previous + text)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
