"""Loading a source checkpoint, checking the mapped tensors against the target model, writing the result."""

from __future__ import annotations

import argparse
import dataclasses
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import ConversionError, Derived, SourceFormat, StateDict, formats, plugin_rows

_WRAPPERS = ("state_dict_ema", "model_ema", "state_dict", "model_state_dict", "model", "state_dict_model")
_LIST_LIMIT = 12  # tensors named per problem in an error message


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
    raise ConversionError(f"found no state_dict in the checkpoint (top-level keys: {list(obj)[:10] if isinstance(obj, dict) else type(obj).__name__})")


def normalize_keys(state_dict: StateDict) -> StateDict:
    """Drop DDP's ``module.`` prefix and turn timm ``features_only`` names (``stages_0``) into model names."""
    out = {}
    for key, value in state_dict.items():
        key = key[len("module.") :] if key.startswith("module.") else key
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


def load_source(source: str | Path) -> tuple[StateDict, str]:
    """Read ``source`` (a .pth/.pt/.bin/.safetensors file, or a model name a format can resolve, e.g. a timm
    name) into a flat state_dict; returns ``(state_dict, description of where it came from)``."""
    path = Path(source)
    if path.is_file():
        return normalize_keys(_load_file(path)), str(path)
    for fmt in formats().values():
        if fmt.load_name is not None:
            state_dict = fmt.load_name(str(source))
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


@dataclasses.dataclass
class ConversionReport:
    """What a conversion loaded. ``loaded`` maps target keys to source keys."""

    source: str
    format: str
    cfg: str
    loaded: dict[str, str]
    loaded_params: int
    unused_source: list[str]
    unloaded_backbone: list[str]
    output: str | None = None

    def summary(self) -> str:
        lines = [
            f"{self.source} ({self.format}) -> {self.cfg}"
            + (f" -> {self.output}" if self.output else ""),
            f"  loaded {len(self.loaded)} tensors ({self.loaded_params:,} parameters) into the backbone",
            f"  backbone tensors left at initialization: {len(self.unloaded_backbone)}"
            + (f" ({_sample(self.unloaded_backbone)})" if self.unloaded_backbone else ""),
            f"  source tensors not used: {len(self.unused_source)}"
            + (f" ({_sample(self.unused_source)})" if self.unused_source else ""),
        ]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _sample(keys: list[str], limit: int = _LIST_LIMIT) -> str:
    more = f", ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _backbone_keys(model: nn.Module) -> list[str]:
    return [f"model.{i}.{k}" for i, m in plugin_rows(model) for k in m.state_dict()]


def map_weights(
    source: StateDict, model: nn.Module, fmt: SourceFormat, strict: bool = True, label: str = "checkpoint"
) -> tuple[StateDict, ConversionReport]:
    """Map ``source`` onto ``model`` with ``fmt`` and check it; returns ``(tensors by target key, report)``.

    Raises :class:`ConversionError` on any shape mismatch, and (``strict``) when a backbone tensor has no source
    or a source backbone tensor (outside ``fmt.ignored``) has no place in the config.
    """
    source_key = {id(v): k for k, v in source.items()}
    mapped, origins = {}, {}
    for key, value in fmt.map_state_dict(source, model).items():
        if isinstance(value, Derived):
            mapped[key], origins[key] = value.tensor, value.sources
        else:
            mapped[key], origins[key] = value, (source_key.get(id(value), "?"),)
    target = model.state_dict()
    name = lambda key: "+".join(origins[key])  # noqa: E731

    unknown = [k for k in mapped if k not in target]
    if unknown:
        raise ConversionError(f"format {fmt.name} produced keys the model lacks: {_sample(unknown)}")
    bad = [
        f"{k} <- {name(k)}: checkpoint {tuple(mapped[k].shape)}, config {tuple(target[k].shape)}"
        for k in mapped
        if mapped[k].shape != target[k].shape
    ]
    used = {source_name for k in mapped for source_name in origins[k]}
    unused = [k for k in source if k not in used]
    unloaded = [k for k in _backbone_keys(model) if k not in mapped]
    problems = []
    if bad:
        problems.append(f"{len(bad)} tensor shapes differ:\n    " + "\n    ".join(bad[:_LIST_LIMIT]))
        if len(bad) > _LIST_LIMIT:
            problems[-1] += f"\n    ... and {len(bad) - _LIST_LIMIT} more"
    if strict and unloaded:
        problems.append(f"{len(unloaded)} backbone tensors of the config have no source tensor: {_sample(unloaded)}")
    stray = [k for k in unused if not k.startswith(fmt.ignored)]
    if strict and stray:
        problems.append(f"{len(stray)} source backbone tensors have no place in the config: {_sample(stray)}")
    if problems:
        raise ConversionError(f"{label} ({fmt.name}) does not fit the config: " + "; ".join(problems))
    report = ConversionReport(
        source=label,
        format=fmt.name,
        cfg="",
        loaded={k: name(k) for k in mapped},
        loaded_params=sum(v.numel() for k, v in mapped.items() if v.is_floating_point() and k not in _buffers(model)),
        unused_source=unused,
        unloaded_backbone=unloaded,
    )
    return mapped, report


