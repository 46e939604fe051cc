"""MobileNet V1, V2 and V3 sources: torchvision (``mobilenet_v2``, ``mobilenet_v3_large|small``) and timm
(``mobilenetv1_100``, ``mobilenetv2_100``, ``mobilenetv3_large_100|small_100``).

Both sides are read as a list of blocks, each a list of units: ``conv`` (a conv and the BatchNorm after it) or
``se`` (squeeze-excite reduce and expand convs). Target blocks, in order: the stem ``ConvBNAct``, then every block
of the ``MobileNetV1Stage`` / ``MV2Stage`` / ``MobileNetV3Stage`` rows. Source blocks: the stem, then torchvision's
``features.{i}`` or timm's ``blocks.{s}.{b}``. The k-th target block takes the k-th source block when their unit
kinds agree; source blocks past the config's last row (the final 1x1 conv the configs drop, the classifier) stay
unused. timm's MobileNetV3 uses BN eps 1e-5 where the configs (torchvision) use 1e-3: such BN weights are rescaled
so that eval outputs are unchanged (:func:`rescale_bn_weight`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import NamedTuple

from torch import nn

from ..modules import ConvBNAct, ImageNorm, MV2Stage, SqueezeExcite
from ..modules.layers import norm_preset
from ..modules.mobilenet import MobileNetV1Stage, MobileNetV3Stage
from .registry import (
    ConversionError,
    Derived,
    HeadSource,
    SourceFormat,
    StateDict,
    register_format,
    rescale_bn_weight,
    weighted_rows,
)

LOGGER = logging.getLogger(__name__)

BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_ROWS = (ConvBNAct, MV2Stage, MobileNetV1Stage, MobileNetV3Stage)


class Unit(NamedTuple):
    """A conv + BN (``kind="conv"``: ``a`` = conv, ``b`` = BN) or an SE (``kind="se"``: reduce, expand) by prefix."""

    kind: str
    a: str
    b: str


Block = tuple[str, list[Unit]]  # (name for messages, units in forward order)


# ---- target side -------------------------------------------------------------------------------------------------


def target_blocks(model: nn.Module) -> list[Block]:
    """The plugin backbone as blocks of units, with ``model.state_dict()`` prefixes."""
    blocks: list[Block] = []
    for i, row in weighted_rows(model):  # stateless rows (ImageNorm) are not listed
        if not isinstance(row, _ROWS):
            raise ConversionError(
                f"layer {i} is a {type(row).__name__}; a MobileNet checkpoint needs a config whose backbone is an "
                "ImageNorm row, a ConvBNAct stem, then MobileNetV1Stage / MV2Stage / MobileNetV3Stage rows"
            )
        parts = [("", row)] if isinstance(row, ConvBNAct) else [(f".blocks.{j}", b) for j, b in enumerate(row.blocks)]
        for suffix, block in parts:
            prefix = f"model.{i}{suffix}"
            units = []
            for name, m in block.named_modules():
                path = f"{prefix}.{name}" if name else prefix
                if isinstance(m, ConvBNAct):
                    units.append(Unit("conv", f"{path}.conv", f"{path}.bn"))
                elif isinstance(m, SqueezeExcite):
                    units.append(Unit("se", f"{path}.reduce", f"{path}.expand"))
            blocks.append((prefix, units))
    return blocks


def image_norm_preset(model: nn.Module) -> str | None:
    """The preset of the config's ImageNorm row, or None when it has none."""
    return next((m.preset for m in model.model if isinstance(m, ImageNorm)), None)


# ---- source side -------------------------------------------------------------------------------------------------


def _natural(path: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.split("."))


def _modules(source: StateDict, prefix: str) -> list[str]:
    """Module paths under ``prefix`` that own tensors, in natural order (features.2 before features.10)."""
    paths = {k.rsplit(".", 1)[0] for k in source if k.startswith(prefix + ".")}
    return sorted(paths, key=_natural)


