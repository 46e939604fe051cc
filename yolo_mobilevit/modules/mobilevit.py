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

from .attention import merge_heads, split_heads
from .cpu_layout import linear_act
from .export_mode import export_mode
from .layers import ConvBNAct, MV2DownsampleStage
from .rows import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, PROBABILITY, Arg, YamlArgError

PATCH = 2  # every published MobileViT uses 2x2 patches
PRETRAINING_SIZE = 256  # the ImageNet resolution every published MobileViT v1 was trained at
#: Additive attention-mask value of a padded key: exp() of it underflows to 0 in fp32 and fp16, and it stays finite
#: in fp16 (exporters that compress constants to fp16 would turn the dtype's own minimum into -inf and 0 * inf = NaN).
MASKED = -1e4


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

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask``: None, or an additive (B, 1, 1, N) float mask over the keys (0: attend, :data:`MASKED`: not)."""
        qkv = linear_act(self, self.qkv, x)
        q, k, v = (split_heads(t, self.heads) for t in qkv.chunk(3, dim=-1))  # 3 x (B, heads, N, d/heads)
        dropout = self.attn_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.proj_drop(linear_act(self, self.proj, merge_heads(y)))


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

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.feed_forward(self.norm2(x))

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``mlp`` (Linear, SiLU, Dropout, Linear, Dropout); on CPU inference as two fused oneDNN matmuls."""
        if self.training:
            return self.mlp(x)
        fc1, act, _, fc2, _ = self.mlp
        return linear_act(self, fc2, linear_act(self, fc1, x, act))


def tracing_every_size() -> bool:
    """Whether a graph that must serve every input size is being traced: tracing, and the export is not fixed-size
    (:func:`yolo_mobilevit.modules.export_mode.export_mode`). Such a graph may not branch on sizes."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        mode = export_mode()
        return mode is None or not mode.static
    return False


def needs_resize(h: int, w: int, patch: int = PATCH) -> bool:
    """Whether a map must be resized to a multiple of the patch. While tracing, also for even maps unless the export
    is fixed-size (:func:`tracing_every_size`), so that one dynamic graph serves every input size."""
    return bool(h % patch or w % patch) or tracing_every_size()


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


def _eager() -> bool:
    """Whether the forward runs eagerly: no trace, script, compilation or export that needs at most 4-D tensors."""
    return export_mode() is None and not (
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_compiling()
    )


def unfold_patches(x: torch.Tensor, patch: int = PATCH) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, d, H, W) -> ((B * p*p, H/p * W/p, d), grid): one token sequence per offset inside a patch.

    Eagerly, one copy through a 6-D view (from the channels-last maps the CPU policy hands over, the channel axis is
    already innermost); graphs being traced or exported take :func:`to_patches`' at most 4-D path."""
    if _eager():
        B, d, H, W = x.shape
        h, w = H // patch, W // patch
        y = x.permute(0, 2, 3, 1).reshape(B, h, patch, w, patch, d).permute(0, 2, 4, 1, 3, 5)  # (B, i, j, h, w, d)
        return y.reshape(B * patch * patch, h * w, d), (h, w)
    y, grid = to_patches(x, patch)
    return y.permute(0, 2, 3, 1).flatten(0, 1), grid


def fold_patches(x: torch.Tensor, grid: tuple[int, int], patch: int = PATCH) -> torch.Tensor:
    """Inverse of :func:`unfold_patches`: (B * p*p, N, d) -> (B, d, H, W); eagerly one copy into a channels-last
    map (what the following convolution reads fastest on the CPU)."""
    if _eager():
        (h, w), d = grid, x.shape[-1]
        y = x.reshape(-1, patch, patch, h, w, d).permute(0, 3, 1, 4, 2, 5)  # (B, h, i, w, j, d)
        return y.reshape(-1, h * patch, w * patch, d).permute(0, 3, 1, 2)
    return from_patches(x.unflatten(0, (-1, patch * patch)).permute(0, 3, 1, 2), grid, patch)


def window_layout(h: int, w: int, window: int) -> tuple[int, int, int, int]:
    """``(rows, cols, size_h, size_w)``: the fewest windows of at most ``window`` x ``window`` patches that cover an
    h x w patch grid, all of one size (ceil(h / rows) x ceil(w / cols)), so the padding is less than one patch per
    window and every window holds at least one real patch. Plain integer arithmetic: traced sizes stay symbolic."""
    rows, cols = (h + window - 1) // window, (w + window - 1) // window
    return rows, cols, (h + rows - 1) // rows, (w + cols - 1) // cols


