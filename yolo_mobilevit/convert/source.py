"""Reading a source checkpoint (a file or a hub model name) into a flat state dict, and telling its format."""

from __future__ import annotations

import argparse
import re
import socket
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..weights_store import HTTP_TIMEOUT, offline
from .registry import ConversionError, SourceFormat, StateDict, formats

_WRAPPERS = ("state_dict_ema", "model_ema", "state_dict", "model_state_dict", "model", "state_dict_model")


def _unwrap(obj: Any) -> StateDict:
    """The flat tensor dict inside a saved object (raw state_dict, training checkpoint or module)."""
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors and len(tensors) >= len(obj) // 2:
            return tensors
        for key in _WRAPPERS:  # EMA weights first: they are what a training run publishes
            if obj.get(key) is not None:
                return _unwrap(obj[key])
    raise ConversionError(
        f"found no state_dict in the checkpoint (top-level keys: {list(obj)[:10] if isinstance(obj, dict) else type(obj).__name__})"
    )


def normalize_keys(state_dict: StateDict) -> StateDict:
    """Drop DDP's ``module.`` prefix and turn timm ``features_only`` names (``stages_0``) into model names."""
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        out[re.sub(r"^stages_(\d+)\.", r"stages.\1.", key)] = value
    return out


def _load_file(path: Path) -> StateDict:
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as e:
            raise ConversionError(f"reading {path} needs the 'safetensors' package (pip install safetensors)") from e
        return load_file(str(path))
    try:  # weights_only: a checkpoint cannot run code; argparse.Namespace is how timm/cvnets store their args
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConversionError(
            f"could not read {path} as a tensor checkpoint ({type(e).__name__}: {str(e).splitlines()[0]}). "
            "Save just the state_dict (torch.save(model.state_dict(), file)) and convert that."
        ) from e
    return _unwrap(obj)


def _load_name(fmt: SourceFormat, name: str) -> StateDict | None:
    """``fmt.load_name(name)`` with a short socket timeout (a dead network fails within ``HTTP_TIMEOUT`` per
    connection instead of hanging); a failed download becomes a :class:`ConversionError` naming the model."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(HTTP_TIMEOUT)
    try:
        return fmt.load_name(name)
    except ConversionError:
        raise
    except Exception as e:  # no network and not cached, unknown tag, hub errors
        raise ConversionError(
            f"{name}: downloading the pretrained weights failed ({type(e).__name__}: {e}); pass a checkpoint file "
            "(yolo-mobilevit convert FILE ...)"
        ) from e
    finally:
        socket.setdefaulttimeout(previous)


def load_source(source: str | Path) -> tuple[StateDict, str]:
    """Read ``source`` (a .pth/.pt/.bin/.safetensors file, or a model name a format can resolve, e.g. a timm
    name) into a flat state_dict; returns ``(state_dict, description of where it came from)``."""
    path = Path(source)
    if path.is_file():
        return normalize_keys(_load_file(path)), str(path)
    if offline():
        raise ConversionError(
            f"{source}: no such file. As a model name its weights would be downloaded (timm / torchvision hubs), but "
            "YOLO_OFFLINE is set: pass a checkpoint file, or unset YOLO_OFFLINE to download"
        )
    for fmt in formats().values():
        if fmt.load_name is not None:
            state_dict = _load_name(fmt, str(source))
            if state_dict is not None:
                return normalize_keys(state_dict), str(source)
    names = ", ".join(sorted(formats()))
    raise ConversionError(f"{source}: no such file, and no source format ({names}) knows it as a model name")


def detect_format(state_dict: StateDict, name: str | None = None) -> SourceFormat:
    """The registered format ``name``, or the one format whose ``detect`` accepts ``state_dict``."""
    registry = formats()
    if name is not None:
        if name not in registry:
            raise ConversionError(f"unknown source format {name!r}; choose one of {sorted(registry)}")
        return registry[name]
    found = [fmt for fmt in registry.values() if fmt.detect(state_dict)]
    if len(found) != 1:
        what = "no registered format recognizes" if not found else f"several formats ({[f.name for f in found]}) claim"
        sample = ", ".join(list(state_dict)[:6])
        raise ConversionError(f"{what} this checkpoint (first keys: {sample}); pass the format explicitly")
    return found[0]
