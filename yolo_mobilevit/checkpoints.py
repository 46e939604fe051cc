"""Checkpoint safety: which plugin version wrote a checkpoint, clear errors for unreadable, damaged or foreign
checkpoints.

Every model with plugin rows records the plugin version on its layer list (``model.model.yolo_mobilevit_version``),
which Ultralytics pickles into every checkpoint. When loading fails, :func:`written_by` reads that marker straight from the
file's pickle bytes (the pickle itself cannot be loaded), so the error can say which version to install.

Integrity: before unpickling, every record of a torch zip checkpoint is checked against the CRC-32 the zip stores for
it, so a damaged file is refused by name instead of failing somewhere inside the unpickler. Checkpoints written by the
trainer (``last.pt``, ``best.pt``) also carry a SHA-256 of their weights (``model.model.yolo_mobilevit_digest``),
recomputed on load, which refuses weights changed after saving even where the zip was rewritten consistently.
``YOLO_MOBILEVIT_SKIP_DIGEST=1`` skips both checks (e.g. to salvage a file you know to be edited).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import zipfile
from pathlib import Path
from typing import Any

from torch import nn

from .versions import __version__, parse_version

VERSION_KEY = "yolo_mobilevit_version"
DIGEST_KEY = "yolo_mobilevit_digest"
SKIP_DIGEST_ENV = "YOLO_MOBILEVIT_SKIP_DIGEST"
# The marker as pickled (protocol 2, torch.save's default): BINUNICODE key, an optional memo put, BINUNICODE value.
_MARKER = re.compile(rb"X\x16\x00\x00\x00yolo_mobilevit_version(?:q.|r....)?X(....)", re.DOTALL)
# A pickled class reference (GLOBAL opcode): c<module>\n<name>\n.
_PLUGIN_CLASS = re.compile(rb"c(yolo_mobilevit[\w.]*)\n([\w.]+)\n")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, written by another plugin version, or built for another
    backbone than the config it is loaded into. The message names the file and what to do."""


def plugin_version() -> str:
    return __version__


def _pickle_bytes(path: str | Path) -> bytes | None:
    """The ``data.pkl`` of a torch zip checkpoint, or None when ``path`` is not one (missing, truncated, legacy)."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            return archive.read(name) if name else None
    except Exception:  # noqa: BLE001  any damage (bad header, unknown zip version, undecodable name): unreadable
        return None


def zip_damage(path: str | Path) -> str | None:
    """What is wrong with a torch zip checkpoint's records (a CRC-32 mismatch, an unreadable header), or None when
    every record reads back intact or the file is not a zip archive (legacy torch format: left to torch)."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        return None if bad is None else f"record {bad!r} does not match its CRC-32"
    except Exception as e:  # noqa: BLE001  zipfile raises many types for damaged headers (NotImplementedError...)
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable zip structure'}"


def weights_digest(model: nn.Module, as_saved: bool = False) -> str:
    """SHA-256 over a model's state_dict (names, dtypes, shapes, bytes). ``as_saved``: of the copy the trainer
    writes (floating tensors in fp16, non-finite values replaced, as ``BaseTrainer.save_model`` does)."""
    import torch

    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        t = value.detach().cpu()
        if as_saved and t.is_floating_point():
            t = torch.nan_to_num(t.half())
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _skip_integrity() -> bool:
    return os.environ.get(SKIP_DIGEST_ENV, "").strip().lower() in {"1", "true", "yes"}


def _official_asset(weight: Any) -> bool:
    """Whether ``weight`` is an official Ultralytics asset by bare name, whose damaged cache Ultralytics re-downloads."""
    try:
        from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES
    except ImportError:
        return False
    return str(weight) == Path(str(weight)).name and Path(str(weight)).name in GITHUB_ASSETS_NAMES


def _damaged(weight: Any, reason: str) -> CheckpointError:
    size = Path(weight).stat().st_size if Path(weight).is_file() else 0
    return CheckpointError(
        f"{weight} is not a loadable checkpoint: the file ({size:,} bytes) is damaged ({reason}). Copy or download it "
        f"again; nothing was changed. To load it anyway, set {SKIP_DIGEST_ENV}=1."
    )


