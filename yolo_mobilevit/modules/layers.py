"""Building blocks shared by every backbone family: conv+BN+activation and the inverted residual."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .cpu_layout import applies, conv_act, fusable, hooked, input_rows, row_bands
from .rows import AT_LEAST_ONE, MOMENTUM, POSITIVE, Arg, YamlModule

ACTIVATIONS: dict[str, type[nn.Module] | None] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hardswish": nn.Hardswish,
    "gelu": nn.GELU,
    "none": None,
}


def make_divisible(value: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never dropping more than 10% below it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < round_limit * value else rounded


def make_activation(name: str | None) -> nn.Module:
    if name is None or name == "none":
        return nn.Identity()
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {list(ACTIVATIONS)}")
    act = ACTIVATIONS[name]
    return act(inplace=True) if act in (nn.SiLU, nn.ReLU, nn.ReLU6, nn.Hardswish) else act()


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that keeps the reference eps (1e-5) and momentum (0.1).

    Ultralytics' ``initialize_weights`` rewrites eps and momentum on modules whose type *is* ``nn.BatchNorm2d``;
    a subclass is left alone, so converted ImageNet statistics stay valid.
    """


class ConvBNAct(YamlModule):
    """Conv2d (no bias) -> BatchNorm -> activation. (B, c1, H, W) -> (B, c2, ceil(H/s), ceil(W/s)).

    YAML: ``[-1, 1, ConvBNAct, [c2, kernel, stride, act, bn_eps, bn_momentum]]``, e.g. a MobileViT stem
    ``[16, 3, 2]`` or a MobileNetV3 stem ``[16, 3, 2, hardswish, 0.001, 0.01]`` (torchvision's BN settings for V3).
    """

    yaml_args: ClassVar = (
        Arg("kernel", int, 3, bound=AT_LEAST_ONE, old_name="k"),
        Arg("stride", int, 1, bound=AT_LEAST_ONE, old_name="s"),
        Arg("act", str, "silu", tuple(ACTIVATIONS)),
        Arg("bn_eps", float, 1e-5, bound=POSITIVE),
        Arg("bn_momentum", float, 0.1, bound=MOMENTUM),
    )
    channel_divisor: ClassVar = 4  # stems of 12 channels (Mobile-Former 96M-214M) build as written
    max_repeats: ClassVar = 1
    repeats_doc: ClassVar = "one conv"

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        kernel: int = 3,
        stride: int = 1,
        act: str | None = "silu",
        groups: int = 1,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = BatchNorm2d(c2, eps=bn_eps, momentum=bn_momentum)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_fused and applies(self, x):
            y = conv_act(self.conv, self.act, x)  # CPU inference: the activation as the conv's post-op
            if y is not None:
                return y
        return self.act(self.bn(self.conv(x)))

    @property
    def is_fused(self) -> bool:
        return not isinstance(self.bn, nn.BatchNorm2d)

    def runs_fused(self, x: torch.Tensor) -> bool:
        """Whether a caller may run this module on ``x`` as :func:`conv_act` (it is fused, the post-op applies and
        no forward hook expects the module to be called). Callers have checked :func:`applies`."""
        return self.is_fused and fusable(self.conv, self.act, x) and not hooked(self)

    @torch.no_grad()
    def fuse(self) -> ConvBNAct:
        """Fold the BatchNorm's running statistics into the conv (inference only); ``bn`` becomes an Identity.

        Idempotent. The module stays an ordinary ``ConvBNAct`` (same forward, picklable, scriptable).
        """
        if not self.is_fused:
            self.conv = fold_batchnorm(self.conv, self.bn)
            self.bn = nn.Identity()
        return self


@torch.no_grad()
def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with a bias computing ``bn(conv(x))`` in eval mode: W' = W * g / s, b' = (b - mean) * g / s + beta,
    with ``s = sqrt(running_var + eps)``. Gradients are switched off, as for Ultralytics' fused convs."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused.requires_grad_(False)


