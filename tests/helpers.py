"""Helpers shared by the tests: non-trivial norm statistics for random models, and the relative error they compare."""

from __future__ import annotations

import torch
from torch import nn


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm/GroupNorm/LayerNorm non-default affine parameters and running statistics (seeded), so
    that a wrongly mapped, re-initialised or mis-folded norm shows up in the outputs. Returns ``model``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.num_batches_tracked.fill_(1000)
    return model


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours - ref| / max |ref| (in fp32)."""
    ours, ref = ours.float(), ref.float()
    return ((ours - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
