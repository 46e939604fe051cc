"""What a comparison is given: the models (default list, checks, labels, family), the dataset, the train arguments."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import InputRefused


def __getattr__(name: str) -> Any:
    """``DEFAULT_MODELS`` (today's stock YOLO, then each family's flagships: the plugin's by bare name) and
    ``FAMILIES`` (``(group, marker)`` of the plot legend), read from the family registry when asked for."""
    from ... import families

    if name == "DEFAULT_MODELS":
        return tuple(families.flagships())
    if name == "FAMILIES":
        return tuple(families.compare_groups())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Keys the compare options own; as KEY=VALUE train arguments they would silently fork the shared recipe.
_OWN_KEYS = {
    "epochs": "--epochs",
    "imgsz": "--imgsz",
    "batch": "--batch",
    "seed": "--seed",
    "device": "--device",
    "data": "--data",
    "model": "the MODEL arguments",
    "project": "--project",
    "name": "--name",
    "exist_ok": "--exist-ok",
    "mode": "the compare command",
    "resume": "the compare command",
    "save_dir": "--project/--name",
    "pretrained": "--pretrained (one policy for every model)",
}


class CompareError(InputRefused):
    """A comparison that cannot start: a model or an argument is wrong. The message names it."""


def offline_dataset(name: str) -> Path | None:
    """The folder of dataset ``name`` in the offline datasets folder the user names in ``YOLO_MOBILEVIT_DATASETS``
    (it may not exist); None when the variable is unset."""
    root = os.environ.get("YOLO_MOBILEVIT_DATASETS")
    return Path(root) / name if root else None


def default_data() -> str:
    """coco128 from the offline datasets folder (:func:`offline_dataset`), else Ultralytics' ``coco128.yaml`` (which
    Ultralytics downloads)."""
    folder = offline_dataset("coco128")
    path = folder / "coco128.yaml" if folder else None
    return str(path) if path and path.is_file() else "coco128.yaml"


def default_models() -> list[str]:
    """:data:`DEFAULT_MODELS` (bare names: they resolve from any folder, in every model's process)."""
    from ...families import flagships

    return flagships()


def family(name: str) -> tuple[str, str]:
    """(family, plot marker) of a model name: ``yolo26n-mobilevitv2`` -> ("MobileViTv2", "D")
    (:func:`yolo_mobilevit.families.group_of_name`)."""
    from ...families import group_of_name

    return group_of_name(name)


def check_model(spec: str) -> str:
    """Return the model argument in a form a process started elsewhere resolves the same way, or raise CompareError
    naming it: a checkpoint must exist; a YAML must exist, possibly with Ultralytics' scale letter added to its name
    (``cfg/yolov8n-mobilevit.yaml`` for ``cfg/yolov8-mobilevit.yaml``), or be a config Ultralytics or the plugin
    ships (``yolov8n.yaml``, ``yolov8n-mobilevit.yaml``)."""
    path = Path(spec)
    if path.suffix == ".pt":
        if not path.is_file():
            raise CompareError(f"model {spec!r}: checkpoint not found ({path.resolve()})")
        return str(path.resolve())
    if path.suffix not in {".yaml", ".yml"}:
        raise CompareError(f"model {spec!r}: expected a model YAML (.yaml) or a checkpoint (.pt)")
    from ultralytics.nn.tasks import yaml_model_load

    try:
        yaml_model_load(spec)
    except Exception as e:  # noqa: BLE001 (FileNotFoundError, YAML errors: all mean the same to the user)
        raise CompareError(
            f"model {spec!r}: not a readable model YAML (no such file here, with or without the scale letter, and "
            f"not a config Ultralytics or the plugin ships): {e}"
        ) from None
    # keep the name as given (it carries the scale letter); anchor a relative folder to this working directory
    return str(path.parent.resolve() / path.name) if path.parent != Path(".") or path.exists() else spec


def check_buildable(spec: str) -> None:
    """Build (or load) the model once here, so that a bad config row fails before any model trains."""
    from ultralytics import YOLO

    try:
        YOLO(spec, verbose=False)
    except Exception as e:  # noqa: BLE001 (any build error: name the model, keep the message)
        raise CompareError(f"model {spec!r}: {type(e).__name__}: {e}") from None


def parse_train_args(items: list[str]) -> dict[str, Any]:
    """``["lr0=0.01", "optimizer=SGD"]`` -> ``{"lr0": 0.01, "optimizer": "SGD"}``, typed as the ``yolo`` CLI types
    them; refuses unknown keys and the keys that the compare options set."""
    from ultralytics.cfg import DEFAULT_CFG_DICT, smart_value

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CompareError(f"train argument {item!r}: expected KEY=VALUE")
        if key in _OWN_KEYS:
            raise CompareError(f"train argument {item!r}: set {key} with {_OWN_KEYS[key]}")
        if key not in DEFAULT_CFG_DICT:
            raise CompareError(f"train argument {item!r}: {key!r} is not an Ultralytics setting")
        out[key] = smart_value(value.strip())
    return out


def labels(specs: list[str]) -> list[str]:
    """Short unique names for the table and the per-model folders: the file stem (``yolov8n-mobilevit``), the run
    folder too for ``.../RUN/weights/best.pt`` (``RUN-best``), and the folder above it where runs share a name
    (``yolov8n-seed0-best``, ``yolo26n-seed0-best``); ``-2``, ``-3`` for what still repeats."""

    def run_name(path: Path, levels: int) -> str:
        return "-".join([p.name for p in reversed(path.parents[1 : 1 + levels]) if p.name] + [path.stem])

    paths = [Path(s) for s in specs]
    runs = [run_name(p, 1) if p.suffix == ".pt" and p.parent.name == "weights" else None for p in paths]
    out: list[str] = []
    for path, run in zip(paths, runs):
        name = path.stem if run is None else run_name(path, 2) if runs.count(run) > 1 else run
        base, n = name, 2
        while name in out:
            name, n = f"{base}-{n}", n + 1
        out.append(name)
    return out