def fuse_modules(model: nn.Module) -> int:
    """Fold every plugin conv+BN pair under ``model`` (see :meth:`ConvBNAct.fuse`); returns how many were folded."""
    pending = [m for m in model.modules() if isinstance(m, ConvBNAct) and not m.is_fused]
    for m in pending:
        m.fuse()
    return len(pending)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> kxk depthwise (stride) -> 1x1 linear project, + identity if shapes match.

    (B, c1, H, W) -> (B, c2, H/stride, W/stride). The expand conv is skipped when ``expansion == 1``.
    ``se`` is an optional module applied after the depthwise conv (MobileNetV3's squeeze-excite).
    ``bn_eps``/``bn_momentum`` set every BatchNorm of the block (torchvision's MobileNetV3: 1e-3 / 0.01).
    """

    def __init__(
        self,
        c1: int,
        c2: int,
        stride: int = 1,
        expansion: float = 4,
        act: str = "silu",
        kernel: int = 3,
        hidden: int | None = None,
        se: nn.Module | None = None,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        hidden = hidden or make_divisible(c1 * expansion, 8)
        bn = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        self.use_residual = stride == 1 and c1 == c2
        self.expand = ConvBNAct(c1, hidden, kernel=1, act=act, **bn) if hidden != c1 else nn.Identity()
        self.depthwise = ConvBNAct(hidden, hidden, kernel=kernel, stride=stride, act=act, groups=hidden, **bn)
        self.se = se if se is not None else nn.Identity()
        self.project = ConvBNAct(hidden, c2, kernel=1, act=None, **bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bands = self.cpu_bands(x) if applies(self, x) else None
        if bands is not None:
            return self.forward_in_bands(x, bands)
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.use_residual else y

    def cpu_bands(self, x: torch.Tensor) -> list[tuple[int, int]] | None:
        """The bands of output rows in which CPU inference computes this block on ``x`` (:func:`row_bands`), or
        None to compute it whole: a small map, a squeeze-excite (it pools the whole map), a dilated depthwise conv,
        or a conv that does not run fused."""
        dw = self.depthwise.conv
        out_rows = (x.shape[2] + 2 * dw.padding[0] - dw.kernel_size[0]) // dw.stride[0] + 1
        bands = row_bands(out_rows, dw.in_channels * x.shape[3] * x.element_size(), dw.stride[0])
        if len(bands) == 1 or not isinstance(self.se, nn.Identity) or dw.dilation != (1, 1):
            return None  # the size first: most maps are small, and the checks below look up hooks
        convs = [m for m in (self.expand, self.depthwise, self.project) if not isinstance(m, nn.Identity)]
        return bands if all(m.runs_fused(x) for m in convs) else None

    def forward_in_bands(self, x: torch.Tensor, bands: list[tuple[int, int]]) -> torch.Tensor:
        """:meth:`forward` one band of output rows at a time, so the expanded map (B, hidden, H, W) only ever exists
        a band at a time: each band expands the input rows its depthwise conv reads, pads with zero rows where the
        band meets the map's edge (the depthwise conv's own padding) and projects. Equal up to float rounding."""
        dw = self.depthwise.conv
        (kernel, _), (stride, _), (pad_rows, pad_cols) = dw.kernel_size, dw.stride, dw.padding
        out = []
        for band in bands:
            first, stop, top, bottom = input_rows(band, x.shape[2], kernel, stride, pad_rows)
            y = x[:, :, first:stop]
            if not isinstance(self.expand, nn.Identity):
                y = conv_act(self.expand.conv, self.expand.act, y)
            if top or bottom:
                y = F.pad(y, (0, 0, top, bottom))
            y = conv_act(dw, self.depthwise.act, y, padding=(0, pad_cols))
            out.append(conv_act(self.project.conv, self.project.act, y))
        y = torch.cat(out, dim=2)
        return x + y if self.use_residual else y


def strided_blocks(
    make_block: Callable[[int, int, int], nn.Module], c1: int, c2: int, n: int, stride: int = 1
) -> list[nn.Module]:
    """The ``n`` blocks of a stage: ``make_block(c1, c2, stride)``, then ``make_block(c2, c2, 1)`` ``n - 1`` times.

    ``make_block(c_in, c_out, stride)`` builds one block; (B, c1, H, W) -> (B, c2, H/stride, W/stride) in all.
    """
    return [make_block(c1 if i == 0 else c2, c2, stride if i == 0 else 1) for i in range(n)]


class MV2Stage(YamlModule):
    """``n`` inverted residual blocks: the first with ``stride`` (and c1 -> c2), the rest stride 1 at c2.

    YAML: ``[-1, 3, MV2Stage, [c2, stride, expansion, act]]``. (B, c1, H, W) -> (B, c2, H/stride, W/stride).
    """

    yaml_args: ClassVar = (
        Arg("stride", int, 1, (1, 2)),
        Arg("expansion", (int, float), 4, bound=POSITIVE),
        Arg("act", str, "silu", tuple(ACTIVATIONS)),
    )

    def __init__(self, c1: int, c2: int, n: int = 1, stride: int = 1, expansion: float = 4, act: str = "silu"):
        super().__init__()
        self.blocks = nn.Sequential(
            *strided_blocks(lambda i, o, s: InvertedResidual(i, o, s, expansion, act), c1, c2, n, stride)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class MV2DownsampleStage(YamlModule):
    """Base of the stages that open with a stride-2 MV2 block (c1 -> c2, ``downsample``) and then run ``n`` blocks
    at c2 (``blocks``): subclasses pass ``make_block``, which builds one. Not a YAML row itself (no ``yaml_args``).

    (B, c1, H, W) -> (B, c2, ceil(H/2), ceil(W/2)).
    """

    #: The leading YAML arguments of the transformer stages built on this one (MobileViT v1 and v2): ``d``, the
    #: transformer width (scaled with the YAML width like c2), and ``depth``, the paper's L.
    transformer_args: ClassVar = (
        Arg("d", int, bound=POSITIVE, scaled=True),
        Arg("depth", int, bound=AT_LEAST_ONE, old_name="L"),
    )

    @classmethod
    def stride(cls, kwargs: dict[str, Any]) -> int:
        return 2

    def __init__(self, c1: int, c2: int, n: int, expansion: float, make_block: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.downsample = InvertedResidual(c1, c2, stride=2, expansion=expansion)
        self.blocks = nn.Sequential(*(make_block() for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class SqueezeExcite(nn.Module):
    """Squeeze-excite: x * gate(expand(act(reduce(mean_HW(x))))). (B, c, H, W) -> (B, c, H, W).

    MobileNetV3 uses ``squeeze = make_divisible(c / 4, 8)``, a ReLU and a hard-sigmoid gate.
    """

    def __init__(self, c: int, squeeze: int, act: str = "relu", gate: str = "hardsigmoid") -> None:
        super().__init__()
        gates = {"hardsigmoid": nn.Hardsigmoid, "sigmoid": nn.Sigmoid}
        if gate not in gates:
            raise ValueError(f"unknown gate {gate!r}; choose one of {list(gates)}")
        self.reduce = nn.Conv2d(c, squeeze, 1)
        self.act = make_activation(act)
        self.expand = nn.Conv2d(squeeze, c, 1)
        self.gate = gates[gate]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True)))))


#: Input statistics (mean, std) per preset; Ultralytics feeds RGB in [0, 1].
NORM_PRESETS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # torchvision; timm *.ra_in1k, *.lamb_in1k
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # timm *.ra4_e3600_r224_in1k
    "raw": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # timm *.miil_in21k*, MobileViT
}


def norm_preset(mean: tuple[float, ...], std: tuple[float, ...], tol: float = 1e-6) -> str | None:
    """The :data:`NORM_PRESETS` name for ``(mean, std)`` (e.g. a timm ``pretrained_cfg``), or None."""
    for name, (m, s) in NORM_PRESETS.items():
        if len(mean) == len(std) == 3 and all(abs(a - b) <= tol for a, b in zip((*mean, *std), (*m, *s))):
            return name
    return None


def image_statistics(preset: str, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A preset's (mean, std) for an image of ``channels`` channels (see :class:`ImageNorm`); ValueError when the
    preset's RGB statistics have no meaning for that many channels."""
    mean, std = NORM_PRESETS[preset]
    if channels == 3:
        return mean, std
    if channels == 1:
        return (sum(mean) / 3,), (sum(std) / 3,)
    if len(set(mean)) == 1 and len(set(std)) == 1:
        return (mean[0],) * channels, (std[0],) * channels
    uniform = [name for name, (m, s) in NORM_PRESETS.items() if len(set(m)) == len(set(s)) == 1]
    raise ValueError(
        f"preset {preset!r} holds RGB statistics, which do not apply to {channels}-channel images; use a data YAML "
        f"with channels 1 or 3, or a preset with one statistic for every channel: {uniform}"
    )


class ImageNorm(YamlModule):
    """Per-channel input normalisation ``(x - mean) / std`` with preset statistics, as buffers (exports as Sub/Div).

    YAML: ``[-1, 1, ImageNorm, [preset]]`` as the first backbone row, a passthrough row (no c2; C -> C channels).
    Backbones pretrained on normalised images need it because Ultralytics only divides by 255.
    ``channels`` is the image's (the data YAML's ``channels``, which the builder passes): 3 uses the preset's RGB
    statistics; 1 (grayscale) uses their mean, i.e. the mean and std of the gray value ``(R + G + B) / 3`` when the
    three channels are equal; any other count works only for presets whose three statistics are equal (``inception``,
    ``raw``), which then apply to every channel. (B, C, H, W) -> (B, C, H, W).
    """

    yaml_args: ClassVar = (Arg("preset", str, "imagenet", tuple(NORM_PRESETS)),)
    passthrough: ClassVar = True
    max_repeats: ClassVar = 1
    repeats_doc: ClassVar = "one normalisation"
    reads_image: ClassVar = True  # statistics are per image channel: the row must take the network's input

    def __init__(self, preset: str = "imagenet", channels: int = 3) -> None:
        super().__init__()
        if preset not in NORM_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {list(NORM_PRESETS)}")
        mean, std = image_statistics(preset, channels)
        self.preset, self.channels = preset, channels
        # Not persistent: the preset defines them, so checkpoints and converted weights never carry stale copies.
        self.register_buffer("mean", torch.tensor(mean).view(1, channels, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, channels, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        channels = getattr(self, "channels", 3)  # absent on modules pickled by earlier releases (always 3)
        return f"preset={self.preset!r}" + (f", channels={channels}" if channels != 3 else "")


__all__ = [
    "NORM_PRESETS",
    "BatchNorm2d",
    "ConvBNAct",
    "ImageNorm",
    "InvertedResidual",
    "MV2DownsampleStage",
    "MV2Stage",
    "SqueezeExcite",
    "fold_batchnorm",
    "fuse_modules",
    "image_statistics",
    "make_divisible",
    "norm_preset",
    "strided_blocks",
]