def torchvision_blocks(source: StateDict) -> list[Block]:
    """torchvision ``features.{i}``: the block's modules in index order, taken in pairs: a bias-free conv and the
    BatchNorm after it, or the two squeeze-excite convs (which have biases)."""
    indices = sorted({int(m.group(1)) for k in source if (m := re.match(r"features\.(\d+)\.", k))})
    blocks = []
    for i in indices:
        paths = _modules(source, f"features.{i}")
        units, j = [], 0
        while j < len(paths):
            path, partner = paths[j], paths[j + 1] if j + 1 < len(paths) else ""
            kind = "se" if f"{path}.bias" in source else "conv"
            if f"{path}.running_mean" in source or (kind == "conv") != (f"{partner}.running_mean" in source):
                raise ConversionError(f"unexpected torchvision layout at {path} (next: {partner or 'nothing'})")
            units.append(Unit(kind, path, partner))
            j += 2
        blocks.append((f"features.{i}", units))
    return blocks


# timm EfficientNet-family block layouts, as (conv, partner) pairs in forward order; absent pairs are skipped.
_SE = Unit("se", "se.conv_reduce", "se.conv_expand")
_TIMM_UNITS: dict[str, tuple[Unit, ...]] = {
    "ir": (Unit("conv", "conv_pw", "bn1"), Unit("conv", "conv_dw", "bn2"), _SE, Unit("conv", "conv_pwl", "bn3")),
    "ds": (Unit("conv", "conv_dw", "bn1"), _SE, Unit("conv", "conv_pw", "bn2")),
    "cn": (Unit("conv", "conv", "bn1"),),
}


def timm_blocks(source: StateDict) -> list[Block]:
    """timm: ``conv_stem``/``bn1``, then ``blocks.{s}.{b}`` (inverted residual, depthwise-separable or conv+BN)."""
    ids = sorted({(int(m.group(1)), int(m.group(2))) for k in source if (m := re.match(r"blocks\.(\d+)\.(\d+)\.", k))})
    blocks: list[Block] = [("conv_stem", [Unit("conv", "conv_stem", "bn1")])]
    for s, b in ids:
        prefix = f"blocks.{s}.{b}"
        has = lambda name, prefix=prefix: f"{prefix}.{name}.weight" in source
        layout = "ir" if has("conv_pwl") else "ds" if has("conv_dw") else "cn"
        units = [Unit(u.kind, f"{prefix}.{u.a}", f"{prefix}.{u.b}") for u in _TIMM_UNITS[layout] if has(u.a)]
        blocks.append((prefix, units))
    return blocks


# ---- mapping -----------------------------------------------------------------------------------------------------


def map_blocks(source: StateDict, model: nn.Module, blocks: list[Block], source_bn_eps: float) -> StateDict:
    """Pair the model's blocks with the first ``len(target)`` source ``blocks``; ``{target_key: source tensor}``."""
    targets = target_blocks(model)
    if len(blocks) < len(targets):
        raise ConversionError(f"the checkpoint has {len(blocks)} backbone blocks, the config {len(targets)}")
    out: StateDict = {}
    for (t_name, t_units), (s_name, s_units) in zip(targets, blocks):
        if [u.kind for u in t_units] != [u.kind for u in s_units]:
            raise ConversionError(
                f"config block {t_name} is {[u.kind for u in t_units]} but checkpoint block {s_name} is "
                f"{[u.kind for u in s_units]} (expansion, squeeze-excite or block order differ)"
            )
        for t, s in zip(t_units, s_units):
            if t.kind == "se":
                for t_conv, s_conv in ((t.a, s.a), (t.b, s.b)):
                    for name in ("weight", "bias"):
                        out[f"{t_conv}.{name}"] = source[f"{s_conv}.{name}"]
                continue
            out[f"{t.a}.weight"] = source[f"{s.a}.weight"]
            for name in BN_TENSORS:
                if f"{s.b}.{name}" in source:
                    out[f"{t.b}.{name}"] = source[f"{s.b}.{name}"]
            eps = model.get_submodule(t.b).eps
            if abs(eps - source_bn_eps) > 1e-12:
                weight, var = source[f"{s.b}.weight"], source[f"{s.b}.running_var"]
                rescaled = rescale_bn_weight(weight, var, source_bn_eps, eps)
                out[f"{t.b}.weight"] = Derived(rescaled, (f"{s.b}.weight", f"{s.b}.running_var"))
    return out