def to_windows(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(B, C, rows*s, cols*t) -> (B * rows*cols, C, s, t): window r*cols + c of image b at batch index
    b*rows*cols + r*cols + c. Reshapes and transposes of at most 4 dimensions."""
    B, C, H, W = x.shape
    s, t = H // rows, W // cols
    y = x.reshape(B * C * rows, s, cols, t).transpose(1, 2)  # (B*C*rows, cols, s, t)
    y = y.reshape(B, C, rows * cols, s * t).transpose(1, 2)  # (B, windows, C, s*t)
    return y.reshape(B * rows * cols, C, s, t)


def from_windows(x: torch.Tensor, rows: int, cols: int, size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`to_windows`: (B * rows*cols, C, s, t) -> (B, C, rows*s, cols*t), ``size`` = (s, t) as the
    windows were cut (passed on, not read back from ``x``: ONNX's DepthToSpace of the patch fold would hand a graph
    traced for every size the trace-time sizes)."""
    s, t = size
    C = x.shape[1]
    y = x.reshape(-1, rows * cols, C, s * t).transpose(1, 2)  # (B, C, windows, s*t)
    y = y.reshape(-1, cols, s, t).transpose(1, 2)  # (B*C*rows, s, cols, t)
    return y.reshape(-1, C, rows * s, cols * t)


def window_bands(n: int, count: int, size: int) -> list[tuple[int, int, int]]:
    """The ``count`` windows of ``size`` patches that :func:`window_layout` lays over ``n`` patches, as at most two
    bands of equal windows over real patches only: ``[(first patch, windows, patches per window), ...]``; the last
    window is shorter where the layout pads (``n`` = 40, 3 windows of 14: ``[(0, 2, 14), (28, 1, 12)]``)."""
    last = n - (count - 1) * size
    if last == size:
        return [(0, count, size)]
    return ([(0, count - 1, size)] if count > 1 else []) + [((count - 1) * size, 1, last)]


def window_key_mask(y: torch.Tensor, rows: int, cols: int, size_h: int, size_w: int) -> torch.Tensor:
    """The additive key mask of the patch sequences of ``y`` (B, d, H, W) cut into ``rows`` x ``cols`` windows of
    ``size_h`` x ``size_w`` patches after padding at the bottom and right: (B * windows * p*p, 1, 1, size_h*size_w),
    0 for real patches, :data:`MASKED` for padding, in the order of :func:`unfold_patches` of :func:`to_windows`.
    Built from ``y``'s shape by tensor ops, so a traced graph computes it for every input size."""
    real = torch.ones_like(y[:1, :1, ::PATCH, ::PATCH])  # (1, 1, h, w) patch grid
    h, w = real.shape[-2:]
    real = F.pad(real, (0, cols * size_w - w, 0, rows * size_h - h))
    real = to_windows(real, rows, cols).reshape(rows * cols, 1, size_h * size_w)
    real = real.expand(-1, PATCH * PATCH, -1).reshape(-1, 1, 1, size_h * size_w)  # one per offset inside a patch
    return ((1 - real) * MASKED).repeat(y.shape[0], 1, 1, 1)


class MobileViTBlock(nn.Module):
    """MobileViT v1 block (reference 1.3). (B, C, H, W) -> (B, C, H, W) for any H, W.

    local 3x3 conv -> 1x1 to d -> unfold 2x2 patches -> L transformer layers + LN -> fold -> 1x1 to C ->
    concat with the input -> 3x3 fusion conv. Maps with an odd side are resized bilinearly to the next even size
    for the transformer and back, as in the reference implementations, so the output keeps the input's size.

    ``window`` (patches per side; 0: global attention over the whole map, the paper) limits attention to windows of
    at most ``window`` x ``window`` patches (:func:`window_layout`), ViTDet-style: the map is padded at the bottom and
    right to whole windows and the padding masked out of every attention, then cropped. Same parameters either way;
    a map that fits in one window gets global attention, so the output is the paper's.
    """

    window: int = 0  # blocks pickled before windows existed lack the attribute: global attention, as they were built

    def __init__(self, c: int, d: int, depth: int, heads: int = 4, dropout: float = 0.0, window: int = 0) -> None:
        super().__init__()
        if window < 0:
            raise ValueError(f"window must be >= 0 patches (0: global attention), got {window}")
        self.window = window
        self.conv_local = ConvBNAct(c, c, kernel=3)
        self.conv_in = nn.Conv2d(c, d, 1, bias=False)
        self.transformer = nn.Sequential(*(TransformerLayer(d, heads, 2.0, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(d)
        self.conv_proj = ConvBNAct(d, c, kernel=1)
        self.conv_fusion = ConvBNAct(2 * c, c, kernel=3)

    def attend(self, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Transformer over 2x2-patch sequences, each image of ``y`` one attention span. (B, d, H, W) ->
        (B, d, H, W), H and W even; ``mask``: None or the additive key mask of :func:`window_key_mask`."""
        sequences, grid = unfold_patches(y)
        for layer in self.transformer:
            sequences = layer(sequences, mask)
        return fold_patches(self.norm(sequences), grid)

    def global_representation(self, y: torch.Tensor) -> torch.Tensor:
        """Transformer over 2x2-patch sequences of the whole map. (B, d, H, W) -> (B, d, H, W), H and W even."""
        return self.attend(y)

    def windowed_representation(self, y: torch.Tensor) -> torch.Tensor:
        """Transformer within windows of at most ``window`` x ``window`` patches. (B, d, H, W) -> (B, d, H, W),
        H and W even. A graph traced for every input size always pads and masks (no branch on sizes)."""
        H, W = y.shape[-2:]
        rows, cols, size_h, size_w = window_layout(H // PATCH, W // PATCH, self.window)
        every_size = tracing_every_size()
        if not every_size and rows == cols == 1:
            return self.global_representation(y)
        pad_h, pad_w = rows * size_h * PATCH - H, cols * size_w * PATCH - W
        padded = every_size or bool(pad_h or pad_w)
        mode = export_mode()
        if padded and not every_size and mode is not None and mode.unmasked_windows:
            return self.unpadded_windows(y, rows, cols, size_h, size_w)
        mask = window_key_mask(y, rows, cols, size_h, size_w) if padded else None
        if padded:
            y = F.pad(y, (0, pad_w, 0, pad_h))
        size = (size_h * PATCH, size_w * PATCH)
        out = from_windows(self.attend(to_windows(y, rows, cols), mask), rows, cols, size)
        return out[:, :, :H, :W] if padded else out

    def unpadded_windows(self, y: torch.Tensor, rows: int, cols: int, size_h: int, size_w: int) -> torch.Tensor:
        """What :meth:`windowed_representation` computes, without padding or mask: the map cut into the (at most
        2 x 2) bands of equal windows of :func:`window_bands`, each attended as a regular grid, and joined. A padded
        window's masked keys weigh exactly 0, so this equals the masked path up to float rounding. Fixed sizes only
        (the bands are read from the traced shape): for targets whose attention gets a mask wrong (NCNN)."""
        H, W = y.shape[-2:]
        bands = []
        for r0, n_rows, s in window_bands(H // PATCH, rows, size_h):
            parts = []
            for c0, n_cols, t in window_bands(W // PATCH, cols, size_w):
                part = y[:, :, r0 * PATCH : (r0 + n_rows * s) * PATCH, c0 * PATCH : (c0 + n_cols * t) * PATCH]
                attended = self.attend(to_windows(part, n_rows, n_cols))
                parts.append(from_windows(attended, n_rows, n_cols, (s * PATCH, t * PATCH)))
            bands.append(torch.cat(parts, dim=3) if len(parts) > 1 else parts[0])
        return torch.cat(bands, dim=2) if len(bands) > 1 else bands[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        representation = self.windowed_representation if self.window else self.global_representation
        y = on_patch_grid(self.conv_in(self.conv_local(x)), representation)
        return self.conv_fusion(torch.cat((x, self.conv_proj(y)), dim=1))

    def extra_repr(self) -> str:
        return f"window={self.window}" if getattr(self, "window", 0) else ""


def pretraining_window(stride: int, size: int = PRETRAINING_SIZE, patch: int = PATCH) -> int:
    """Patches per side of the map a block at ``stride`` (of its output) saw at the ``size``-px pretraining
    resolution: the default window (P3, stride 8: 16; P4: 8; P5: 4)."""
    return max(1, size // (stride * patch))


WINDOW_DOC = (
    "attention window in patches per side; 0: global (the paper); the ImageNet-pretraining grid is "
    f"{PRETRAINING_SIZE} / (stride x {PATCH}): 16 at P3, 8 at P4, 4 at P5"
)


class MobileViTStage(MV2DownsampleStage):
    """A MobileViT v1 stage: an MV2 block with stride 2 (c1 -> c2), then ``n`` MobileViT blocks (the paper: 1).

    YAML: ``[-1, 1, MobileViTStage, [c2, d, depth, expansion, heads, dropout, window]]``; ``d`` (transformer width)
    scales with the YAML width like ``c2``; ``depth`` is the paper's L; ``window`` (0: global, the paper) limits
    attention to windows of that many patches per side (:class:`MobileViTBlock`; :func:`pretraining_window`).
    (B, c1, H, W) -> (B, c2, ceil(H/2), ceil(W/2)).
    """

    yaml_args: ClassVar = (
        *MV2DownsampleStage.transformer_args,
        Arg("expansion", (int, float), 4, bound=POSITIVE),
        Arg("heads", int, 4, bound=AT_LEAST_ONE),
        Arg("dropout", float, 0.0, bound=PROBABILITY),
        Arg("window", int, 0, bound=NON_NEGATIVE, doc=WINDOW_DOC),
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
        *,
        d: int,
        depth: int,
        expansion: float = 4,
        heads: int = 4,
        dropout: float = 0.0,
        window: int = 0,
    ) -> None:
        super().__init__(c1, c2, n, expansion, lambda: MobileViTBlock(c2, d, depth, heads, dropout, window))
