"""One pretraining policy for every model a comparison trains (``compare --pretrained``, ``benchmarks/ranking.py``).

- ``none``: every model from scratch (``pretrained=False``, plugin configs too: their ``backbone_weights`` are not
  loaded).
- ``imagenet``: every backbone from ImageNet. A plugin config loads the reference weights its ``backbone_weights``
  names (:mod:`yolo_mobilevit.weights_store`: cache, ``YOLO_MOBILEVIT_WEIGHTS_MIRROR``, network). A stock YOLOv8 /
  YOLO11 / YOLO26 config loads Ultralytics' ImageNet classifier of the same model and scale (``yolov8n-cls.pt``,
  ``yolo11n-cls.pt``, ``yolo26n-cls.pt``), found where Ultralytics looks (the working directory, then
  ``SETTINGS["weights_dir"]``), then in the plugin's weights store (``ultralytics/<name>`` in its cache or mirror),
  then downloaded by Ultralytics unless ``YOLO_OFFLINE`` is set. Its backbone layers are transferred where the
  detection layer at the same index is the same module with tensors of the same names and shapes: the classifier's
  layers up to its head. (Ultralytics' own ``pretrained=`` transfer matches names and shapes only, which also moves
  YOLO11/YOLO26 classifiers' C2PSA batch-norm statistics into the detector's SPPF at layer 9.)

Either way the model trains with ``pretrained=False`` and the weights are loaded by the trainer's ``get_model``
(:func:`policy_trainer`), so the same seeded initialisation receives them for every model, and what each model
actually loaded is said in one line (:attr:`Start.description`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from torch import nn

POLICIES = ("none", "imagenet")
# Ultralytics' ImageNet classifiers of its detection families: (YAML stem prefix, classifier file pattern)
_CLASSIFIER = re.compile(r"^(yolov8|yolo11|yolo26)([nslmx])?(?=[-.]|$)")


def classifier_name(model: nn.Module) -> str | None:
    """``yolov8n-cls.pt`` for a model built from ``yolov8n.yaml`` (or ``yolov8n-p2.yaml``, ``yolov8.yaml`` at scale
    n); None for families Ultralytics ships no ImageNet classifier of."""
    yaml = getattr(model, "yaml", None) or {}
    stem = Path(str(yaml.get("yaml_file", ""))).stem
    match = _CLASSIFIER.match(stem)
    if match is None:
        return None
    scale = match.group(2) or yaml.get("scale") or "n"
    return f"{match.group(1)}{scale}-cls.pt"


def find_classifier(name: str) -> Path:
    """The local file of Ultralytics' classifier checkpoint ``name`` (see the module docstring for where it looks).
    Raises :class:`yolo_mobilevit.weights_store.WeightsUnavailable` naming the places."""
    from ultralytics.utils import SETTINGS

    from .. import weights_store as store

    for path in (Path(name), Path(SETTINGS["weights_dir"]) / name):
        if path.is_file():
            return path
    relative = f"ultralytics/{name}"
    found = store.cached(relative) or store.from_mirror(relative)
    if found is not None:
        return found
    where = f"{name} not in {SETTINGS['weights_dir']} nor at {store.cache_dir() / relative}" + (
        f" or in the mirror {os.environ[store.MIRROR_ENV]}" if os.environ.get(store.MIRROR_ENV) else ""
    )
    if store.offline():
        raise store.WeightsUnavailable(f"{where}, and downloads are off (YOLO_OFFLINE)")
    from ultralytics.utils.downloads import attempt_download_asset

    try:
        path = Path(attempt_download_asset(name))
    except Exception as e:  # network errors of every kind: say where it looked
        raise store.WeightsUnavailable(f"{where}; download failed: {e}") from e
    if not path.is_file():
        raise store.WeightsUnavailable(f"{where}; Ultralytics could not download it")
    return path


def transfer_classifier(model: nn.Module, path: Path) -> tuple[int, int]:
    """Load the backbone layers of the Ultralytics classifier checkpoint ``path`` into detection ``model`` (same
    index, same module class, same tensor names and shapes); (tensors loaded, tensors in the model's backbone)."""
    from ultralytics.nn.tasks import load_checkpoint

    from ..layer_info import backbone_length

    classifier, _ = load_checkpoint(path)
    n_backbone = backbone_length(model)
    theirs = classifier.float().state_dict()
    ours = model.state_dict()
    same_layers = {
        i
        for i, (a, b) in enumerate(zip(classifier.model, model.model[:n_backbone]))
        if type(a).__name__ == type(b).__name__
    }
    loaded = {
        k: v
        for k, v in theirs.items()
        if k in ours and v.shape == ours[k].shape and int(k.split(".")[1]) in same_layers
    }
    model.load_state_dict(loaded, strict=False)
    in_backbone = sum(1 for k in ours if k.startswith("model.") and int(k.split(".")[1]) < n_backbone)
    return len(loaded), in_backbone


def _plugin_backbone_tensors(model: nn.Module) -> int:
    from ..layer_info import plugin_rows

    return sum(len(m.state_dict()) for _, m in plugin_rows(model))


class Start:
    """What a model starts from under ``policy``; called by the trainer on the model it builds."""

    def __init__(self, policy: str) -> None:
        if policy not in POLICIES:
            raise ValueError(f"pretrained policy {policy!r}: expected one of {', '.join(POLICIES)}")
        self.policy = policy
        self.description = "none" if policy == "none" else "not built"
        self.loaded = policy == "none"  # whether the model got what the policy asks for
        self.problem = ""  # why not, in full (where it looked, how to provide the weights)

    def __call__(self, model: nn.Module) -> None:
        if self.policy == "none":
            return
        from ..pretrained import load_default_weights
        from ..weights_store import WEIGHTS_KEY, WeightsUnavailable, fetch, offline

        spec = (getattr(model, "yaml", None) or {}).get(WEIGHTS_KEY)
        name = None
        try:
            if spec:
                fetch(str(spec))  # the reason, when it cannot be had
                count = load_default_weights(model)
                self.description = f"ImageNet ({spec}, {count}/{_plugin_backbone_tensors(model)} tensors)"
            elif (name := classifier_name(model)) is not None:
                count, total = transfer_classifier(model, find_classifier(name))
                self.description = f"ImageNet ({name}, {count}/{total} backbone tensors)"
            else:
                self.description = "none (no ImageNet weights known for this model)"
                return
        except WeightsUnavailable as e:
            self.description = f"none ({spec or name} unavailable{', offline' if offline() else ''})"
            self.problem = str(e)
            return
        self.loaded = True


def policy_trainer(base: type, start: Start) -> type:
    """A subclass of the task's trainer ``base`` whose ``get_model`` builds the model from its config alone and hands
    it to ``start``: weights Ultralytics passes along are dropped (8.4.0 passes a ``.pt`` model's own weights even
    with ``pretrained=False``), so the policy alone decides what every model starts from."""

    class PolicyTrainer(base):  # type: ignore[misc, valid-type]
        def get_model(self, cfg: Any = None, weights: Any = None, verbose: bool = True) -> nn.Module:
            model = super().get_model(cfg=cfg, weights=None, verbose=verbose)
            start(model)
            return model

    PolicyTrainer.__name__ = PolicyTrainer.__qualname__ = f"{start.policy.capitalize()}Start{base.__name__}"
    return PolicyTrainer


def train(model: Any, policy: str, **train_args: Any) -> Start:
    """``model.train(**train_args)`` (a ``YOLO``) with every model started as ``policy`` says; returns the
    :class:`Start` saying what it loaded."""
    start = Start(policy)
    trainer = policy_trainer(model._smart_load("trainer"), start)
    model.train(**{**train_args, "pretrained": False}, trainer=trainer)
    return start


def main(argv: list[str] | None = None) -> int:
    """``python -m yolo_mobilevit.tools.pretraining POLICY model=M KEY=VALUE ...``: one training as ``yolo train``
    runs it, under ``POLICY``; writes ``<save_dir>/pretrained.txt`` (what the model loaded)."""
    import sys

    from ultralytics import YOLO
    from ultralytics.cfg import smart_value

    import yolo_mobilevit

    yolo_mobilevit.register()
    policy, *items = sys.argv[1:] if argv is None else argv
    args = {k: smart_value(v) for k, _, v in (item.partition("=") for item in items)}
    model = YOLO(args.pop("model"))
    start = train(model, policy, **args)
    (Path(model.trainer.save_dir) / "pretrained.txt").write_text(start.description + "\n")
    print(f"pretrained: {start.description}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