# ---- formats -----------------------------------------------------------------------------------------------------


class MobileNetFormat(NamedTuple):
    """One source layout: how to detect and read it, its BN eps and the input statistics its weights expect."""

    name: str
    description: str
    detect: Callable[[StateDict], bool]
    blocks: Callable[[StateDict], list[Block]]
    bn_eps: float
    norms: tuple[str, ...]  # ImageNorm presets its published weights were trained with
    ignored: tuple[str, ...]  # past the P5 tap: final 1x1 conv, head
    library: str
    names: tuple[str, ...]  # model names load_name resolves
    head: HeadSource  # the ImageNet classifier, for -cls configs


def _has(*keys: str, without: tuple[str, ...] = ()) -> Callable[[StateDict], bool]:
    return lambda sd: all(k in sd for k in keys) and not any(k in sd for k in without)


_TV, _TIMM = "torchvision", "timm"


def _torchvision_v3(size: str, last: int) -> MobileNetFormat:
    """torchvision's ``mobilenet_v3_{size}``: ``features.{last}`` is the final 1x1 conv (past P5), then the
    classifier (Linear, Hardswish, Dropout, Linear); BN eps 1e-3."""
    return MobileNetFormat(
        name=f"torchvision-mobilenet_v3_{size}",
        description=f"torchvision mobilenet_v3_{size} state_dict",
        detect=_has("features.1.block.0.0.weight", f"features.{last}.0.weight"),
        blocks=torchvision_blocks,
        bn_eps=1e-3,
        norms=("imagenet",),
        ignored=(f"features.{last}.", "classifier."),
        library=_TV,
        names=(f"mobilenet_v3_{size}",),
        head=HeadSource(fc="classifier.3", conv=f"features.{last}.0", bn=f"features.{last}.1", hidden="classifier.0"),
    )


def _timm(
    model: str, detect: Callable[[StateDict], bool], norms: tuple[str, ...], ignored: tuple[str, ...], head: HeadSource
) -> MobileNetFormat:
    """timm's ``{model}`` (format ``timm-{model}`` less the ``_100`` width suffix): :func:`timm_blocks`, BN eps 1e-5."""
    name = f"timm-{model.removesuffix('_100')}"
    return MobileNetFormat(
        name, f"timm {model} state_dict", detect, timm_blocks, 1e-5, norms, ignored, _TIMM, (model,), head
    )


