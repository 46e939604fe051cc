"""Loading a source checkpoint, checking the mapped tensors against the target model, writing the result."""

from __future__ import annotations

import argparse
import dataclasses
import re
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..network import HTTP_TIMEOUT, offline
from . import registry
from .registry import ConversionError, Derived, HeadSource, SourceFormat, StateDict, formats, weighted_rows

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
    known = formats()
    if name is not None:
        if name not in known:
            raise ConversionError(f"unknown source format {name!r}; choose one of {sorted(known)}")
        return known[name]
    found = [fmt for fmt in known.values() if fmt.detect(state_dict)]
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
    swapped_rb: bool = False

    def summary(self) -> str:
        lines = [
            f"{self.source} ({self.format}) -> {self.cfg}" + (f" -> {self.output}" if self.output else ""),
            f"  loaded {len(self.loaded)} tensors ({self.loaded_params:,} parameters)",
            f"  backbone tensors left at initialization: {len(self.unloaded_backbone)}"
            + (f" ({_sample(self.unloaded_backbone)})" if self.unloaded_backbone else ""),
            f"  source tensors not used: {len(self.unused_source)}"
            + (f" ({_sample(self.unused_source)})" if self.unused_source else ""),
        ]
        if self.swapped_rb:
            lines.append("  stem input channels reversed (BGR-trained weights, Ultralytics feeds RGB)")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _sample(keys: list[str], limit: int = _LIST_LIMIT) -> str:
    more = f", ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def classifier_row(model: nn.Module) -> tuple[int, nn.Module] | None:
    """``(layer index, module)`` of the model's ``Classifier`` head row, or None (detector, segmenter, ...)."""
    from ..modules import Classifier

    layers = getattr(model, "model", None)
    if layers is not None and len(layers) and isinstance(layers[-1], Classifier):
        return len(layers) - 1, layers[-1]
    return None


def map_head(source: StateDict, model: nn.Module, head: HeadSource, classes: list[int] | None = None) -> StateDict:
    """Map the source's classifier onto the model's ``Classifier`` row; ``{}`` when the model has none.

    ``classes`` picks rows of the last Linear (source class indices, in the model's class order). Raises
    :class:`ConversionError` when the row's parts (final conv, hidden Linear) differ from the source's."""
    found = classifier_row(model)
    if found is None:
        return {}
    i, row = found
    for part, ours, theirs in (("final 1x1 conv", row.conv, head.conv), ("hidden Linear", row.hidden, head.hidden)):
        if (ours is None) != (theirs is None):
            have, want = ("has", "lacks") if ours is not None else ("lacks", "has")
            raise ConversionError(
                f"layer {i} Classifier {have} a {part} but the checkpoint's classifier {want} one; set the row's "
                f"{'conv' if part.startswith('final') else 'hidden'} argument to match, or convert with --no-head"
            )

    def take(key: str) -> torch.Tensor:
        if key not in source:
            raise ConversionError(f"the checkpoint has no {key} (expected in its classifier)")
        return source[key]

    out: StateDict = {}
    if head.conv is not None:
        out[f"model.{i}.conv.conv.weight"] = take(f"{head.conv}.weight")
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            if f"{head.bn}.{name}" in source:
                out[f"model.{i}.conv.bn.{name}"] = source[f"{head.bn}.{name}"]
        if head.bn_eps is not None and abs(head.bn_eps - row.conv.bn.eps) > 1e-12:
            weight, var = take(f"{head.bn}.weight"), take(f"{head.bn}.running_var")
            rescaled = registry.rescale_bn_weight(weight, var, head.bn_eps, row.conv.bn.eps)
            out[f"model.{i}.conv.bn.weight"] = Derived(rescaled, (f"{head.bn}.weight", f"{head.bn}.running_var"))
    if head.hidden is not None:
        weight = take(f"{head.hidden}.weight")
        out[f"model.{i}.hidden.weight"] = (
            Derived(weight.flatten(1), (f"{head.hidden}.weight",)) if weight.ndim == 4 else weight
        )
        out[f"model.{i}.hidden.bias"] = take(f"{head.hidden}.bias")
    for name in ("weight", "bias"):
        key = f"{head.fc}.{name}"
        tensor = take(key)
        if classes is not None:
            if max(classes) >= len(tensor):
                raise ConversionError(f"class index {max(classes)} is out of range: {key} has {len(tensor)} classes")
            tensor = Derived(tensor[classes].clone(), (key,))
        out[f"model.{i}.fc.{name}"] = tensor
    return out


