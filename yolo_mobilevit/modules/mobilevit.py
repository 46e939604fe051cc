"""MobileViT v1 (Mehta & Rastegari, ICLR 2022): the MobileViT block and the stage that carries it.

Reference: ``shared/reference/architectures.md`` section 1. Variants as YAML rows (c2, d, L, expansion):

=========  ==============  ===============  ===============
stage      XXS             XS               S
=========  ==============  ===============  ===============
layer3 P3  48, 64, 2, 2    64, 96, 2, 4     96, 144, 2, 4
layer4 P4  64, 80, 4, 2    80, 120, 4, 4    128, 192, 4, 4
layer5 P5  80, 96, 3, 2    96, 144, 3, 4    160, 240, 3, 4
=========  ==============  ===============  ===============
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..export import export_mode
from .attention import merge_heads, split_heads
from .layers import ConvBNAct, MV2DownsampleStage
from .rows import AT_LEAST_ONE, POSITIVE, PROBABILITY, Arg, YamlArgError

PATCH = 2  # every published MobileViT uses 2x2 patches


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention via ``F.scaled_dot_product_attention``. (B, N, d) -> (B, N, d).

    ``qkv`` is one Linear d -> 3d laid out [q | k | v], as in the reference implementations.
    """

    def __init__(self, dim: int, heads: int, attn_dropout: float = 0.0, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.attn_dropout = attn_dropout
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))  # 3 x (B, heads, N, d/heads)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout if self.training else 0.0)
        return self.proj_drop(self.proj(merge_heads(y)))


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: x + MHSA(LN(x)), then x + FFN(LN(x)) with a SiLU FFN of width ``2d``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, heads, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def needs_resize(h: int, w: int, patch: int = PATCH) -> bool:
    """Whether a map must be resized to a multiple of the patch. While tracing, also for even maps unless the export
    is fixed-size (:func:`yolo_mobilevit.export.export_mode`), so that one dynamic graph serves every input size."""
    if h % patch or w % patch:
        return True
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        mode = export_mode()
        return mode is None or not mode.static
    return False