FORMATS = (
    MobileNetFormat(
        name="torchvision-mobilenet_v2",
        description="torchvision mobilenet_v2 state_dict",
        detect=_has("features.1.conv.0.0.weight", "features.18.0.weight"),
        blocks=torchvision_blocks,
        bn_eps=1e-5,
        norms=("imagenet",),
        ignored=("features.18.", "classifier."),
        library=_TV,
        names=("mobilenet_v2",),
        head=HeadSource(fc="classifier.1", conv="features.18.0", bn="features.18.1"),
    ),
    _torchvision_v3("large", last=16),
    _torchvision_v3("small", last=12),
    _timm(
        "mobilenetv1_100",
        _has("conv_stem.weight", "blocks.4.1.conv_pw.weight", without=("blocks.1.0.conv_pwl.weight",)),
        norms=("inception",),
        ignored=("classifier.",),
        head=HeadSource(fc="classifier"),
    ),
    _timm(
        "mobilenetv2_100",
        _has(
            "conv_stem.weight",
            "blocks.6.0.conv_pwl.weight",
            "bn2.weight",
            without=("blocks.7.0.conv_pwl.weight", "blocks.2.0.se.conv_reduce.weight"),  # EfficientNets
        ),
        norms=("imagenet",),
        ignored=("conv_head.", "bn2.", "classifier."),
        head=HeadSource(fc="classifier", conv="conv_head", bn="bn2"),
    ),
    _timm(
        "mobilenetv3_large_100",
        _has("conv_stem.weight", "blocks.6.0.conv.weight", "conv_head.bias"),
        norms=("imagenet", "inception", "raw"),  # ra_in1k, ra4_e3600_r224_in1k, miil_in21k*
        ignored=("blocks.6.", "conv_head.", "classifier."),
        head=HeadSource(fc="classifier", conv="blocks.6.0.conv", bn="blocks.6.0.bn1", hidden="conv_head", bn_eps=1e-5),
    ),
    _timm(
        "mobilenetv3_small_100",
        _has("conv_stem.weight", "blocks.5.0.conv.weight", "conv_head.bias", without=("blocks.6.0.conv.weight",)),
        norms=("imagenet",),
        ignored=("blocks.5.", "conv_head.", "classifier."),
        head=HeadSource(fc="classifier", conv="blocks.5.0.conv", bn="blocks.5.0.bn1", hidden="conv_head", bn_eps=1e-5),
    ),
)


def make_mapper(fmt: MobileNetFormat) -> Callable[[StateDict, nn.Module], StateDict]:
    """``(source state_dict, model) -> {target_key: tensor}`` for one format; checks the config's ImageNorm."""

    def map_state_dict(source: StateDict, model: nn.Module) -> StateDict:
        preset = image_norm_preset(model)
        if preset not in fmt.norms:
            have = "has no ImageNorm row" if preset is None else f"normalises with ImageNorm preset {preset!r}"
            want = " or ".join(f"[-1, 1, ImageNorm, [{p}]]" for p in fmt.norms)
            raise ConversionError(
                f"{fmt.description} weights were trained on normalised input but the config {have}; "
                f"make its first backbone row {want}"
            )
        return map_blocks(source, model, fmt.blocks(source), fmt.bn_eps)

    map_state_dict.__name__ = map_state_dict.__qualname__ = f"map_{fmt.name.replace('-', '_')}"
    return map_state_dict


def make_loader(fmt: MobileNetFormat) -> Callable[[str], StateDict | None]:
    """Resolve ``name`` (``mobilenet_v2``, ``mobilenetv3_large_100.ra_in1k``, optionally prefixed ``torchvision:`` or
    ``timm:``) to pretrained weights, downloaded into the library's cache unless already there."""

    def load_name(name: str) -> StateDict | None:
        library, _, model_name = name.rpartition(":")
        if library not in ("", fmt.library) or model_name.split(".")[0] not in fmt.names:
            return None
        if fmt.library == _TV:
            import torchvision

            return torchvision.models.get_model(model_name, weights="DEFAULT").state_dict()
        import timm

        model = timm.create_model(model_name, pretrained=True)
        preset = norm_preset(model.pretrained_cfg.get("mean", ()), model.pretrained_cfg.get("std", ()))
        LOGGER.warning("%s was trained with ImageNorm preset %r; use it in the config's first row", model_name, preset)
        return model.state_dict()

    return load_name


for _fmt in FORMATS:
    register_format(
        SourceFormat(
            name=_fmt.name,
            description=_fmt.description,
            detect=_fmt.detect,
            map_state_dict=make_mapper(_fmt),
            load_name=make_loader(_fmt),
            ignored=_fmt.ignored,
            head=_fmt.head,
        )
    )

__all__ = ["FORMATS", "map_blocks", "target_blocks", "timm_blocks", "torchvision_blocks"]
