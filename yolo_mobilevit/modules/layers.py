"""Building blocks shared by every backbone family: conv+BN+activation and the inverted residual."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from .rows import Arg, YamlModule

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

    YAML: ``[-1, 1, ConvBNAct, [c2, k, s, act]]``, e.g. a MobileViT stem ``[16, 3, 2]``.
    """

    yaml_args: ClassVar = (
        Arg("k", int, 3),
        Arg("s", int, 1),
        Arg("act", str, "silu", tuple(ACTIVATIONS)),
    )

    def __init__(
        self, c1: int, c2: int, n: int = 1, k: int = 3, s: int = 1, act: str | None = "silu", groups: int = 1
    ) -> None:
        super().__init__()
        if n != 1:
            raise ValueError(f"ConvBNAct builds one conv; repeats must be 1, got {n}")
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, groups=groups, bias=False)
        self.bn = BatchNorm2d(c2)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> kxk depthwise (stride) -> 1x1 linear project, + identity if shapes match.

    (B, c1, H, W) -> (B, c2, H/stride, W/stride). The expand conv is skipped when ``expansion == 1``.
    ``se`` is an optional module applied after the depthwise conv (MobileNetV3's squeeze-excite).
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
    ) -> None:
        super().__init__()
        hidden = hidden or make_divisible(c1 * expansion, 8)
        self.use_residual = stride == 1 and c1 == c2
        self.expand = ConvBNAct(c1, hidden, k=1, act=act) if hidden != c1 else nn.Identity()
        self.depthwise = ConvBNAct(hidden, hidden, k=kernel, s=stride, act=act, groups=hidden)
        self.se = se if se is not None else nn.Identity()
        self.project = ConvBNAct(hidden, c2, k=1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.use_residual else y


class MV2Stage(YamlModule):
    """``n`` inverted residual blocks: the first with ``stride`` (and c1 -> c2), the rest stride 1 at c2.

    YAML: ``[-1, 3, MV2Stage, [c2, stride, expansion, act]]``. (B, c1, H, W) -> (B, c2, H/stride, W/stride).
    """

    yaml_args: ClassVar = (
        Arg("stride", int, 1, (1, 2)),
        Arg("expansion", (int, float), 4),
        Arg("act", str, "silu", tuple(ACTIVATIONS)),
    )

    def __init__(self, c1: int, c2: int, n: int = 1, stride: int = 1, expansion: float = 4, act: str = "silu"):
        super().__init__()
        self.blocks = nn.Sequential(
            *(InvertedResidual(c1 if i == 0 else c2, c2, stride if i == 0 else 1, expansion, act) for i in range(n))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__: list[Any] = ["BatchNorm2d", "ConvBNAct", "InvertedResidual", "MV2Stage", "make_divisible", "count_params"]
