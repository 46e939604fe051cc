"""MobileNet V1, V2 and V3 as YAML rows.

Reference: ``shared/reference/architectures.md`` section 4; layouts as torchvision 0.29 and timm 1.0 build them.

* V1 (Howard et al. 2017): :class:`MobileNetV1Stage`, ``n`` depthwise-separable blocks (3x3 depthwise + BN + act,
  1x1 pointwise + BN + act; no residual). ReLU6, BN eps 1e-5 (timm ``mobilenetv1_100``).
* V2 (Sandler et al. 2018): :class:`~yolo_mobilevit.modules.layers.MV2Stage` with ``act=relu6``, BN eps 1e-5.
* V3 (Howard et al. 2019): :class:`MobileNetV3Stage`, ``n`` inverted residuals with an explicit expanded width,
  kernel 3 or 5, optional squeeze-excite, ReLU or h-swish; BN eps 1e-3, momentum 0.01 (torchvision).

Input statistics: put an :class:`~yolo_mobilevit.modules.layers.ImageNorm` row first (``imagenet`` for torchvision
weights; timm tags differ, see ``NORM_PRESETS``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .layers import ACTIVATIONS, ConvBNAct, InvertedResidual, SqueezeExcite, make_divisible, strided_blocks
from .rows import MOMENTUM, POSITIVE, REQUIRED, Arg, YamlModule

#: torchvision's MobileNetV3 BatchNorm settings (its ``norm_layer`` partial).
V3_BN_EPS, V3_BN_MOMENTUM = 1e-3, 0.01


class DepthwiseSeparable(nn.Module):
    """MobileNetV1 block: kxk depthwise (stride) + BN + act, then 1x1 pointwise + BN + act; no residual.

    (B, c1, H, W) -> (B, c2, ceil(H/stride), ceil(W/stride)).
    """

    def __init__(self, c1: int, c2: int, stride: int = 1, act: str = "relu6", kernel: int = 3) -> None:
        super().__init__()
        self.depthwise = ConvBNAct(c1, c1, kernel=kernel, stride=stride, act=act, groups=c1)
        self.pointwise = ConvBNAct(c1, c2, kernel=1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class MobileNetV1Stage(YamlModule):
    """``n`` depthwise-separable blocks: the first with ``stride`` (c1 -> c2), the rest stride 1 at c2.

    YAML: ``[-1, 6, MobileNetV1Stage, [c2, stride, act]]``. (B, c1, H, W) -> (B, c2, H/stride, W/stride).
    """

    yaml_args: ClassVar = (
        Arg("stride", int, 1, (1, 2)),
        Arg("act", str, "relu6", tuple(ACTIVATIONS)),
    )

    def __init__(self, c1: int, c2: int, n: int = 1, stride: int = 1, act: str = "relu6") -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *strided_blocks(lambda i, o, s: DepthwiseSeparable(i, o, s, act), c1, c2, n, stride)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def mobilenet_v3_block(
    c1: int, c2: int, kernel: int, hidden: int, stride: int, se: bool, act: str, bn_eps: float, bn_momentum: float
) -> InvertedResidual:
    """One MobileNetV3 bottleneck: the shared inverted residual with an explicit expanded width and, when ``se``,
    a ReLU/hard-sigmoid squeeze-excite of width ``make_divisible(hidden / 4, 8)`` after the depthwise conv."""
    excite = SqueezeExcite(hidden, make_divisible(hidden / 4, 8), act="relu", gate="hardsigmoid") if se else None
    return InvertedResidual(
        c1, c2, stride, act=act, kernel=kernel, hidden=hidden, se=excite, bn_eps=bn_eps, bn_momentum=bn_momentum
    )


class MobileNetV3Stage(YamlModule):
    """``n`` MobileNetV3 bottlenecks sharing (kernel, hidden, se, act): the first with ``stride`` (c1 -> c2).

    YAML: ``[-1, 2, MobileNetV3Stage, [c2, kernel, expanded, stride, se, act, bn_eps, bn_momentum]]``; ``expanded``
    (torchvision's ``expanded_channels``) scales with the YAML width like ``c2``.
    (B, c1, H, W) -> (B, c2, ceil(H/stride), ceil(W/stride)).
    """

    yaml_args: ClassVar = (
        Arg("kernel", int, REQUIRED, (3, 5)),
        Arg("expanded", int, bound=POSITIVE, scaled=True, old_name="hidden"),
        Arg("stride", int, 1, (1, 2)),
        Arg("se", bool, False),
        Arg("act", str, "hardswish", tuple(ACTIVATIONS)),
        Arg("bn_eps", float, V3_BN_EPS, bound=POSITIVE),
        Arg("bn_momentum", float, V3_BN_MOMENTUM, bound=MOMENTUM),
    )

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        *,
        kernel: int,
        expanded: int,
        stride: int = 1,
        se: bool = False,
        act: str = "hardswish",
        bn_eps: float = V3_BN_EPS,
        bn_momentum: float = V3_BN_MOMENTUM,
    ) -> None:
        super().__init__()

        def make_block(c_in: int, c_out: int, block_stride: int) -> InvertedResidual:
            return mobilenet_v3_block(c_in, c_out, kernel, expanded, block_stride, se, act, bn_eps, bn_momentum)

        self.blocks = nn.Sequential(*strided_blocks(make_block, c1, c2, n, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


__all__ = ["DepthwiseSeparable", "MobileNetV1Stage", "MobileNetV3Stage", "mobilenet_v3_block"]
