"""The conversion core: mapping a source's tensors onto a plugin model and checking them against it, loading them
(:func:`load_converted`, the one pipeline ``convert`` and ``pretrained=FILE`` share), and :func:`convert_checkpoint`,
which writes the result."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .colour import decide_swap_rb, swap_stem_channels
from .imagenet import imagenet_classes, imagenet_names
from .registry import (
    ConversionError,
    Derived,
    HeadSource,
    SourceFormat,
    StateDict,
    gray_stem_weight,
    rescale_bn_weight,
    weighted_rows,
)
from .report import LIST_LIMIT, ConversionReport, sample_names
from .save import save_ultralytics_checkpoint
from .source import detect_format, load_source


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
            rescaled = rescale_bn_weight(weight, var, head.bn_eps, row.conv.bn.eps)
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
        if (gray := gray_stem_weight(value, target.get(key))) is not None:  # a 1-channel config on RGB weights
            mapped[key] = gray
    name = lambda key: "+".join(origins[key])

    unknown = [k for k in mapped if k not in target]
    if unknown:
        raise ConversionError(f"format {fmt.name} produced keys the model lacks: {sample_names(unknown)}")
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
        problems.append(f"{len(bad)} tensor shapes differ:\n    " + "\n    ".join(bad[:LIST_LIMIT]))
        if len(bad) > LIST_LIMIT:
            problems[-1] += f"\n    ... and {len(bad) - LIST_LIMIT} more"
    if strict and unloaded:
        problems.append(
            f"{len(unloaded)} backbone tensors of the config have no source tensor: {sample_names(unloaded)}"
        )
    stray = [k for k in unused if not k.startswith(fmt.ignored)]
    if strict and stray:
        problems.append(f"{len(stray)} source backbone tensors have no place in the config: {sample_names(stray)}")
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


def load_converted(
    model: nn.Module,
    source: StateDict,
    fmt: SourceFormat,
    label: str = "checkpoint",
    strict: bool = True,
    swap_rb: bool | None = None,
    head: bool = True,
    classes: list[int] | None = None,
) -> tuple[ConversionReport, str]:
    """Map ``source`` onto ``model`` and check it (:func:`map_weights`), reverse the stem's input channels where the
    source's colour order asks (:func:`decide_swap_rb`) and load the tensors into ``model`` on its device; returns
    ``(report, why the stem was or was not reversed)``. The neck and head keep their initialization."""
    mapped, report = map_weights(source, model, fmt, strict=strict, label=label, head=head, classes=classes)
    swap, why = decide_swap_rb(fmt, swap_rb)
    if swap:
        mapped = swap_stem_channels(mapped, model)
    report.swapped_rb = swap
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.load_state_dict({k: v.to(device) for k, v in mapped.items()}, strict=False)
    return report, why


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
    report, why = load_converted(
        model, state_dict, source_format, label=origin, strict=strict, swap_rb=swap_rb, head=head, classes=indices
    )
    if converts_head:
        # ImageNet's labels for a 1000-class classifier, else the model's own names
        imagenet = classifier_row(model)[1].fc.out_features == 1000
        model.names = dict(enumerate(names)) if names else imagenet_names() if imagenet else model.names
    report.cfg = str(cfg)
    if output is not None:
        info = {k: v for k, v in report.as_dict().items() if k != "loaded"}
        report.output = str(save_ultralytics_checkpoint(model, output, {**info, "loaded": len(report.loaded)}))
    if verbose:
        print(report.summary())
        if report.swapped_rb or swap_rb is not None:
            print(f"  {why}")
    return report
