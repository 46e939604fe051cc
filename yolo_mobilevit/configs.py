"""The shipped model configs: found by bare name from any folder, listed with their measured cost, copied to edit.

``model=yolov8s-mobilevit.yaml`` resolves as ``model=yolov8s.yaml`` does in Ultralytics: Ultralytics strips the scale
letter and looks for the file in the working directory, then among its own configs; the ``check_yaml`` row of the
patch table (:func:`make_check_yaml`) adds one last place, :func:`config_dir`. A file of that name in the working
directory therefore wins, and a name found nowhere still gets Ultralytics' own error. Resolution globs the folder, so
a config added to ``cfg/`` needs no code change.

The listing's figures (parameters, GFLOPs at 640) come from :data:`INDEX_FILE`, written by
``python -m yolo_mobilevit.configs --write-index`` from models built here; a config that is not in the index, or whose
file changed since, is built and measured when it is listed (``tests/test_cfg_index.py`` fails until the index is
rewritten, and re-measures a sample of it).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent
INDEX_FILE = PACKAGE / "cfg_index.json"
INDEX_COMMAND = "python -m yolo_mobilevit.configs --write-index"
IMGSZ = 640
_PREFIX = re.compile(r"^(yolo(?:v)?\d+)([nslmx])?-")  # yolov8-..., yolo11-..., yolo26s-... (scale letter optional)


def config_dir() -> Path | None:
    """The folder of the shipped configs: ``yolo_mobilevit/cfg`` in an installed wheel (pyproject force-includes the
    repository's ``cfg/`` there), else the ``cfg/`` of the source checkout the package is imported from (an editable
    install); None when neither exists."""
    packaged = PACKAGE / "cfg"
    if packaged.is_dir():
        return packaged
    checkout = PACKAGE.parent  # an editable install: the package folder sits in the checkout beside cfg/
    if (checkout / "pyproject.toml").is_file() and (checkout / "cfg").is_dir():
        return checkout / "cfg"
    return None


def shipped_configs() -> list[Path]:
    folder = config_dir()
    return sorted(folder.glob("*.yaml")) if folder else []


def find_shipped(name: str | Path) -> str | None:
    """The shipped config file called ``name`` (a bare name or a path inside the config folder), or None."""
    name = str(name).strip()
    folder = config_dir()
    if not folder or not name or "://" in name or Path(name).is_absolute():
        return None
    matches = sorted(glob.glob(glob.escape(str(folder)) + "/**/" + name, recursive=True))
    return matches[0] if matches else None


def make_check_yaml(original: Callable[..., Any]) -> Callable[..., Any]:
    """``check_yaml`` of ``ultralytics.nn.tasks`` (what ``yaml_model_load`` resolves model YAMLs with) that looks
    among the shipped configs when Ultralytics found the name nowhere; Ultralytics' result and errors otherwise."""

    def check_yaml(file: str | Path, suffix: tuple[str, ...] = (".yaml", ".yml"), hard: bool = True) -> Any:
        if not hard:
            return original(file, suffix, hard=False) or find_shipped(file) or []
        try:
            return original(file, suffix, hard=True)
        except FileNotFoundError:
            shipped = find_shipped(file)
            if shipped is None:
                raise
            return shipped

    return check_yaml


def scaled_name(name: str, scale: str) -> str:
    """``yolov8-mobilevit.yaml``, ``s`` -> ``yolov8s-mobilevit.yaml`` (Ultralytics' scale-letter convention); a name
    without a ``yolo<version>-`` prefix is returned as it is."""
    return _PREFIX.sub(lambda m: f"{m[1]}{scale}-", name, count=1)


def scale_of(name: str) -> str:
    """The scale letter in a config name (``yolov8s-mobilevit.yaml`` -> ``s``), or ``""``."""
    match = _PREFIX.match(name)
    return (match[2] or "") if match else ""


def unscaled_name(name: str) -> str:
    """``yolo26n-mobilevit-xxs.yaml`` -> ``yolo26-mobilevit-xxs.yaml`` (the file that holds every scale)."""
    return _PREFIX.sub(lambda m: f"{m[1]}-", name, count=1)