def _backbone_keys(model: nn.Module) -> list[str]:
    return [f"model.{i}.{k}" for i, m in weighted_rows(model) for k in m.state_dict()]


def map_weights(
    source: StateDict,
    model: nn.Module,
    fmt: SourceFormat,
    strict: bool = True,
    label: str = "checkpoint",
    head: bool = True,
    classes: list[int] | None = None,
) -> tuple[StateDict, ConversionReport]:
    """Map ``source`` onto ``model`` with ``fmt`` and check it; returns ``(tensors by target key, report)``.

    With ``head`` and a model ending in a ``Classifier`` row, the source's classifier is mapped too (``classes``:
    the source class indices to keep, see :func:`map_head`) and counts as backbone for the strict checks.
    Raises :class:`ConversionError` on any shape mismatch, and (``strict``) when a backbone tensor has no source
    or a source backbone tensor (outside ``fmt.ignored``) has no place in the config.
    """
    source_key = {id(v): k for k, v in source.items()}
    mapped, origins = {}, {}
    items = dict(fmt.map_state_dict(source, model))
    if not head and (row := classifier_row(model)) is not None:  # a format may map head parts itself (Mobile-Former)
        items = {k: v for k, v in items.items() if not k.startswith(f"model.{row[0]}.")}
    head_keys: list[str] = []
    if head and classifier_row(model) is not None:
        if fmt.head is None:
            raise ConversionError(f"format {fmt.name} does not describe its classifier; convert with --no-head")
        head_items = map_head(source, model, fmt.head, classes)
        items.update(head_items)
        head_keys = [k for k in model.state_dict() if k.startswith(f"model.{classifier_row(model)[0]}.")]
    for key, value in items.items():
        if isinstance(value, Derived):
            mapped[key], origins[key] = value.tensor, value.sources
        else:
            mapped[key], origins[key] = value, (source_key.get(id(value), "?"),)
    target = model.state_dict()
    for key, value in mapped.items():
        if (gray := registry.gray_stem_weight(value, target.get(key))) is not None:  # a 1-channel config on RGB weights
            mapped[key] = gray
    name = lambda key: "+".join(origins[key])

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
    unloaded = [k for k in _backbone_keys(model) + head_keys if k not in mapped]
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
    i, stem = weighted_rows(model)[0]
    for name, conv in stem.named_modules():
        if isinstance(conv, nn.Conv2d) and conv.in_channels == 3 and f"model.{i}.{name}.weight" in mapped:
            key = f"model.{i}.{name}.weight"
            return {key: mapped[key].flip(1)}
    raise ConversionError("swap_rb: the first backbone row has no loaded 3-channel input conv")


def decide_swap_rb(fmt: SourceFormat, swap_rb: bool | None = None) -> tuple[bool, str]:
    """Whether to reverse the stem's input channels for ``fmt``, and why (for the log).

    ``swap_rb=None`` follows the source's training colour order (``fmt.input_order``): Ultralytics feeds RGB, so
    BGR-trained weights (ml-cvnets v0.1 MobileViT) are swapped; True / False force it either way."""
    if swap_rb is None:
        swap = fmt.input_order == "bgr"
        why = f"{fmt.name} weights expect {fmt.input_order.upper()} input; Ultralytics feeds RGB"
        return swap, why + (": reversed the stem's input channels (--no-swap-rb keeps them)" if swap else "")
    return swap_rb, f"stem input channels {'reversed' if swap_rb else 'kept'} as asked (swap_rb={swap_rb})"


def swap_stem_channels(mapped: StateDict, model: nn.Module) -> StateDict:
    """``mapped`` with the stem conv's 3 input channels reversed (RGB <-> BGR)."""
    return {**mapped, **_swap_rb(mapped, model)}


