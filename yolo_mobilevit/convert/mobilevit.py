"""MobileViT v1 and v2 sources: timm (``mobilevit_xxs|xs|s``, ``mobilevitv2_050..200``) and apple/ml-cvnets.

Target layout (a plugin config, e.g. ``cfg/yolov8-mobilevit.yaml``): the k-th plugin backbone row takes timm's
``stem`` (k = 0, a ``ConvBNAct``) or ``stages.{k-1}`` (``MV2Stage``, ``MobileViTStage``, ``MobileViTv2Stage``).
cvnets names are first renamed to timm's (reference section 1.4; ``layer_k`` is timm's ``stages.{k-1}``).
The classifier and v1's ``final_conv`` map onto a ``Classifier`` row (``-cls`` configs); detector configs tap P5
before them, as the paper's detector, and leave them unused.
"""

from __future__ import annotations

import re

from torch import nn

from ..modules import ConvBNAct, MV2Stage
from ..modules.mobilevit import MobileViTStage
from ..modules.mobilevitv2 import MobileViTv2Stage
from .registry import ConversionError, HeadSource, SourceFormat, StateDict, map_by_name, register_format, weighted_rows

_IR = {"expand": "conv1_1x1", "depthwise": "conv2_kxk", "project": "conv3_1x1"}
_BLOCK = {"conv_local": "conv_kxk", "conv_in": "conv_1x1", "mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2"}
_STAGES = {MobileViTStage: "v1", MobileViTv2Stage: "v2"}
_TIMM_IGNORED = ("head.", "final_conv.")


def _rename(local: str, table: dict[str, str]) -> str:
    for ours, theirs in table.items():
        local = re.sub(rf"(^|\.){re.escape(ours)}\.", rf"\g<1>{theirs}.", local)
    return local


def timm_key(position: int, module: nn.Module, local: str) -> str:
    """timm's name for ``local`` (a key of the ``position``-th plugin backbone row ``module``)."""
    if position == 0:
        return f"stem.{local}"
    stage = f"stages.{position - 1}"
    if isinstance(module, MV2Stage):  # blocks.j.<part>... -> j.<timm part>...
        return f"{stage}.{_rename(local.removeprefix('blocks.'), _IR)}"
    head, _, rest = local.partition(".")
    if head == "downsample":
        return f"{stage}.0.{_rename(rest, _IR)}"
    index, _, rest = rest.partition(".")  # blocks.b.<...> -> (b + 1).<...>: timm's block 0 is the MV2 downsample
    return f"{stage}.{int(index) + 1}.{_rename(rest, _BLOCK)}"


def _check_structure(model: nn.Module, version: str) -> None:
    rows = weighted_rows(model)
    kinds = [type(m) for _, m in rows]
    expected = "ConvBNAct stem, MV2Stage rows, then MobileViT stages"
    if not rows or kinds[0] is not ConvBNAct:
        raise ConversionError(f"a MobileViT checkpoint needs a config whose backbone is a {expected}; got {kinds}")
    for (i, m), kind in zip(rows[1:], kinds[1:]):
        if kind is MV2Stage:
            continue
        if kind not in _STAGES:
            raise ConversionError(f"layer {i} is a {kind.__name__}; a MobileViT {version} backbone has no such stage")
        if _STAGES[kind] != version:
            raise ConversionError(
                f"layer {i} is a {kind.__name__} (MobileViT {_STAGES[kind]}) but the checkpoint is MobileViT {version}"
            )


def _mapper(version: str):
    def map_state_dict(source: StateDict, model: nn.Module) -> StateDict:
        _check_structure(model, version)
        return map_by_name(source, model, timm_key)

    map_state_dict.__name__ = f"map_mobilevit_{version}"
    return map_state_dict