def resolve_shipped(name: str) -> Path:
    """The shipped file for a name as a user types it, scale letter or not; FileNotFoundError naming the closest
    shipped names otherwise."""
    found = find_shipped(name) or find_shipped(unscaled_name(name))
    if found:
        return Path(found)
    import difflib

    names = [p.name for p in shipped_configs()]
    close = difflib.get_close_matches(unscaled_name(name), names, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `yolo-mobilevit cfg` lists them"
    raise FileNotFoundError(f"{name!r} is not a shipped config (looked in {config_dir()}){hint}")


def copy_config(name: str, folder: str | Path = ".", force: bool = False) -> Path:
    """Write the shipped config ``name`` (scale letter or not) into ``folder`` under the file's own (unlettered)
    name, so that ``model=<lettered name>`` then picks the copy; FileExistsError unless ``force``."""
    source = resolve_shipped(name)
    target = Path(folder) / source.name
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; remove it or pass --force to overwrite it")
    shutil.copyfile(source, target)
    return target


# ------------------------------------------------------------------------------------------ measured figures


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def scales(path: Path) -> list[str]:
    """The scale letters a config defines (``[""]`` for one without ``scales`` or without a ``yolo<v>-`` name)."""
    import yaml

    defined = list((yaml.safe_load(path.read_text()) or {}).get("scales") or {})
    return defined if defined and _PREFIX.match(path.name) else [""]


def measure(path: Path, imgsz: int = IMGSZ) -> dict[str, Any]:
    """Build a config at every scale it defines and measure it: family (the group of the family its backbone rows
    belong to, :func:`yolo_mobilevit.families.group_of_config`), task, head, and per scale the parameters
    and GFLOPs at ``imgsz`` (Ultralytics' figure and with attention counted, :func:`tools.compare.model_stats`)."""
    from ultralytics import YOLO

    from .families import group_of_config
    from .tools.compare import model_stats

    entry: dict[str, Any] = {"sha256": digest(path), "family": group_of_config(path)[0], "scales": {}}
    for scale in scales(path):
        yolo = YOLO(str(path.with_name(scaled_name(path.name, scale))) if scale else str(path), verbose=False)
        stats = model_stats(yolo.model, imgsz)
        generation = _PREFIX.match(path.name)  # yolov8 -> "YOLOv8 Detect", yolo26 -> "YOLO26 Segment"
        entry["task"] = yolo.task
        entry["head"] = " ".join(
            filter(None, [generation and re.sub("^yolo", "YOLO", generation[1]), type(yolo.model.model[-1]).__name__])
        )
        entry["scales"][scale] = {
            "params": stats["params"],
            "gflops": round(stats["gflops_ultralytics"], 2),
            "gflops_attention": round(stats["gflops_attention"], 2),
        }
    return entry


def read_index() -> dict[str, Any]:
    return json.loads(INDEX_FILE.read_text()) if INDEX_FILE.is_file() else {"configs": {}}


def write_index(progress: Callable[[str], None] = print, everything: bool = False) -> Path:
    """Measure the shipped configs (:func:`measure`) and write :data:`INDEX_FILE`. Entries of unchanged files are
    kept when the index was measured with these same versions, unless ``everything`` (after a code change)."""
    import torch
    import ultralytics

    from .versions import __version__

    versions = {"yolo_mobilevit": __version__, "ultralytics": ultralytics.__version__, "torch": torch.__version__}
    old = read_index()
    kept = {} if everything or old.get("measured_with") != versions else old["configs"]
    configs = shipped_configs()
    entries = {}
    for i, path in enumerate(configs, 1):
        if path.name in kept and kept[path.name]["sha256"] == digest(path):
            entries[path.name] = kept[path.name]
            continue
        progress(f"[{i}/{len(configs)}] {path.name}")
        entries[path.name] = measure(path)
    index = {"command": INDEX_COMMAND, "imgsz": IMGSZ, "measured_with": versions, "configs": entries}
    INDEX_FILE.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    return INDEX_FILE


def listing(measure_all: bool = False, progress: Callable[[str], None] | None = None) -> tuple[list[dict], int]:
    """One row per shipped config and scale, with its figures from the index where the file is unchanged, else
    measured now (all of them with ``measure_all``). Returns the rows and how many configs were measured now."""
    index = read_index()["configs"]
    rows, measured = [], 0
    configs = shipped_configs()
    for path in configs:
        entry = None if measure_all else index.get(path.name)
        if entry is None or entry["sha256"] != digest(path):
            measured += 1
            if progress:
                progress(f"measuring {path.name} ({measured}; not in the index or changed since)")
            entry = measure(path)
        for scale, figures in entry["scales"].items():
            rows.append({
                "model": scaled_name(path.name, scale) if scale else path.name,
                "family": entry["family"],
                "task": entry["task"],
                "head": entry["head"],
                "params (M)": f"{figures['params'] / 1e6:.2f}",
                f"GFLOPs@{IMGSZ}": f"{figures['gflops']:.1f}",
                f"GFLOPs@{IMGSZ} (attention counted)": f"{figures['gflops_attention']:.1f}",
            })  # fmt: skip
    return rows, measured


def table(rows: list[dict[str, str]]) -> str:
    """Rows as aligned plain-text columns."""
    if not rows:
        return ""
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in keys}
    numeric = {k for k in keys if all(re.fullmatch(r"[\d.]+", r[k]) for r in rows)}

    def line(values: dict[str, str]) -> str:
        return "  ".join(values[k].rjust(widths[k]) if k in numeric else values[k].ljust(widths[k]) for k in keys)

    return "\n".join([line({k: k for k in keys}), *(line(r) for r in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the measured index of the shipped configs.")
    parser.add_argument(
        "--write-index", action="store_true", help=f"measure new or changed configs; write {INDEX_FILE.name}"
    )
    parser.add_argument("--all", action="store_true", help="measure every config (after a change of the code)")
    args = parser.parse_args(argv)
    if not args.write_index:
        parser.print_help()
        return 2
    import yolo_mobilevit

    yolo_mobilevit.register()
    print(f"wrote {write_index(lambda s: print(s, file=sys.stderr, flush=True), everything=args.all)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