def on_patch_grid(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn`` applied to ``x`` (B, d, H, W) on a grid whose sides are multiples of the patch: odd sides are resized
    bilinearly up to the next multiple and the result back to H x W, as in the reference implementations."""
    H, W = x.shape[-2:]
    if not needs_resize(H, W):
        return fn(x)
    Hp, Wp = (H + PATCH - 1) // PATCH * PATCH, (W + PATCH - 1) // PATCH * PATCH
    y = fn(F.interpolate(x, size=(Hp, Wp), mode="bilinear", align_corners=False))
    return F.interpolate(y, size=(H, W), mode="bilinear", align_corners=False)


def _four_d_patches() -> bool:
    mode = export_mode()
    return mode is not None and mode.four_d_patches


def to_patches(x: torch.Tensor, patch: int = PATCH) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, d, H, W) -> ((B, d, p*p, H/p * W/p), (H/p, W/p)): axis 2 is the offset inside a patch (row-major), axis 3
    the patch; and the patch grid for :func:`from_patches`.

    One ``pixel_unshuffle`` and views, never more than 4 dimensions: fast, and exportable to runtimes limited to 4-D
    tensors (NCNN). Targets without ``pixel_unshuffle`` (CoreML's iOS15 opset) get the same result from reshapes and
    two transposes, still at most 4-D (chosen by the export mode: slower in eager PyTorch)."""
    if _four_d_patches():
        B, d, H, W = x.shape
        h, w = H // patch, W // patch
        y = x.reshape(B * d * h, patch, w, patch).transpose(2, 3)  # (B*d*h, i, j, w)
        y = y.reshape(B * d, h, patch * patch, w).transpose(1, 2)  # (B*d, i*p + j, h, w)
        return y.reshape(B, d, patch * patch, h * w), (h, w)
    y = F.pixel_unshuffle(x, patch)  # (B, d*p*p, H/p, W/p); channel c*p*p + i*p + j holds x[c, p*h + i, p*w + j]
    return y.flatten(2).unflatten(1, (-1, patch * patch)), (y.shape[2], y.shape[3])


def from_patches(x: torch.Tensor, grid: tuple[int, int], patch: int = PATCH) -> torch.Tensor:
    """Inverse of :func:`to_patches`: (B, d, p*p, N) -> (B, d, H, W)."""
    if _four_d_patches():
        B, d = x.shape[:2]
        h, w = grid
        y = x.reshape(B * d, patch * patch, h, w).transpose(1, 2)  # (B*d, h, i*p + j, w)
        y = y.reshape(B * d * h, patch, patch, w).transpose(2, 3)  # (B*d*h, i, w, j)
        return y.reshape(B, d, h * patch, w * patch)
    return F.pixel_shuffle(x.flatten(1, 2).unflatten(2, grid), patch)


def unfold_patches(x: torch.Tensor, patch: int = PATCH) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, d, H, W) -> ((B * p*p, H/p * W/p, d), grid): one token sequence per offset inside a patch."""
    y, grid = to_patches(x, patch)
    return y.permute(0, 2, 3, 1).flatten(0, 1), grid


def fold_patches(x: torch.Tensor, grid: tuple[int, int], patch: int = PATCH) -> torch.Tensor:
    """Inverse of :func:`unfold_patches`: (B * p*p, N, d) -> (B, d, H, W)."""
    return from_patches(x.unflatten(0, (-1, patch * patch)).permute(0, 3, 1, 2), grid, patch)


class MobileViTBlock(nn.Module):
    """MobileViT v1 block (reference 1.3). (B, C, H, W) -> (B, C, H, W) for any H, W.

    local 3x3 conv -> 1x1 to d -> unfold 2x2 patches -> L transformer layers + LN -> fold -> 1x1 to C ->
    concat with the input -> 3x3 fusion conv. Maps with an odd side are resized bilinearly to the next even size
    for the transformer and back, as in the reference implementations, so the output keeps the input's size.
    """

    def __init__(self, c: int, d: int, depth: int, heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv_local = ConvBNAct(c, c, kernel=3)
        self.conv_in = nn.Conv2d(c, d, 1, bias=False)
        self.transformer = nn.Sequential(*(TransformerLayer(d, heads, 2.0, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(d)
        self.conv_proj = ConvBNAct(d, c, kernel=1)
        self.conv_fusion = ConvBNAct(2 * c, c, kernel=3)

    def global_representation(self, y: torch.Tensor) -> torch.Tensor:
        """Transformer over 2x2-patch sequences. (B, d, H, W) -> (B, d, H, W), H and W even."""
        sequences, grid = unfold_patches(y)
        return fold_patches(self.norm(self.transformer(sequences)), grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = on_patch_grid(self.conv_in(self.conv_local(x)), self.global_representation)
        return self.conv_fusion(torch.cat((x, self.conv_proj(y)), dim=1))


class MobileViTStage(MV2DownsampleStage):
    """A MobileViT v1 stage: an MV2 block with stride 2 (c1 -> c2), then ``n`` MobileViT blocks (the paper: 1).

    YAML: ``[-1, 1, MobileViTStage, [c2, d, depth, expansion, heads, dropout]]``; ``d`` (transformer width)
    scales with the YAML width like ``c2``; ``depth`` is the paper's L. (B, c1, H, W) -> (B, c2, ceil(H/2), ceil(W/2)).
    """

    yaml_args: ClassVar = (
        Arg("d", int, bound=POSITIVE, scaled=True),
        Arg("depth", int, bound=AT_LEAST_ONE, old_name="L"),
        Arg("expansion", (int, float), 4, bound=POSITIVE),
        Arg("heads", int, 4, bound=AT_LEAST_ONE),
        Arg("dropout", float, 0.0, bound=PROBABILITY),
    )
    repeats_doc: ClassVar = "MobileViT blocks after the stride-2 MV2 block"

    @classmethod
    def check_scaled(cls, c2: int, n: int, kwargs: dict[str, Any]) -> None:
        if kwargs["d"] % kwargs["heads"]:
            raise YamlArgError(
                f"transformer width d={kwargs['d']} (after width scaling) is not divisible by heads={kwargs['heads']}"
            )

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        d: int = 96,
        depth: int = 2,
        expansion: float = 4,
        heads: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(c1, c2, n, expansion, lambda: MobileViTBlock(c2, d, depth, heads, dropout))