def build_model(cfg: str | Path, nc: int | None = None) -> nn.Module:
    """The Ultralytics ``nn`` model (DetectionModel, SegmentationModel, ...) of a plugin config, fp32; ``nc``
    overrides the config's class count."""
    from .. import register

    register()
    from ultralytics import YOLO

    model = YOLO(str(cfg)).model
    if nc is not None and nc != model.yaml.get("nc"):
        model = type(model)(str(cfg), nc=nc, verbose=False)
    return model.float()


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
        raise ConversionError(f"{spec}: classes not in ImageNet-1k: {_sample(missing)}")
    return [lookup[_class_key(n)] for n in names], names


def _imagenet_names(model: nn.Module) -> dict[int, str]:
    """ImageNet-1k labels when the classifier has 1000 outputs, else the model's own names."""

    if classifier_row(model)[1].fc.out_features != 1000:
        return model.names
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


def save_ultralytics_checkpoint(model: nn.Module, output: str | Path, extra: dict[str, Any]) -> Path:
    """Write ``model`` the way ``YOLO.save()`` does (``{"model": module, "ema": None, ...}``) but in fp32, so
    the transferred weights stay bit-identical to the source."""
    from ultralytics import __version__
    from ultralytics.nn.tasks import guess_model_task

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "date": datetime.now().astimezone().isoformat(),
            "version": __version__,
            "ema": None,
            "model": model,
            "train_args": {"task": guess_model_task(model.yaml)},  # Ultralytics reads the task from here
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
    swap_rb: bool | None = None,
    verbose: bool = True,
    head: bool = True,
    classes: str | Path | list[str] | None = None,
) -> ConversionReport:
    """Convert a reference checkpoint into an Ultralytics checkpoint of the plugin config ``cfg``.

    Args:
        source: a checkpoint file (.pth/.pt/.bin/.safetensors) or a model name a format can resolve.
        cfg: the plugin model YAML whose backbone receives the weights (the neck and head stay initialized).
        output: where to write the Ultralytics checkpoint; None only checks and reports.
        fmt: a registered format name (``formats()``); detected from the tensor names when None.
        strict: refuse partial fits (backbone tensors without source, source tensors without place).
        swap_rb: reverse the stem conv's input channels (RGB <-> BGR); None (default) decides from the source
            format's training colour order (ml-cvnets v0.1 MobileViT: BGR, swapped; timm, torchvision: RGB).
        verbose: print the report.
        head: for a config ending in a ``Classifier`` row (``-cls``), also convert the ImageNet classifier.
        classes: keep only these ImageNet classes in the converted classifier, in this order: a classification
            dataset folder, a data YAML or a list of names (see :func:`imagenet_classes`); the checkpoint's class
            names follow. Without it a converted classifier keeps ImageNet's 1000 classes and names.

    Raises:
        ConversionError: the checkpoint does not fit the config; the message names tensors and shapes.
    """
    state_dict, origin = load_source(source)
    source_format = detect_format(state_dict, fmt)
    indices, names = imagenet_classes(classes) if classes is not None else (None, None)
    model = build_model(cfg, nc=len(indices) if indices else None)
    converts_head = head and classifier_row(model) is not None
    if classes is not None and not converts_head:
        raise ConversionError(f"classes={classes} needs a classification config (a Classifier head row) and head=True")
    mapped, report = map_weights(
        state_dict, model, source_format, strict=strict, label=origin, head=head, classes=indices
    )
    if converts_head:
        model.names = dict(enumerate(names)) if names else _imagenet_names(model)
    report.cfg = str(cfg)
    swap, why = decide_swap_rb(source_format, swap_rb)
    if swap:
        mapped = swap_stem_channels(mapped, model)
    report.swapped_rb = swap
    model.load_state_dict(mapped, strict=False)
    if output is not None:
        info = {k: v for k, v in report.as_dict().items() if k != "loaded"}
        report.output = str(save_ultralytics_checkpoint(model, output, {**info, "loaded": len(mapped)}))
    if verbose:
        print(report.summary())
        if swap or swap_rb is not None:
            print(f"  {why}")
    return report
