"""Colour order: reversing the stem conv's input channels for weights trained on BGR images (Ultralytics feeds RGB)."""

from __future__ import annotations

from torch import nn

from .registry import ConversionError, SourceFormat, StateDict, weighted_rows


def _swap_rb(mapped: StateDict, model: nn.Module) -> StateDict:
    """The first backbone conv's weight with its 3 input channels reversed."""
    i, stem = weighted_rows(model)[0]
    for name, conv in stem.named_modules():
        if isinstance(conv, nn.Conv2d) and conv.in_channels == 3 and f"model.{i}.{name}.weight" in mapped:
            key = f"model.{i}.{name}.weight"
            return {key: mapped[key].flip(1)}
    raise ConversionError("swap_rb: the first backbone row has no loaded 3-channel input conv")


def decide_swap_rb(fmt: SourceFormat, swap_rb: bool | None = None) -> tuple[bool, str]:
    """Whether to reverse the stem's input channels for ``fmt``, and why (for the log).

    ``swap_rb=None`` follows the source's training colour order (``fmt.input_order``): Ultralytics feeds RGB, so
    BGR-trained weights (ml-cvnets v0.1 MobileViT) are swapped; True / False force it either way."""
    if swap_rb is None:
        swap = fmt.input_order == "bgr"
        why = f"{fmt.name} weights expect {fmt.input_order.upper()} input; Ultralytics feeds RGB"
        return swap, why + (": reversed the stem's input channels (--no-swap-rb keeps them)" if swap else "")
    return swap_rb, f"stem input channels {'reversed' if swap_rb else 'kept'} as asked (swap_rb={swap_rb})"


def swap_stem_channels(mapped: StateDict, model: nn.Module) -> StateDict:
    """``mapped`` with the stem conv's 3 input channels reversed (RGB <-> BGR)."""
    return {**mapped, **_swap_rb(mapped, model)}
