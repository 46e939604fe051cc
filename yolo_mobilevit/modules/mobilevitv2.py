"""MobileViTv2 (Mehta & Rastegari, 2022): separable self-attention, linear in the number of tokens.

Reference: ``shared/reference/architectures.md`` section 2. A width multiplier ``a`` (0.5 ... 2.0) scales every
channel count; as YAML rows:

=============================  ====================  ==============================
row                            width a               a = 0.5 / 1.0 / 2.0
=============================  ====================  ==============================
stem ``ConvBNAct``             32a                   16 / 32 / 64
layer1 ``MV2Stage`` x1 s1      64a, expansion 2      32 / 64 / 128
layer2 ``MV2Stage`` x2 s2      128a, expansion 2     64 / 128 / 256
layer3 ``MobileViTv2Stage`` P3 256a, d=128a, L=2     128,64 / 256,128 / 512,256
layer4 ``MobileViTv2Stage`` P4 384a, d=192a, L=4     192,96 / 384,192 / 768,384
layer5 ``MobileViTv2Stage`` P5 512a, d=256a, L=3     256,128 / 512,256 / 1024,512
=============================  ====================  ==============================
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvBNAct, MV2DownsampleStage
from .mobilevit import from_patches, on_patch_grid, to_patches
from .rows import POSITIVE, PROBABILITY, Arg


class SeparableSelfAttention(nn.Module):
    """MobileViTv2's linear attention over (B, d, P, N) -> (B, d, P, N).

    A 1x1 conv gives one query channel plus keys and values; the query, softmaxed over the N patches, weights the
    keys into one context vector per patch offset, which gates ReLU(values).
    """

    def __init__(self, dim: int, attn_dropout: float = 0.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.qkv_proj = nn.Conv2d(dim, 1 + 2 * dim, 1)
        self.attn_drop = nn.Dropout(attn_dropout)
        self.out_proj = nn.Conv2d(dim, dim, 1)
        self.out_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query, key, value = self.qkv_proj(x).split([1, self.dim, self.dim], dim=1)
        scores = self.attn_drop(query.softmax(dim=-1))  # (B, 1, P, N)
        context = (key * scores).sum(dim=-1, keepdim=True)  # (B, d, P, 1)
        return self.out_drop(self.out_proj(F.relu(value) * context))


class LinearTransformerLayer(nn.Module):
    """Pre-norm layer on (B, d, P, N): x + attn(GN(x)), then x + FFN(GN(x)); GroupNorm with one group,
    FFN as 1x1 convs d -> 2d (SiLU) -> d."""

    def __init__(self, dim: int, mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.GroupNorm(1, dim)
        self.attn = SeparableSelfAttention(dim, dropout=dropout)
        self.norm2 = nn.GroupNorm(1, dim)
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, hidden, 1), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(hidden, dim, 1), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MobileViTv2Block(nn.Module):
    """MobileViTv2 block (reference 2). (B, C, H, W) -> (B, C, H, W) for any H, W.

    depthwise 3x3 conv -> 1x1 to d -> unfold 2x2 patches -> L linear-attention layers + GroupNorm -> fold ->
    1x1 to C + BN (no activation, no fusion). Odd maps are resized to the next even size around the transformer
    and back (as in v1), so unlike timm/cvnets the output keeps the input's size.
    """

    def __init__(self, c: int, d: int, depth: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv_local = ConvBNAct(c, c, kernel=3, groups=c)
        self.conv_in = nn.Conv2d(c, d, 1, bias=False)
        self.transformer = nn.Sequential(*(LinearTransformerLayer(d, 2.0, dropout) for _ in range(depth)))
        self.norm = nn.GroupNorm(1, d)
        self.conv_proj = ConvBNAct(d, c, kernel=1, act=None)

    def global_representation(self, y: torch.Tensor) -> torch.Tensor:
        """Separable attention over 2x2-patch sequences. (B, d, H, W) -> (B, d, H, W), H and W even."""
        patches, grid = to_patches(y)
        return from_patches(self.norm(self.transformer(patches)), grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_proj(on_patch_grid(self.conv_in(self.conv_local(x)), self.global_representation))


class MobileViTv2Stage(MV2DownsampleStage):
    """A MobileViTv2 stage: an MV2 block with stride 2 (c1 -> c2), then ``n`` MobileViTv2 blocks (published: 1).

    YAML: ``[-1, 1, MobileViTv2Stage, [c2, d, depth, expansion, dropout]]``; ``d`` (attention width, published:
    c2/2) scales with the YAML width like ``c2``; ``depth`` is the paper's L.
    (B, c1, H, W) -> (B, c2, ceil(H/2), ceil(W/2)).
    """

    yaml_args: ClassVar = (
        *MV2DownsampleStage.transformer_args,
        Arg("expansion", (int, float), 2, bound=POSITIVE),
        Arg("dropout", float, 0.0, bound=PROBABILITY),
    )
    repeats_doc: ClassVar = "MobileViTv2 blocks after the stride-2 MV2 block"

    def __init__(
        self, c1: int, c2: int, n: int = 1, *, d: int, depth: int, expansion: float = 2, dropout: float = 0.0
    ) -> None:
        super().__init__(c1, c2, n, expansion, lambda: MobileViTv2Block(c2, d, depth, dropout))


__all__ = [
    "LinearTransformerLayer",
    "MobileViTv2Block",
    "MobileViTv2Stage",
    "SeparableSelfAttention",
]
