"""The conversion contract: source formats, their registry and the mapping helpers (see the package docstring)."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from ..errors import InputRefused

StateDict = dict[str, torch.Tensor]


class Derived(NamedTuple):
    """A mapped tensor computed from source tensors rather than taken as is (e.g. BN weights rescaled for another
    eps); ``sources`` names the source keys it consumed, so the report counts them as used."""

    tensor: torch.Tensor
    sources: tuple[str, ...]


class ConversionError(InputRefused):
    """A source checkpoint that does not fit the target config; the message names tensors and shapes."""


class HeadSource(NamedTuple):
    """Where a source checkpoint keeps the parts a ``Classifier`` row takes: tensor-name prefixes, None if absent.

    ``hidden`` may be a Linear or a 1x1 conv with bias applied after pooling (timm's ``conv_head``); ``bn_eps`` is
    the BatchNorm eps the source was trained with, when it differs from the config's (weights are rescaled)."""

    fc: str
    conv: str | None = None
    bn: str | None = None
    hidden: str | None = None
    bn_eps: float | None = None


def rescale_bn_weight(weight: torch.Tensor, var: torch.Tensor, eps_from: float, eps_to: float) -> torch.Tensor:
    """BN weight that gives the same eval output under ``eps_to`` as ``weight`` under ``eps_from``:
    w * sqrt((var + eps_to) / (var + eps_from)). (Changing running_var instead could make it negative.)"""
    scale = ((var.double() + eps_to) / (var.double() + eps_from)).sqrt()
    return (weight.double() * scale).to(weight.dtype)


def gray_stem_weight(source: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor | None:
    """``source``, a conv weight on 3 input channels (C, 3, k, k), summed to the (C, 1, k, k) of ``target`` (the same
    conv of a 1-channel config); None when ``target`` is not that. A gray image is three equal RGB channels, so the
    summed filters keep the RGB stem's response (timm's ``adapt_input_conv`` does the same)."""
    fits = (
        target is not None
        and source.ndim == target.ndim == 4
        and source.shape[1] == 3
        and target.shape[1] == 1
        and source.shape[:1] + source.shape[2:] == target.shape[:1] + target.shape[2:]
    )
    return source.sum(dim=1, keepdim=True) if fits else None


@dataclasses.dataclass(frozen=True)
class SourceFormat:
    """One source checkpoint layout and how its tensors map onto a plugin model."""

    name: str
    description: str
    detect: Callable[[StateDict], bool]
    map_state_dict: Callable[[StateDict, nn.Module], StateDict]
    load_name: Callable[[str], StateDict | None] | None = None
    ignored: tuple[str, ...] = ()
    head: HeadSource | None = None
    #: colour order of the images the published weights were trained on ("rgb" or "bgr"); Ultralytics feeds RGB,
    #: so "bgr" weights get their stem's input channels reversed unless the caller says otherwise
    input_order: str = "rgb"


#: Registered source formats by name (filled by the family modules; use :func:`formats` to read it).
FORMATS: dict[str, SourceFormat] = {}


def register_format(fmt: SourceFormat) -> SourceFormat:
    """Add ``fmt`` to the registry; a name may be registered once (re-importing the same module is fine)."""
    old = FORMATS.get(fmt.name)
    if old is not None and old.map_state_dict.__module__ != fmt.map_state_dict.__module__:
        raise ValueError(f"source format {fmt.name!r} is already registered by {old.map_state_dict.__module__}")
    FORMATS[fmt.name] = fmt
    return fmt


def formats() -> dict[str, SourceFormat]:
    """Every registered source format, importing the converter module of each registered family
    (:func:`yolo_mobilevit.families.converter_modules`; one that is not installed is skipped) first."""
    from ..families import converter_modules

    for name in converter_modules():
        if name not in sys.modules and importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    return FORMATS


def weighted_rows(model: nn.Module) -> list[tuple[int, nn.Module]]:
    """The plugin rows of an Ultralytics model's backbone that carry tensors (what conversion fills),
    ``[(layer index, module), ...]``.

    Rows without state (``ImageNorm``, passthrough taps) and Ultralytics' own layers (SPPF, C2PSA) are skipped, so
    position 0 is the stem."""
    from ..layer_info import plugin_rows

    return [(i, m) for i, m in plugin_rows(model) if m.state_dict()]


def map_by_name(
    source: StateDict, model: nn.Module, source_key: Callable[[int, nn.Module, str], str | None]
) -> StateDict:
    """Helper for ``map_state_dict``: walk the plugin backbone rows and take, for each local tensor name of the
    ``k``-th row, ``source[source_key(k, row_module, local_key)]`` when that key exists (None skips the tensor).

    Returns ``{"model.<layer>.<local_key>": source tensor}``."""
    out = {}
    for k, (i, module) in enumerate(weighted_rows(model)):
        for local in module.state_dict():
            key = source_key(k, module, local)
            if key is not None and key in source:
                out[f"model.{i}.{local}"] = source[key]
    return out