def verify_digest(ckpt: Any, weight: Any) -> None:
    """Check the weights digest of a loaded checkpoint's models (``ema`` and ``model``) and drop it from them, so a
    model edited after loading never carries a stale digest into another file. Checkpoints without one pass."""
    if not isinstance(ckpt, dict):
        return
    for key in ("ema", "model"):
        model = ckpt.get(key)
        layers = getattr(model, "model", None) if isinstance(model, nn.Module) else None
        recorded = getattr(layers, DIGEST_KEY, None) if isinstance(layers, nn.Module) else None
        if recorded is None:
            continue
        delattr(layers, DIGEST_KEY)
        if _skip_integrity():
            continue
        actual = weights_digest(model)
        if actual != recorded:
            raise CheckpointError(
                f"{weight} is not a loadable checkpoint: the weights of its '{key}' model differ from the SHA-256 "
                f"recorded when it was saved ({recorded[:12]}... saved, {actual[:12]}... now), so its tensors were "
                f"changed or damaged after saving. Copy or download it again; nothing was changed. To load it anyway, "
                f"set {SKIP_DIGEST_ENV}=1."
            )


def make_save_model(original: Any) -> Any:
    """Wrap Ultralytics' ``BaseTrainer.save_model()`` so plugin checkpoints record :func:`weights_digest` of the
    weights as written (the EMA in fp16), on the layer list that Ultralytics deep-copies into the file."""

    def save_model(self: Any, *args: Any, **kwargs: Any) -> Any:
        ema = getattr(getattr(self, "ema", None), "ema", None)
        layers = getattr(ema, "model", None)
        if not (isinstance(layers, nn.Module) and hasattr(layers, VERSION_KEY)):
            return original(self, *args, **kwargs)  # a stock model: written exactly as Ultralytics writes it
        setattr(layers, DIGEST_KEY, weights_digest(ema, as_saved=True))
        try:
            return original(self, *args, **kwargs)
        finally:
            layers.__dict__.pop(DIGEST_KEY, None)  # the live EMA changes every step; only the file's copy keeps it

    return save_model


def written_by(path: str | Path) -> str | None:
    """The plugin version recorded in a checkpoint file, read without unpickling; None when absent or unreadable."""
    data = _pickle_bytes(path)
    match = _MARKER.search(data or b"")
    if match is None:
        return None
    start = match.end()
    return data[start : start + int.from_bytes(match.group(1), "little")].decode("utf-8", "replace")


def missing_plugin_classes(path: str | Path) -> list[str]:
    """Plugin classes a checkpoint file's pickle refers to that this install does not have (``module.Name``)."""
    missing = []
    for module, name in sorted(set(_PLUGIN_CLASS.findall(_pickle_bytes(path) or b""))):
        module, name = module.decode("ascii", "replace"), name.decode("ascii", "replace")
        try:
            obj: Any = importlib.import_module(module)
            for part in name.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            missing.append(f"{module}.{name}")
    return missing


