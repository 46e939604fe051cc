"""Attention heads as views: every ``F.scaled_dot_product_attention`` of the package splits and merges heads here.

Views of at most 4 dimensions and no arithmetic on sizes, so that exports stay within what 4-D runtimes (NCNN) and
constant-shape converters accept.
"""

from __future__ import annotations

import torch


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C/heads); head i holds channels [i*C/heads, (i+1)*C/heads)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`split_heads`: (B, heads, N, c) -> (B, N, heads*c)."""
    return x.transpose(1, 2).flatten(2)


__all__ = ["merge_heads", "split_heads"]
