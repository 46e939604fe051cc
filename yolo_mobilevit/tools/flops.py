"""Compute counts that include attention.

An independent count for checking the GFLOPs Ultralytics prints (``get_flops``: ultralytics-thop, which from 2.2.3
counts ``F.scaled_dot_product_attention`` and matmuls as well as layers, plus norms and elementwise ops).
``torch.utils.flop_counter`` counts every aten op it has a formula for, but has none for the CPU flash kernel behind
``F.scaled_dot_product_attention``; we add one.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def _cpu_flash_sdpa_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FORMULAS = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _EXTRA_FORMULAS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_flash_sdpa_flops


@torch.no_grad()
def count_macs(model: nn.Module, inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one eval-mode forward of ``model(inputs)``, attention included."""
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
            model(inputs)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
