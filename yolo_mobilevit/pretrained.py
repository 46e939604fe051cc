"""Reference weights straight into plugin configs, without a separate ``yolo-mobilevit convert`` step, and the
trainer hooks that make it happen.

- ``pretrained=FILE`` / ``YOLO(cfg).load(FILE)`` with any checkpoint the converter reads (timm, torchvision, ml-cvnets,
  official Mobile-Former; ``.pth``/``.pt``/``.bin``/``.safetensors``; bare or wrapped state dicts): Ultralytics'
  ``torch_safe_load`` returns a :class:`ReferenceWeights` stand-in instead of failing on a bare state dict
  (:func:`make_torch_safe_load`), and ``BaseModel.load`` converts it onto the model being built (:func:`make_load`)
  with :mod:`yolo_mobilevit.convert`'s pipeline (:func:`yolo_mobilevit.convert.load_converted`, refusing a mismatch
  as ``convert`` does). Ultralytics checkpoints take Ultralytics' own path, unchanged.
- Pretrained by default: a config names its reference weights in the top-level YAML key ``backbone_weights``
  (``timm/mobilevit_xs.cvnets_in1k``, ``torchvision/mobilenet_v3_large.IMAGENET1K_V2``, a file path or a URL; null for
  none). When training builds a plugin config from its YAML with Ultralytics' default ``pretrained=True`` (and not
  ``resume``), :func:`make_setup_model`'s hook calls :func:`load_default_weights`, which has the weights store
  (:mod:`yolo_mobilevit.weights_store`: cache, mirror, network) find them, converts them and loads them into the
  backbone rows. Offline with an empty cache it warns once and training starts from scratch.

Conversion takes milliseconds and runs at every build, so one cached file serves every config with that backbone
(detect, seg, cls). Two pieces of process state: the models that received weights through ``BaseModel.load`` (a weak
set, so the default weights never overwrite them) and the weights names already warned about.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .weights_store import EXTENSIONS, WEIGHTS_KEY, WeightsUnavailable, fetch

_LOADED: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # models that received weights through BaseModel.load
_WARNED: set[str] = set()  # backbone_weights names whose absence was warned about (once per process)


class ReferenceWeights(nn.Module):
    """What ``load_checkpoint`` returns for a reference (non-Ultralytics) checkpoint: the flat source state dict
    and where it came from, converted when ``BaseModel.load`` receives it. Holds no parameters of its own."""

    def __init__(self, state_dict: dict[str, torch.Tensor], origin: str) -> None:
        super().__init__()
        self.source_state_dict = state_dict
        self.origin = origin
        self.yaml: dict = {}


# ---- is a file a reference checkpoint? --------------------------------------------------------------------------


def is_reference_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a reference checkpoint (a tensor state dict, possibly wrapped) rather than an Ultralytics
    one. ``.pth``/``.bin``/``.safetensors`` always are (Ultralytics only reads ``.pt``); a ``.pt`` is when its pickle
    refers to no ``ultralytics`` class. Read without unpickling; a file torch cannot list (damaged, legacy format) is
    left to Ultralytics and its error messages."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in EXTENSIONS:
        return False
    if path.suffix.lower() != ".pt":
        return True
    try:
        classes = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001  not a torch zip checkpoint, or a damaged one
        return False
    return not any(name.startswith("ultralytics.") for name in classes)


def read_reference(path: str | Path) -> ReferenceWeights:
    """The :class:`ReferenceWeights` of a reference checkpoint file (wrappers and ``module.`` prefixes removed)."""
    from .convert import load_source

    state_dict, origin = load_source(path)
    return ReferenceWeights(state_dict, origin)


def make_torch_safe_load(original: Any) -> Any:
    """The first step of the ``torch_safe_load(weight, ...) -> (ckpt, file)`` row: a reference checkpoint comes back
    as ``{"model": ReferenceWeights}`` (so ``load_checkpoint`` and ``pretrained=`` accept it) and the row ends here;
    anything else goes on to :func:`yolo_mobilevit.checkpoints.make_torch_safe_load`, then Ultralytics."""

    def torch_safe_load(weight: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(weight, (str, Path)) and is_reference_checkpoint(weight):
            return {"model": read_reference(weight), "train_args": {}}, str(weight)
        return original(weight, *args, **kwargs)

    return torch_safe_load


# ---- converting onto a model ------------------------------------------------------------------------------------


def _takes_head(model: nn.Module, source: dict[str, torch.Tensor], head: Any) -> bool:
    """Whether ``model`` ends in a ``Classifier`` row with as many classes as the source's classifier ``head``."""
    from .convert.core import classifier_row

    found = classifier_row(model)
    fc = source.get(f"{head.fc}.weight") if found is not None and head is not None else None
    return fc is not None and fc.shape[0] == found[1].fc.out_features