def _buffers(model: nn.Module) -> set[str]:
    return {k for k, _ in model.named_buffers()}


def _swap_rb(mapped: StateDict, model: nn.Module) -> StateDict:
    """The first backbone conv's weight with its 3 input channels reversed."""
    i, stem = plugin_rows(model)[0]
    for name, conv in stem.named_modules():
        if isinstance(conv, nn.Conv2d) and conv.in_channels == 3 and f"model.{i}.{name}.weight" in mapped:
            key = f"model.{i}.{name}.weight"
            return {key: mapped[key].flip(1)}
    raise ConversionError("swap_rb: the first backbone row has no loaded 3-channel input conv")


def build_model(cfg: str | Path) -> nn.Module:
    """The Ultralytics ``nn`` model (DetectionModel, SegmentationModel, ...) of a plugin config, fp32."""
    from .. import register

    register()
    from ultralytics import YOLO

    return YOLO(str(cfg)).model.float()


def save_ultralytics_checkpoint(model: nn.Module, output: str | Path, extra: dict[str, Any]) -> Path:
    """Write ``model`` the way ``YOLO.save()`` does (``{"model": module, "ema": None, ...}``) but in fp32, so
    the transferred weights stay bit-identical to the source."""
    from ultralytics import __version__

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "date": datetime.now().astimezone().isoformat(),
            "version": __version__,
            "ema": None,
            "model": model,
            "train_args": {},
            "yolo_mobilevit": extra,
        },
        output,
    )
    return output


def convert_checkpoint(
    source: str | Path,
    cfg: str | Path,
    output: str | Path | None = None,
    fmt: str | None = None,
    strict: bool = True,
    swap_rb: bool = False,
    verbose: bool = True,
) -> ConversionReport:
    """Convert a reference checkpoint into an Ultralytics checkpoint of the plugin config ``cfg``.

    Args:
        source: a checkpoint file (.pth/.pt/.bin/.safetensors) or a model name a format can resolve.
        cfg: the plugin model YAML whose backbone receives the weights (the neck and head stay initialized).
        output: where to write the Ultralytics checkpoint; None only checks and reports.
        fmt: a registered format name (``formats()``); detected from the tensor names when None.
        strict: refuse partial fits (backbone tensors without source, source tensors without place).
        swap_rb: reverse the stem conv's input channels (RGB <-> BGR), for weights trained on BGR images.
        verbose: print the report.

    Raises:
        ConversionError: the checkpoint does not fit the config; the message names tensors and shapes.
    """
    state_dict, origin = load_source(source)
    source_format = detect_format(state_dict, fmt)
    model = build_model(cfg)
    mapped, report = map_weights(state_dict, model, source_format, strict=strict, label=origin)
    report.cfg = str(cfg)
    if swap_rb:
        mapped.update(_swap_rb(mapped, model))
    model.load_state_dict(mapped, strict=False)
    if output is not None:
        info = {k: v for k, v in report.as_dict().items() if k != "loaded"}
        report.output = str(save_ultralytics_checkpoint(model, output, {**info, "loaded": len(mapped)}))
    if verbose:
        print(report.summary())
    return report
