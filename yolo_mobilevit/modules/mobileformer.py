"""Mobile-Former (Chen et al., CVPR 2022): a MobileNet and a small transformer over M global tokens, bridged both ways.

Reference: ``shared/reference/architectures.md`` section 5 and the official design (github.com/AAboys/MobileFormer).

Every Mobile-Former block runs, in order:

1. Mobile->Former (:class:`MobileToFormer`): the tokens attend over the block's *input* map (before any
   downsampling); the map is both key and value (no projection on the local side).
2. Former (:class:`Former`): self-attention among the tokens, then an FFN.
3. Mobile: a MobileNet block whose activations are dynamic ReLUs (:class:`DynamicReLU`) driven by token 0.
4. Former->Mobile (:class:`FormerToMobile`): each pixel attends over the tokens (the map is the query, unprojected)
   and the result is added to the map.

How the tokens travel between YAML rows: a :class:`MobileFormerTokens` row (no c2, after the stem) turns the
plain map into ``(map, tokens)``: the learnable tokens, copied for every image, so their number never depends on
the input size. Every :class:`MobileFormerBlock` / :class:`MobileFormerDown` row maps ``(map, tokens)`` to
``(map, tokens)``; its ``c2`` is the map's channels, so Ultralytics' channel tracking sees only maps. A
:class:`MobileFormerTap` row (no c2, no args) hands the plain map of its ``from`` row to the YOLO neck.

Tokens are (B, M, d), batch first.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .attention import merge_heads, split_heads
from .layers import ConvBNAct, strided_blocks
from .rows import AT_LEAST_ONE, POSITIVE, Arg, YamlArgError, YamlModule

BRIDGE_HEADS = 2  # Mobile->Former and Former->Mobile attention heads (official: 2)
FORMER_HEADS = 4  # token self-attention heads (official: 4)
HYPER_REDUCTION = 4  # dynamic ReLU hyper-function squeeze: token_dim / 4

FeaturesAndTokens = tuple[torch.Tensor, torch.Tensor]


def _init_linears(module: nn.Module, std: float = 0.01) -> None:
    """Official initialisation of the token-side Linears: N(0, 0.01), zero bias (bridges start near-uniform,
    dynamic ReLUs start as plain ReLU)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            nn.init.zeros_(m.bias)


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle: view channels as (groups, C/groups), transpose, flatten. (B, C, H, W) -> same."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        return x.reshape(B, self.groups, C // self.groups, H, W).transpose(1, 2).reshape(B, C, H, W)


def _shuffle(groups: int, enabled: bool) -> nn.Module:
    return ChannelShuffle(groups) if enabled else nn.Identity()