def apply_reference(
    model: nn.Module, weights: ReferenceWeights, swap_rb: bool | None = None, verbose: bool = True
) -> int:
    """Convert ``weights`` onto ``model`` (an Ultralytics ``nn`` model of a plugin config) and load them; returns
    the number of tensors loaded. A ``Classifier`` head takes the source's classifier when the class counts agree,
    and is otherwise left initialized (as Ultralytics' transfer skips a head of another ``nc``).

    Raises :class:`yolo_mobilevit.convert.ConversionError` when the checkpoint does not fit the backbone."""
    from .convert.core import classifier_row, load_converted
    from .convert.source import detect_format

    source = weights.source_state_dict
    fmt = detect_format(source)
    head = _takes_head(model, source, fmt.head)
    report, why = load_converted(model, source, fmt, label=weights.origin, swap_rb=swap_rb, head=head)
    if verbose:
        from ultralytics.utils import LOGGER

        extra = f"; {why}" if report.swapped_rb else ""
        if classifier_row(model) is not None and not head:
            extra += "; classifier left initialized (other class count)"
        LOGGER.info(
            f"yolo-mobilevit: loaded {len(report.loaded)} backbone tensors ({report.loaded_params:,} parameters) from "
            f"{weights.origin} ({fmt.name}){extra}"
        )
    return len(report.loaded)


def make_load(original: Any) -> Any:
    """The first step of the ``BaseModel.load(weights)`` row: :class:`ReferenceWeights` (alone or as a checkpoint's
    ``model``) are converted onto the model and the row ends here; anything else goes on to the next step
    (:func:`yolo_mobilevit.checkpoints.make_load`, then Ultralytics' transfer). Either way the model is marked as
    having received weights, so :func:`load_default_weights` leaves it alone."""

    def load(self: nn.Module, weights: Any, *args: Any, **kwargs: Any) -> Any:
        ref = weights.get("model") if isinstance(weights, dict) else weights
        _LOADED.add(self)
        if isinstance(ref, ReferenceWeights):
            apply_reference(self, ref)
            return self
        return original(self, weights, *args, **kwargs)

    return load


def received_weights(model: nn.Module) -> bool:
    """Whether ``model`` got weights through ``BaseModel.load`` (``pretrained=``, ``.load()``, a ``.pt`` model)."""
    return model in _LOADED


# ---- a config's default weights ---------------------------------------------------------------------------------


def load_default_weights(model: nn.Module, network: bool = True) -> int | None:
    """Load the reference weights ``model``'s YAML names (``backbone_weights``) into its backbone rows.

    Returns the number of tensors loaded, or None when the YAML names none or they are unavailable (then one warning
    per weights name says where to put them, and the model keeps its initialization). A checkpoint that does not fit
    the backbone raises, as ``pretrained=FILE`` does."""
    from ultralytics.nn.tasks import load_checkpoint
    from ultralytics.utils import LOGGER

    spec = (getattr(model, "yaml", None) or {}).get(WEIGHTS_KEY)
    if not spec:
        return None
    try:
        path = fetch(str(spec), network=network)
    except WeightsUnavailable as e:
        if str(spec) not in _WARNED:
            _WARNED.add(str(spec))
            LOGGER.warning(f"yolo-mobilevit: {e}. Training the backbone from scratch.")
        return None
    if is_reference_checkpoint(path):
        loaded = apply_reference(model, read_reference(path), verbose=False)
        LOGGER.info(f"yolo-mobilevit: {WEIGHTS_KEY} {spec}: loaded {loaded} backbone tensors from {path}")
        return loaded
    weights, _ = load_checkpoint(path)  # a converted Ultralytics checkpoint someone put in the cache
    model.load(weights)
    LOGGER.info(f"yolo-mobilevit: {WEIGHTS_KEY} {spec}: transferred weights from {path}")
    return len(weights.state_dict())


def _trains_from_yaml(trainer: Any) -> bool:
    model = getattr(trainer.args, "model", None)
    return isinstance(model, (str, Path)) and str(model).lower().endswith((".yaml", ".yml"))


def make_setup_model(original: Any) -> Any:
    """Wrap Ultralytics' ``BaseTrainer.setup_model()``: after the model is built, a plugin config trained from its
    YAML with ``pretrained=True`` (Ultralytics' default), not resumed and given no other weights gets the weights its
    ``backbone_weights`` names. Under DDP rank 0 fetches first and the other ranks then read its cache."""

    def setup_model(self: Any) -> Any:
        ckpt = original(self)
        model = getattr(self, "model", None)
        if (
            isinstance(model, nn.Module)
            and self.args.pretrained is True
            and not getattr(self, "resume", False)
            and not self.args.resume
            and _trains_from_yaml(self)
            and not received_weights(model)
        ):
            from ultralytics.utils import LOCAL_RANK, RANK
            from ultralytics.utils.torch_utils import torch_distributed_zero_first

            with torch_distributed_zero_first(LOCAL_RANK):
                load_default_weights(model, network=RANK in {-1, 0})
        return ckpt

    return setup_model


__all__ = [
    "ReferenceWeights",
    "apply_reference",
    "is_reference_checkpoint",
    "load_default_weights",
    "make_load",
    "make_setup_model",
    "make_torch_safe_load",
    "read_reference",
    "received_weights",
]