def make_torch_safe_load(original: Any) -> Any:
    """The checking step of the ``torch_safe_load(weight, ...)`` row (after
    :func:`yolo_mobilevit.pretrained.make_torch_safe_load`, which answers for reference checkpoints). A checkpoint that refers to plugin classes this install
    lacks (written by another plugin version) is refused before unpickling (Ultralytics would otherwise try to
    pip-install the missing module); a truncated file gets a :class:`CheckpointError` on every supported Ultralytics
    (8.4.0 passes torch's reader error through). Both name the file; nothing is written."""

    def torch_safe_load(weight: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(weight, (str, Path)) and Path(weight).is_file():
            damage = None if _skip_integrity() or _official_asset(weight) else zip_damage(weight)
            if damage is not None:
                raise _damaged(weight, damage)
            missing = missing_plugin_classes(weight)
            if missing:
                raise CheckpointError(_version_message(weight, missing))
        try:
            loaded = original(weight, *args, **kwargs)
        except (RuntimeError, EOFError) as e:
            if not isinstance(e, EOFError) and "PytorchStreamReader" not in str(e):
                raise
            size = Path(weight).stat().st_size if Path(weight).is_file() else 0
            raise CheckpointError(
                f"{weight} is not a loadable checkpoint: the file ({size:,} bytes) is truncated or corrupted "
                f"({type(e).__name__}: {(str(e).splitlines() or [''])[0]}). Copy or download it again; nothing was changed."
            ) from e
        verify_digest(loaded[0] if isinstance(loaded, tuple) else loaded, weight)
        return loaded

    return torch_safe_load


def _version_message(weight: Any, missing: list[str]) -> str:
    installed, wrote = plugin_version(), written_by(weight)
    if wrote is None:
        origin = "a yolo-mobilevit version that did not record itself"
        fix = "install the yolo-mobilevit version that trained it"
    else:
        origin = f"yolo-mobilevit {wrote}" + (
            " (newer than this install)" if parse_version(wrote) > parse_version(installed) else ""
        )
        fix = f'pip install "yolo-mobilevit=={wrote}"'
    return (
        f"{weight} was written by {origin}; it uses plugin classes that yolo-mobilevit {installed} lacks: "
        f"{', '.join(missing)}. To use it, {fix}. The checkpoint was not changed."
    )


def _plugin_indices(model: nn.Module) -> set[int]:
    """Layer indices of the plugin rows of an Ultralytics model (empty for anything else)."""
    from .layer_info import plugin_rows

    if not isinstance(getattr(model, "model", None), nn.Sequential):
        return set()
    return {i for i, _ in plugin_rows(model, backbone_only=False)}


def check_transfer(target: nn.Module, weights: Any, label: str = "the checkpoint") -> None:
    """Refuse ``target.load(weights)`` when ``weights`` has plugin rows and its backbone rows disagree with ``target``'s.

    Ultralytics' transfer silently skips tensors whose shapes differ, which for a backbone means a model that looks
    pretrained and is not. Head differences (another ``nc``, also in a ``Classifier`` row) stay allowed, as in
    Ultralytics. Raises
    :class:`CheckpointError` listing each disagreeing row: its index, both modules and the first differing tensor."""
    from .layer_info import backbone_length

    if not isinstance(weights, nn.Module):
        return
    source_rows = _plugin_indices(weights)
    if not source_rows:
        return  # a stock Ultralytics checkpoint: its neck/head may transfer onto a plugin config, as usual
    ours, theirs = target.state_dict(), weights.state_dict()
    backbone = backbone_length(target)
    problems = []
    for i in sorted(i for i in source_rows | _plugin_indices(target) if i < backbone):  # heads may change nc
        prefix = f"model.{i}."
        bad = next(
            (k for k in theirs if k.startswith(prefix) and (k not in ours or ours[k].shape != theirs[k].shape)),
            None,
        )
        if bad is None:
            continue
        src_type = type(weights.model[i]).__name__ if i < len(weights.model) else "nothing"
        dst_type = type(target.model[i]).__name__ if i < len(target.model) else "nothing"
        have = tuple(ours[bad].shape) if bad in ours else "absent"
        problems.append(
            f"layer {i}: checkpoint {src_type} vs config {dst_type} ({bad}: checkpoint {tuple(theirs[bad].shape)}, "
            f"config {have})"
        )
    if problems:
        yaml_file = getattr(target, "yaml", {}).get("yaml_file", "the config")
        raise CheckpointError(
            f"{label} does not fit {yaml_file}: its backbone was built from another config, so Ultralytics would skip "
            f"those tensors and leave the backbone untrained without saying so.\n  "
            + "\n  ".join(problems[:8])
            + ("\n  ..." if len(problems) > 8 else "")
            + "\nUse the config the checkpoint was trained with (kept in it as model.yaml), or train without "
            "pretrained=. Nothing was loaded."
        )


def gray_stem_copy(target: nn.Module, weights: Any) -> nn.Module | None:
    """A copy of an RGB plugin checkpoint's model whose 3-channel input convs are summed to 1 channel where
    ``target`` (a grayscale config) has them, as conversion does (:func:`~yolo_mobilevit.convert.registry.
    gray_stem_weight`); None when nothing needs adapting."""
    import copy

    from .convert.registry import gray_stem_weight

    if not isinstance(weights, nn.Module) or not _plugin_indices(weights):
        return None
    ours = target.state_dict()
    gray = {k: g for k, v in weights.state_dict().items() if (g := gray_stem_weight(v, ours.get(k))) is not None}
    if not gray:
        return None
    adapted = copy.deepcopy(weights)
    params = dict(adapted.named_parameters())
    for k, g in gray.items():
        params[k].data = g
    return adapted


def make_load(original: Any) -> Any:
    """The checking step of the ``BaseModel.load(weights)`` row (after :func:`yolo_mobilevit.pretrained.make_load`):
    RGB stems summed for a 1-channel config (:func:`gray_stem_copy`), :func:`check_transfer`, then Ultralytics'
    transfer."""

    def load(self: nn.Module, weights: Any, *args: Any, **kwargs: Any) -> Any:
        model = (
            weights["model"] if isinstance(weights, dict) and isinstance(weights.get("model"), nn.Module) else weights
        )
        gray = gray_stem_copy(self, model)
        if gray is not None:
            model = weights = gray
        check_transfer(self, model, str(getattr(model, "pt_path", "the checkpoint")))
        return original(self, weights, *args, **kwargs)

    return load


def stamp(layers: nn.Module) -> None:
    """Record the plugin version on a model's layer list (pickled into every checkpoint Ultralytics writes)."""
    setattr(layers, VERSION_KEY, plugin_version())


__all__ = [
    "CheckpointError",
    "check_transfer",
    "make_save_model",
    "missing_plugin_classes",
    "stamp",
    "verify_digest",
    "weights_digest",
    "written_by",
    "zip_damage",
]