class DynamicReLU(nn.Module):
    """Dynamic ReLU driven by token 0: ``y = max(a1 * x, a2 * x)`` per sample and channel.

    ``(a1, a2)`` come from Linear(d -> d/4) -> ReLU -> Linear(d/4 -> 2C) -> hard-sigmoid ``h``, with the first C
    outputs giving ``a1 = 2 h`` (in [0, 2]) and the last C giving ``a2 = 2 h - 1`` (in [-1, 1]).
    x (B, C, H, W), tokens (B, M, d) -> (B, C, H, W).
    """

    def __init__(self, channels: int, token_dim: int, reduction: int = HYPER_REDUCTION) -> None:
        super().__init__()
        self.channels = channels
        squeeze = token_dim // reduction
        self.hyper = nn.Sequential(
            nn.Linear(token_dim, squeeze), nn.ReLU(inplace=True), nn.Linear(squeeze, 2 * channels), nn.Hardsigmoid()
        )

    def coefficients(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, M, d) -> (a1, a2), each (B, C, 1, 1)."""
        h = self.hyper(tokens[:, 0]).reshape(-1, 2, self.channels, 1, 1)
        return 2.0 * h[:, 0], 2.0 * h[:, 1] - 1.0

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        a1, a2 = self.coefficients(tokens)
        return torch.maximum(x * a1, x * a2)


def _check_divisible(name: str, divisor: str, value: int, **widths: int) -> int:
    """``value`` (of ``divisor``: "heads", "groups"), checked to divide every one of ``widths``; else a ValueError
    naming the block ``name``."""
    bad = {k: v for k, v in widths.items() if v % value}
    if bad:
        raise ValueError(f"{name}: widths {bad} are not divisible by {divisor}={value}")
    return value


class MobileToFormer(nn.Module):
    """Mobile->Former cross attention: the tokens gather from the map. x (B, C, H, W), tokens (B, M, d) -> (B, M, d).

    query = Linear(d -> C)(tokens), split over ``heads`` channel groups; key = value = the raw map (no projection),
    softmax over H*W. The gathered (B, M, C) is gated per channel by ``2 * hard-sigmoid(Linear(d -> C)(tokens))``
    (the official ``use_dynamic`` bridge; the reference notes omit it, but the published parameter counts need it),
    projected back by Linear(C -> d), added to the tokens and layer-normalised (post-norm).
    """

    def __init__(self, channels: int, token_dim: int, heads: int = BRIDGE_HEADS) -> None:
        super().__init__()
        self.heads = _check_divisible("Mobile->Former bridge", "heads", heads, channels=channels)
        self.q = nn.Linear(token_dim, channels)
        self.gate = nn.Sequential(nn.Linear(token_dim, channels), nn.Hardsigmoid())
        self.proj = nn.Linear(channels, token_dim)
        self.norm = nn.LayerNorm(token_dim)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.q(tokens), self.heads)  # (B, h, M, C/h)
        kv = split_heads(x.flatten(2).transpose(1, 2), self.heads)  # (B, h, HW, C/h)
        gathered = merge_heads(F.scaled_dot_product_attention(q, kv, kv))  # (B, M, C)
        gathered = gathered * (2.0 * self.gate(tokens))
        return self.norm(tokens + self.proj(gathered))


class Former(nn.Module):
    """The token transformer, post-norm. (B, M, d) -> (B, M, d).

    Attention: query = Linear(d -> d)(tokens), key = value = the tokens themselves, ``heads`` heads, then an output
    Linear(d -> d); residual + LayerNorm. FFN d -> 2d (GELU) -> d; residual + LayerNorm.
    """

    def __init__(self, token_dim: int, heads: int = FORMER_HEADS, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.heads = _check_divisible("Former", "heads", heads, token_dim=token_dim)
        hidden = int(token_dim * mlp_ratio)
        self.q = nn.Linear(token_dim, token_dim)
        self.proj = nn.Linear(token_dim, token_dim)
        self.norm1 = nn.LayerNorm(token_dim)
        self.mlp = nn.Sequential(nn.Linear(token_dim, hidden), nn.GELU(), nn.Linear(hidden, token_dim))
        self.norm2 = nn.LayerNorm(token_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.q(tokens), self.heads)
        kv = split_heads(tokens, self.heads)
        tokens = self.norm1(tokens + self.proj(merge_heads(F.scaled_dot_product_attention(q, kv, kv))))
        return self.norm2(tokens + self.mlp(tokens))


class FormerToMobile(nn.Module):
    """Former->Mobile cross attention: each pixel gathers from the tokens. x (B, C, H, W), tokens (B, M, d) -> x'.

    query = the map itself (no projection), split over ``heads`` channel groups; key = Linear(d -> C)(tokens),
    value = Linear(d -> C)(tokens); softmax over the M tokens; the result is added to the map.
    """

    def __init__(self, channels: int, token_dim: int, heads: int = BRIDGE_HEADS) -> None:
        super().__init__()
        self.heads = _check_divisible("Former->Mobile bridge", "heads", heads, channels=channels)
        self.k = nn.Linear(token_dim, channels)
        self.v = nn.Linear(token_dim, channels)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q = split_heads(x.flatten(2).transpose(1, 2), self.heads)  # (B, h, HW, C/h)
        k = split_heads(self.k(tokens), self.heads)  # (B, h, M, C/h)
        v = split_heads(self.v(tokens), self.heads)
        y = merge_heads(F.scaled_dot_product_attention(q, k, v))  # (B, HW, C)
        return x + y.transpose(1, 2).reshape(B, C, H, W)


class MobileSubBlock(nn.Module):
    """Stride-1 Mobile sub-block: 1x1 expand -> DynamicReLU -> 3x3 depthwise -> DynamicReLU -> 1x1 linear project,
    + identity when c1 == c2. Grouped 1x1 convs are followed by a channel shuffle.
    x (B, c1, H, W), tokens (B, M, d) -> (B, c2, H, W).
    """

    def __init__(self, c1: int, c2: int, expansion: float, token_dim: int, groups: int = 1) -> None:
        super().__init__()
        hidden = round(c1 * expansion)
        _check_divisible("MobileFormerBlock", "groups", groups, c1=c1, hidden=hidden, c2=c2)
        self.use_residual = c1 == c2
        self.expand = ConvBNAct(c1, hidden, kernel=1, act=None, groups=groups)
        self.shuffle1 = _shuffle(groups, groups > 1)
        self.act1 = DynamicReLU(hidden, token_dim)
        self.depthwise = ConvBNAct(hidden, hidden, kernel=3, act=None, groups=hidden)
        self.act2 = DynamicReLU(hidden, token_dim)
        self.project = ConvBNAct(hidden, c2, kernel=1, act=None, groups=groups)
        self.shuffle2 = _shuffle(groups, groups > 1)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.shuffle1(self.expand(x)), tokens)
        y = self.shuffle2(self.project(self.act2(self.depthwise(y), tokens)))
        return x + y if self.use_residual else y


class MobileDownSubBlock(nn.Module):
    """Stride-2 Mobile sub-block (dw -> pw -> dw -> pw):

    3x3 depthwise, stride 2, channel multiplier ``e1`` (c1 -> c1*e1) -> DynamicReLU -> 1x1 linear (-> c2) = ``s``;
    3x3 depthwise, multiplier ``e2`` (c2 -> c2*e2) -> DynamicReLU -> 1x1 linear (-> c2); output = that + ``s``.
    With groups > 1 the 1x1 convs are grouped and each depthwise output is shuffled by its input width, as the
    official 26M model does. x (B, c1, H, W), tokens (B, M, d) -> (B, c2, ceil(H/2), ceil(W/2)).
    """

    def __init__(self, c1: int, c2: int, e1: int, e2: int, token_dim: int, groups: int = 1, stride: int = 2) -> None:
        super().__init__()
        h1, h2 = c1 * e1, c2 * e2
        _check_divisible("MobileFormerDown", "groups", groups, hidden1=h1, hidden2=h2, c2=c2)
        self.dw1 = ConvBNAct(c1, h1, kernel=3, stride=stride, act=None, groups=c1)
        self.shuffle1 = _shuffle(c1, groups > 1)
        self.act1 = DynamicReLU(h1, token_dim)
        self.pw1 = ConvBNAct(h1, c2, kernel=1, act=None, groups=groups)
        self.dw2 = ConvBNAct(c2, h2, kernel=3, act=None, groups=c2)
        self.shuffle2 = _shuffle(c2, groups > 1)
        self.act2 = DynamicReLU(h2, token_dim)
        self.pw2 = ConvBNAct(h2, c2, kernel=1, act=None, groups=groups)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        s = self.pw1(self.act1(self.shuffle1(self.dw1(x)), tokens))
        return s + self.pw2(self.act2(self.shuffle2(self.dw2(s)), tokens))


class BridgedBlock(nn.Module):
    """One Mobile-Former block around a Mobile sub-block: Mobile->Former (on the input map), Former, Mobile
    (dynamic ReLUs from the updated token 0), Former->Mobile (on the output map). (x, tokens) -> (x', tokens')."""

    def __init__(self, mobile: nn.Module, c1: int, c2: int, token_dim: int) -> None:
        super().__init__()
        self.token_dim = token_dim
        self.mobile_to_former = MobileToFormer(c1, token_dim)
        self.former = Former(token_dim)
        self.mobile = mobile
        self.former_to_mobile = FormerToMobile(c2, token_dim)
        _init_linears(self)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> FeaturesAndTokens:
        tokens = self.former(self.mobile_to_former(x, tokens))
        return self.former_to_mobile(self.mobile(x, tokens), tokens), tokens


def _unpack(x: Any, row: str, token_dim: int) -> FeaturesAndTokens:
    if not isinstance(x, (tuple, list)) or len(x) != 2:
        raise TypeError(
            f"{row} expects (feature_map, tokens) from the previous row; put a MobileFormerTokens row before the "
            f"first Mobile-Former block (got {type(x).__name__})"
        )
    features, tokens = x
    if not torch.jit.is_tracing() and tokens.shape[-1] != token_dim:  # traced shapes are tensors: skip the check
        raise ValueError(f"{row} was built for token_dim={token_dim} but receives tokens of dim {tokens.shape[-1]}")
    return features, tokens


#: Every Mobile-Former row rounds scaled widths (c2 and token_dim) up to a multiple of 4: the published widths 12 and
#: 20 build exactly, and any scaled token_dim stays divisible by the Former's heads and the hyper-function squeeze.
MOBILE_FORMER_DIVISOR = 4


def _check_token_dim(kwargs: dict[str, Any]) -> None:
    d = kwargs["token_dim"]
    if d % FORMER_HEADS or d % HYPER_REDUCTION:
        raise YamlArgError(
            f"expects token_dim (after width scaling) to be a multiple of {max(FORMER_HEADS, HYPER_REDUCTION)}, got {d}"
        )


def _check_common(c2: int, kwargs: dict[str, Any]) -> None:
    _check_token_dim(kwargs)
    groups = kwargs["groups"]
    if c2 % groups:
        raise YamlArgError(f"expects c2={c2} (after width scaling) divisible by groups={groups}")
    if c2 % BRIDGE_HEADS:
        raise YamlArgError(f"expects c2={c2} (after width scaling) divisible by the {BRIDGE_HEADS} bridge heads")


class MobileFormerLite(YamlModule):
    """Mobile-Former's first block, "bneck-lite" (no tokens): 3x3 depthwise with channel multiplier ``expansion``
    (stride) + BN + ReLU6 -> 1x1 linear conv + BN, + identity when stride 1 and c1 == c2.

    YAML: ``[-1, 1, MobileFormerLite, [c2, expansion, stride, groups]]``; plain map in, plain map out.
    (B, c1, H, W) -> (B, c2, ceil(H/stride), ceil(W/stride)).
    """

    yaml_args: ClassVar = (
        Arg("expansion", int, bound=AT_LEAST_ONE),
        Arg("stride", int, 1, (1, 2)),
        Arg("groups", int, 1, bound=AT_LEAST_ONE),
    )
    channel_divisor: ClassVar = MOBILE_FORMER_DIVISOR
    max_repeats: ClassVar = 1
    repeats_doc: ClassVar = "one lite block"

    def __init__(self, c1: int, c2: int, n: int = 1, expansion: int = 2, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        hidden = c1 * expansion
        _check_divisible("MobileFormerLite", "groups", groups, hidden=hidden, c2=c2)
        self.use_residual = stride == 1 and c1 == c2
        self.depthwise = ConvBNAct(c1, hidden, kernel=3, stride=stride, act="relu6", groups=c1)
        self.shuffle = _shuffle(c1, groups > 1)
        self.project = ConvBNAct(hidden, c2, kernel=1, act=None, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.shuffle(self.depthwise(x)))
        return x + y if self.use_residual else y


class MobileFormerTokens(YamlModule):
    """Creates Mobile-Former's M learnable global tokens of dim ``token_dim`` (independent of the input size).

    YAML: ``[-1, 1, MobileFormerTokens, [tokens, token_dim]]`` (no c2; ``token_dim`` scales with width).
    (B, C, H, W) -> ((B, C, H, W), (B, M, d)).
    """

    yaml_args: ClassVar = (Arg("tokens", int, bound=AT_LEAST_ONE), Arg("token_dim", int, bound=POSITIVE, scaled=True))
    channel_divisor: ClassVar = MOBILE_FORMER_DIVISOR
    gives_tokens: ClassVar = True
    max_repeats: ClassVar = 1
    passthrough: ClassVar = True
    repeats_doc: ClassVar = "one token set"

    @classmethod
    def check_scaled(cls, c2: int | None, n: int, kwargs: dict[str, Any]) -> None:
        _check_token_dim(kwargs)

    def __init__(self, tokens: int = 6, token_dim: int = 192) -> None:
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(tokens, token_dim))  # nn.Embedding's N(0, 1), as the official code

    def forward(self, x: torch.Tensor) -> FeaturesAndTokens:
        # a copy, not an expand(): a view of a parameter made under no_grad claims requires_grad without a grad_fn,
        # which autograd hooks (torch.utils.flop_counter's module tracker) reject
        return x, self.tokens.unsqueeze(0).repeat(x.shape[0], 1, 1)


class MobileFormerBlock(YamlModule):
    """``n`` stride-1 Mobile-Former blocks (the first c1 -> c2, the rest c2 -> c2), hidden width round(c_in * e).

    YAML: ``[-1, n, MobileFormerBlock, [c2, expansion, token_dim, groups]]``; ``token_dim`` must match the
    MobileFormerTokens row. ((B, c1, H, W), (B, M, d)) -> ((B, c2, H, W), (B, M, d)).
    """

    yaml_args: ClassVar = (
        Arg("expansion", (int, float), bound=POSITIVE),
        Arg("token_dim", int, bound=POSITIVE, scaled=True),
        Arg("groups", int, 1, bound=AT_LEAST_ONE),
    )
    channel_divisor: ClassVar = MOBILE_FORMER_DIVISOR
    takes_tokens: ClassVar = True
    gives_tokens: ClassVar = True
    repeats_doc: ClassVar = "stride-1 Mobile-Former blocks"

    @classmethod
    def check_scaled(cls, c2: int, n: int, kwargs: dict[str, Any]) -> None:
        _check_common(c2, kwargs)

    def __init__(self, c1: int, c2: int, n: int = 1, expansion: float = 6, token_dim: int = 192, groups: int = 1):
        super().__init__()
        self.token_dim = token_dim

        def make_block(c_in: int, c_out: int, stride: int) -> BridgedBlock:  # stride 1: MobileFormerDown downsamples
            return BridgedBlock(MobileSubBlock(c_in, c_out, expansion, token_dim, groups), c_in, c_out, token_dim)

        self.blocks = nn.ModuleList(strided_blocks(make_block, c1, c2, n))

    def forward(self, x: FeaturesAndTokens) -> FeaturesAndTokens:
        features, tokens = _unpack(x, type(self).__name__, self.token_dim)
        for block in self.blocks:
            features, tokens = block(features, tokens)
        return features, tokens


class MobileFormerDown(YamlModule):
    """A stride-2 Mobile-Former block: Mobile->Former attends over the map *before* downsampling, the Mobile
    sub-block is dw(s2, x e1) -> pw -> dw(x e2) -> pw (see :class:`MobileDownSubBlock`).

    YAML: ``[-1, 1, MobileFormerDown, [c2, e1, e2, token_dim, groups]]``.
    ((B, c1, H, W), (B, M, d)) -> ((B, c2, ceil(H/2), ceil(W/2)), (B, M, d)).
    """

    yaml_args: ClassVar = (
        Arg("e1", int, bound=AT_LEAST_ONE),
        Arg("e2", int, bound=AT_LEAST_ONE),
        Arg("token_dim", int, bound=POSITIVE, scaled=True),
        Arg("groups", int, 1, bound=AT_LEAST_ONE),
    )
    channel_divisor: ClassVar = MOBILE_FORMER_DIVISOR
    takes_tokens: ClassVar = True
    gives_tokens: ClassVar = True
    max_repeats: ClassVar = 1
    repeats_doc: ClassVar = "one stride-2 block"

    @classmethod
    def stride(cls, kwargs: dict[str, Any]) -> int:
        return 2

    @classmethod
    def check_scaled(cls, c2: int, n: int, kwargs: dict[str, Any]) -> None:
        _check_common(c2, kwargs)

    def __init__(self, c1: int, c2: int, n: int = 1, e1: int = 6, e2: int = 4, token_dim: int = 192, groups: int = 1):
        super().__init__()
        self.token_dim = token_dim
        self.block = BridgedBlock(MobileDownSubBlock(c1, c2, e1, e2, token_dim, groups), c1, c2, token_dim)

    def forward(self, x: FeaturesAndTokens) -> FeaturesAndTokens:
        return self.block(*_unpack(x, type(self).__name__, self.token_dim))


class MobileFormerTap(YamlModule):
    """Hands the plain feature map of a Mobile-Former row to the neck: ``(map, tokens) -> map``.

    YAML: ``[k, 1, MobileFormerTap, []]`` (no c2, no args; channels are row k's). A plain map passes unchanged.
    """

    yaml_args: ClassVar = ()
    passthrough: ClassVar = True
    takes_tokens: ClassVar = True  # or a plain map
    max_repeats: ClassVar = 1
    repeats_doc: ClassVar = "one tap"

    def forward(self, x: torch.Tensor | FeaturesAndTokens) -> torch.Tensor:
        return x[0] if isinstance(x, (tuple, list)) else x


__all__ = [
    "BridgedBlock",
    "ChannelShuffle",
    "DynamicReLU",
    "Former",
    "FormerToMobile",
    "MobileDownSubBlock",
    "MobileFormerBlock",
    "MobileFormerDown",
    "MobileFormerLite",
    "MobileFormerTap",
    "MobileFormerTokens",
    "MobileSubBlock",
    "MobileToFormer",
]
