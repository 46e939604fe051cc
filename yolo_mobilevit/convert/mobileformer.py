"""Mobile-Former sources: the paper's official ImageNet checkpoints (``mobile_former_26m`` .. ``mobile_former_508m``).

Official layout (``shared/reference/mobileformer-official-keys.txt``): ``tokens.weight`` (M, d), ``stem.{0 conv,1 BN}``,
``features.0`` the bneck-lite (``conv.{0,1}`` depthwise + BN, ``conv.{4,5}`` 1x1 + BN), then one ``features.f`` per
Mobile-Former block: a stride-1 block has ``conv1..3`` (1x1, dw, 1x1) with ``hyper1/2`` dynamic ReLUs, a stride-2 block
``conv1..4`` (dw, 1x1, dw, 1x1) with ``hyper1`` and ``hyper3``; each block has the bridges ``local_global``
(Mobile->Former), ``global_block`` (Former) and ``global_local`` (Former->Mobile). The classifier side is a last
``local_global`` bridge on P5 and ``classifier.*`` (see :class:`~yolo_mobilevit.modules.heads.MobileFormerClassifier`).

Target layout (``cfg/yolov8-mobileformer-*.yaml``): a ``ConvBNAct`` stem, a ``MobileFormerLite`` row, a
``MobileFormerTokens`` row, then ``MobileFormerBlock`` (``blocks.j`` = one official block each) and
``MobileFormerDown`` rows in the official order.
"""

from __future__ import annotations

from torch import nn

from ..modules import ConvBNAct
from ..modules.mobileformer import MobileFormerBlock, MobileFormerDown, MobileFormerLite, MobileFormerTokens
from .registry import ConversionError, HeadSource, SourceFormat, StateDict, register_format, weighted_rows

#: our ConvBNAct / bridge / sub-block names -> the official ones (prefix renames, applied to the first match)
_CONV_BN = {"conv.": "0.", "bn.": "1."}
_BRIDGES = {
    "mobile_to_former.gate.0.": "local_global.alpha.0.",
    "mobile_to_former.q.": "local_global.q.",
    "mobile_to_former.proj.": "local_global.proj.",
    "mobile_to_former.norm.": "local_global.layer_norm.",
    "former.q.": "global_block.q.",
    "former.proj.": "global_block.channel_mlp.",
    "former.norm1.": "global_block.layer_norm.",
    "former.mlp.0.": "global_block.ffn.0.",
    "former.mlp.2.": "global_block.ffn.2.",
    "former.norm2.": "global_block.ffn_norm.",
    "former_to_mobile.k.": "global_local.k.",
    "former_to_mobile.v.": "global_local.proj.",
}
_BRIDGES_M2F = {
    k.removeprefix("mobile_to_former."): v.removeprefix("local_global.")
    for k, v in _BRIDGES.items()
    if k.startswith("mobile_to_former.")
}
_STRIDE1 = {"expand": "conv1", "act1": "hyper1", "depthwise": "conv2", "act2": "hyper2", "project": "conv3"}
_STRIDE2 = {"dw1": "conv1", "act1": "hyper1", "pw1": "conv2", "dw2": "conv3", "act2": "hyper3", "pw2": "conv4"}
_LITE = {"depthwise.conv.": "conv.0.", "depthwise.bn.": "conv.1.", "project.conv.": "conv.4.", "project.bn.": "conv.5."}


def _rename(local: str, table: dict[str, str]) -> str | None:
    for ours, theirs in table.items():
        if local.startswith(ours):
            return theirs + local[len(ours) :]
    return None


def block_key(local: str, stride: int) -> str | None:
    """Official name (below ``features.f.``) of a key of one :class:`BridgedBlock`; None if it has none."""
    bridge = _rename(local, _BRIDGES)
    if bridge is not None:
        return bridge
    part, _, rest = local.removeprefix("mobile.").partition(".")
    theirs = (_STRIDE1 if stride == 1 else _STRIDE2).get(part)
    if theirs is None:
        return None
    if part.startswith("act"):  # DynamicReLU: hyper.{0,2} Linears
        return f"{theirs}.{rest}"
    return f"{theirs}.{_rename(rest, _CONV_BN)}"