# cvnets -> timm, applied in order to each cvnets key (v1 and v2 share the outer names).
_CVNETS_RULES: tuple[tuple[str, str], ...] = (
    (r"^conv_1\.block\.", "stem.block."),
    (r"^conv_1x1_exp\.block\.", "final_conv.block."),
    (r"^classifier\.fc\.", "head.fc."),
    (r"\.block\.exp_1x1\.", ".conv1_1x1."),
    (r"\.block\.conv_3x3\.", ".conv2_kxk."),
    (r"\.block\.red_1x1\.", ".conv3_1x1."),
    (r"\.local_rep\.(conv_3x3|0)\.", ".conv_kxk."),
    (r"\.local_rep\.(conv_1x1|1)\.block\.conv\.", ".conv_1x1."),
    (r"\.global_rep\.(\d+)\.(weight|bias)$", r".norm.\2"),  # the LayerNorm/GroupNorm after the stack
    (r"\.global_rep\.(\d+)\.pre_norm_(mha|attn)\.0\.", r".transformer.\1.norm1."),
    (r"\.global_rep\.(\d+)\.pre_norm_mha\.1\.qkv_proj\.", r".transformer.\1.attn.qkv."),
    (r"\.global_rep\.(\d+)\.pre_norm_mha\.1\.out_proj\.", r".transformer.\1.attn.proj."),
    (r"\.global_rep\.(\d+)\.pre_norm_attn\.1\.(qkv_proj|out_proj)\.block\.conv\.", r".transformer.\1.attn.\2."),
    (r"\.global_rep\.(\d+)\.pre_norm_ffn\.0\.", r".transformer.\1.norm2."),
    (r"\.global_rep\.(\d+)\.pre_norm_ffn\.1\.(block\.conv\.)?", r".transformer.\1.mlp.fc1."),
    (r"\.global_rep\.(\d+)\.pre_norm_ffn\.(4|3\.block\.conv)\.", r".transformer.\1.mlp.fc2."),
    (r"\.fusion\.", ".conv_fusion."),
    (r"\.block\.conv\.", ".conv."),
    (r"\.block\.norm\.", ".bn."),
)


def cvnets_to_timm(key: str) -> str:
    """One ml-cvnets MobileViT (v1 or v2) tensor name in timm's naming."""
    key = re.sub(r"^layer_(\d+)\.", lambda m: f"stages.{int(m.group(1)) - 1}.", key)
    for pattern, replacement in _CVNETS_RULES:
        key = re.sub(pattern, replacement, key)
    return key


def _cvnets_mapper(version: str):
    timm_mapper = _mapper(version)

    def map_state_dict(source: StateDict, model: nn.Module) -> StateDict:
        return timm_mapper({cvnets_to_timm(k): v for k, v in source.items()}, model)

    map_state_dict.__name__ = f"map_cvnets_mobilevit_{version}"
    return map_state_dict


_TIMM_NAME = re.compile(r"^(timm/)?(mobilevit_(xxs|xs|s)|mobilevitv2_\d{3})(\.[\w]+)?$")


def load_timm_name(name: str) -> StateDict | None:
    """State_dict of a timm MobileViT name (``mobilevit_xs``, ``timm/mobilevitv2_100.cvnets_in1k``) through
    timm's hub cache; None for other names."""
    if not _TIMM_NAME.match(name):
        return None
    try:
        import timm
    except ImportError as e:
        raise ConversionError(f"resolving the model name {name!r} needs timm (pip install timm)") from e
    try:
        return timm.create_model(name.removeprefix("timm/"), pretrained=True).state_dict()
    except Exception as e:  # no network and not cached, unknown tag, ...
        raise ConversionError(f"timm could not load pretrained {name!r}: {type(e).__name__}: {e}") from e


_V1_TIMM = "stages.2.1.conv_fusion.conv.weight"
_V2_TIMM = "stages.2.1.transformer.0.attn.qkv_proj.weight"
_V1_CVNETS = "layer_3.1.fusion.block.conv.weight"
_V2_CVNETS = "layer_3.1.global_rep.0.pre_norm_attn.1.qkv_proj.block.conv.weight"

_CVNETS_IGNORED = ("classifier.", "conv_1x1_exp.")
for _fmt in (
    SourceFormat(
        "timm-mobilevit",
        "timm mobilevit_xxs|xs|s",
        lambda sd: _V1_TIMM in sd,
        _mapper("v1"),
        load_timm_name,
        _TIMM_IGNORED,
        HeadSource("head.fc", "final_conv.conv", "final_conv.bn"),
    ),
    SourceFormat(
        "timm-mobilevitv2",
        "timm mobilevitv2_050..200",
        lambda sd: _V2_TIMM in sd,
        _mapper("v2"),
        None,
        _TIMM_IGNORED,
        HeadSource("head.fc"),
    ),
    SourceFormat(
        "cvnets-mobilevit",
        "apple/ml-cvnets MobileViT v1 .pt",
        lambda sd: _V1_CVNETS in sd,
        _cvnets_mapper("v1"),
        None,
        _CVNETS_IGNORED,
        HeadSource("classifier.fc", "conv_1x1_exp.block.conv", "conv_1x1_exp.block.norm"),
        input_order="bgr",  # cvnets v0.1 read training images with cv2.imread and never flipped them
    ),
    SourceFormat(
        "cvnets-mobilevitv2",
        "apple/ml-cvnets MobileViTv2 .pt",
        lambda sd: _V2_CVNETS in sd,
        _cvnets_mapper("v2"),
        None,
        _CVNETS_IGNORED,
        HeadSource("classifier.1"),
    ),
):
    register_format(_fmt)
