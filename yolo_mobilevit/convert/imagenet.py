"""Matching a dataset's classes to ImageNet-1k's, so a converted classifier keeps only those rows, in that order."""

from __future__ import annotations

from pathlib import Path

from .registry import ConversionError
from .report import sample_names


def imagenet_classes(spec: str | Path | list[str]) -> tuple[list[int], list[str]]:
    """ImageNet-1k class indices and names for a dataset's classes, in the dataset's order.

    ``spec``: a classification dataset folder (its ``train/`` subfolders, sorted, as Ultralytics reads them), a data
    YAML with ``names``, or a list of names. Each class is matched by WordNet id (``n01440764``), folder name
    (``great_white_shark``) or label (``great white shark``), case-insensitively."""

    imagenet = _imagenet_yaml()
    lookup: dict[str, int] = {}
    for index, (wnid, folder) in enumerate(imagenet["map"].items()):
        for key in (wnid, folder, imagenet["names"][index]):
            lookup.setdefault(_class_key(key), index)
    names = _dataset_class_names(spec)
    missing = [n for n in names if _class_key(n) not in lookup]
    if missing:
        raise ConversionError(f"{spec}: classes not in ImageNet-1k: {sample_names(missing)}")
    return [lookup[_class_key(n)] for n in names], names


def imagenet_names() -> dict[int, str]:
    """ImageNet-1k's labels by class index."""
    return _imagenet_yaml()["names"]


def _imagenet_yaml() -> dict:
    """Ultralytics' ImageNet.yaml: ``names`` (index -> label) and ``map`` (WordNet id -> folder name, in index order)."""
    import yaml
    from ultralytics.utils import ROOT

    return yaml.safe_load((ROOT / "cfg" / "datasets" / "ImageNet.yaml").read_text())


def _class_key(name: str) -> str:
    return name.strip().lower().replace("_", " ")


def _dataset_class_names(spec: str | Path | list[str]) -> list[str]:
    if isinstance(spec, (list, tuple)):
        return [str(n) for n in spec]
    path = Path(spec)
    if path.is_dir():
        train = path / "train" if (path / "train").is_dir() else path
        names = sorted(d.name for d in train.iterdir() if d.is_dir())
        if names:
            return names
    elif path.suffix in (".yaml", ".yml") and path.is_file():
        import yaml

        names = yaml.safe_load(path.read_text()).get("names")
        if isinstance(names, dict):
            return [str(names[k]) for k in sorted(names)]
        if isinstance(names, list):
            return [str(n) for n in names]
    raise ConversionError(f"{spec}: expected a classification dataset folder (train/<class>/...) or a YAML with names")