def _official_blocks(source: StateDict) -> dict[int, int]:
    """``{feature index: stride}`` of the source's Mobile-Former blocks (``features.0`` is the lite block)."""
    blocks = {}
    for key in source:
        parts = key.split(".")
        if parts[0] == "features" and parts[1] != "0" and len(parts) > 2:
            f = int(parts[1])
            blocks[f] = max(blocks.get(f, 1), 2 if parts[2] == "conv4" else 1)
    return dict(sorted(blocks.items()))


def _describe(strides: list[int]) -> str:
    return " ".join("s2" if s == 2 else "s1" for s in strides)


def map_mobileformer(source: StateDict, model: nn.Module) -> StateDict:
    """Map an official Mobile-Former state dict onto a plugin Mobile-Former config (see the module docstring)."""
    rows = weighted_rows(model)
    kinds = [type(m) for _, m in rows]
    if len(rows) < 3 or kinds[:3] != [ConvBNAct, MobileFormerLite, MobileFormerTokens]:
        raise ConversionError(
            "an official Mobile-Former checkpoint needs a config whose backbone starts with a ConvBNAct stem, a "
            f"MobileFormerLite row and a MobileFormerTokens row; got {[k.__name__ for k in kinds[:3]]}"
        )
    ours: list[tuple[str, int]] = []  # (target prefix, stride) per official block, in order
    for i, module in rows[3:]:
        if isinstance(module, MobileFormerBlock):
            ours += [(f"model.{i}.blocks.{j}.", 1) for j in range(len(module.blocks))]
        elif isinstance(module, MobileFormerDown):
            ours.append((f"model.{i}.block.", 2))
        else:
            raise ConversionError(f"layer {i} is a {type(module).__name__}; an official Mobile-Former has no such row")
    theirs = _official_blocks(source)
    if [s for _, s in ours] != list(theirs.values()):
        raise ConversionError(
            f"the config has {len(ours)} Mobile-Former blocks ({_describe([s for _, s in ours])}) but the checkpoint "
            f"has {len(theirs)} ({_describe(list(theirs.values()))}): a checkpoint of another width?"
        )
    out: StateDict = {}

    def take(target: str, key: str | None) -> None:
        if key is not None and key in source:
            out[target] = source[key]

    (i0, stem), (i1, lite), (i2, _) = rows[:3]
    for local in stem.state_dict():
        take(f"model.{i0}.{local}", f"stem.{_rename(local, _CONV_BN)}")
    for local in lite.state_dict():
        take(f"model.{i1}.{local}", f"features.0.{_rename(local, _LITE)}")
    take(f"model.{i2}.tokens", "tokens.weight")
    target = model.state_dict()
    for (prefix, stride), f in zip(ours, theirs):
        for key in target:
            if key.startswith(prefix):
                local = block_key(key[len(prefix) :], stride)
                take(key, None if local is None else f"features.{f}.{local}")
    _map_head_extras(source, model, take)
    return out


def _map_head_extras(source: StateDict, model: nn.Module, take) -> None:
    """The parts of the official classifier a plain ``Classifier`` lacks: the last Mobile->Former bridge and the
    BatchNorm1d after the hidden Linear (conv, hidden and last Linear go through :data:`HEAD`)."""
    from .core import classifier_row

    row = classifier_row(model)
    if row is None or not getattr(row[1], "token_dim", 0):
        return
    i, head = row
    for local in head.state_dict():
        if local.startswith("bridge."):
            take(f"model.{i}.{local}", f"local_global.{_rename(local.removeprefix('bridge.'), _BRIDGES_M2F)}")
        elif local.startswith("hidden_bn."):
            take(f"model.{i}.{local}", f"classifier.fc.1.{local.removeprefix('hidden_bn.')}")


#: the official classifier: 1x1 conv + BN on P5, hidden Linear (its BatchNorm1d and the bridge: _map_head_extras)
HEAD = HeadSource("classifier.classifier.1", "classifier.conv.1", "classifier.conv.2", "classifier.fc.0")

#: official checkpoint names, the paper's widths (all share one layout; the width is told by the shapes)
WIDTHS: tuple[str, ...] = ("26m", "52m", "96m", "151m", "214m", "294m", "508m")

register_format(
    SourceFormat(
        "official-mobileformer",
        "official Mobile-Former ImageNet checkpoint (mobile_former_26m .. 508m)",
        lambda sd: "tokens.weight" in sd and "features.1.global_block.q.weight" in sd,
        map_mobileformer,
        None,
        ("local_global.", "classifier."),
        HEAD,
    )
)
