"""The plugin's one performance policy: on the CPU, plugin rows run in channels-last memory.

oneDNN's convolutions are fastest in channels-last layout on CPUs (about 1.5x on MobileViT-XS at 640 in inference,
and 1.4x on the flagship's training step; results equal up to float rounding). Every plugin row inherits
:class:`ChannelsLastOnCPU`: on a CPU tensor, training or not, it converts its 4-D inputs to channels-last, and a row
whose output feeds an Ultralytics layer (``nchw_out``, set by the builder) hands back contiguous NCHW, so Ultralytics'
layers and the parameters (checkpoints) never see the layout. CPU inference also runs fused convolutions (BatchNorm
folded, no gradient) with their activation as a oneDNN post-op (:func:`conv_act`), one pass over the output instead
of two, and inverted residuals whose expanded map would be large one band of rows at a time (:func:`row_bands`), so
that map never exists in whole. Other devices, tracing, export and compilation see the modules unchanged.
``YOLO_MOBILEVIT_CHANNELS_LAST=0`` switches the policy off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

ENV_SWITCH = "YOLO_MOBILEVIT_CHANNELS_LAST"
ENABLED = os.environ.get(ENV_SWITCH, "1").strip().lower() not in {"0", "false", "no", "off"}


def _first_tensor(x: Any) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x
    return next((t for t in x if isinstance(t, torch.Tensor)), None) if isinstance(x, (tuple, list)) else None


def runs_channels_last(x: Any) -> bool:
    """Whether a plugin row called on ``x`` runs in channels-last memory: the policy is on, ``x`` is on the CPU and
    the forward runs eagerly (no trace, script, export or compilation), in training as in inference."""
    t = _first_tensor(x)
    return (
        ENABLED
        and t is not None
        and t.device.type == "cpu"
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.onnx.is_in_onnx_export()
        and not torch.compiler.is_compiling()
    )


def applies(module: nn.Module, x: Any) -> bool:
    """Whether ``module`` called on ``x`` may take the CPU-inference paths (fused post-ops, bands): it is in eval
    mode and runs channels-last (:func:`runs_channels_last`)."""
    return not module.training and runs_channels_last(x)


def map_4d(x: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``fn`` on every 4-D tensor of ``x`` (a tensor, or a tuple such as Mobile-Former's (map, tokens))."""
    if isinstance(x, torch.Tensor):
        return fn(x) if x.dim() == 4 else x
    if isinstance(x, (tuple, list)):
        return type(x)(map_4d(t, fn) for t in x)
    return x


#: oneDNN post-op (name, scalars) of each activation module :func:`conv_act` fuses into the convolution.
POST_OPS: dict[type[nn.Module], tuple[str, list[float]]] = {
    nn.Identity: ("none", []),
    nn.SiLU: ("swish", []),
    nn.ReLU: ("relu", []),
    nn.ReLU6: ("hardtanh", [0.0, 6.0]),
    nn.Hardswish: ("hardswish", []),
}
_ONEDNN = torch.backends.mkldnn.is_available()
_FUSED_CONV = getattr(torch.ops.mkldnn, "_convolution_pointwise", None) if _ONEDNN else None
_FUSED_LINEAR = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if _ONEDNN else None


def hooked(*modules: nn.Module) -> bool:
    """Whether calling ``modules`` runs forward hooks: FLOP counters (thop, behind Ultralytics' GFLOPs) and profilers
    count modules by their hooks, which a fused call would skip."""
    from torch.nn.modules import module as torch_module

    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def _post_op(op: Any, act: nn.Module, x: torch.Tensor, layer: nn.Module) -> tuple[str, list[float]] | None:
    """The post-op of ``act`` where the fused ``op`` may replace ``act(layer(x))``: it exists in this torch, ``act``
    has a post-op, the input is fp32, no gradient is tracked and neither module has forward hooks."""
    if (
        op is None
        or x.dtype != torch.float32
        or (torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad))
        or hooked(layer, act)
    ):
        return None
    return POST_OPS.get(type(act))


def fusable(conv: nn.Conv2d, act: nn.Module, x: torch.Tensor) -> bool:
    """Whether :func:`conv_act` runs ``act(conv(x))`` fused (see :func:`_post_op`; also a zero-padded conv)."""
    return (
        _post_op(_FUSED_CONV, act, x, conv) is not None
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
    )


def conv_act(
    conv: nn.Conv2d, act: nn.Module, x: torch.Tensor, padding: tuple[int, int] | None = None
) -> torch.Tensor | None:
    """``act(conv(x))`` as one oneDNN convolution with ``act`` as its post-op (equal up to float rounding), or None
    where that does not apply (:func:`fusable`). ``padding`` (rows, columns) replaces the conv's own, for a band of
    rows padded by its caller. Callers have checked :func:`applies`."""
    if not fusable(conv, act, x):
        return None
    name, scalars = POST_OPS[type(act)]
    padding = list(conv.padding if padding is None else padding)
    return _FUSED_CONV(
        x, conv.weight, conv.bias, padding, list(conv.stride), list(conv.dilation), conv.groups, name, scalars, ""
    )


#: An inverted residual runs in bands of output rows (:func:`row_bands`) where its expanded map would exceed
#: ``BANDED_ABOVE`` bytes, each band's expanded rows at most ``BAND_BYTES``. Maps that large outgrow glibc's largest
#: mmap threshold (32 MiB), so every call maps fresh pages and faults them in, and the expand, depthwise and project
#: convs each stream the whole map through DRAM; bands avoid both. MobileViT-XS expands to 105 MB at input/2 at 1280
#: px: in bands the windowed flagship runs 1.4x faster at 960-1280, the global one 1.1-1.3x at 640-1280
#: (``benchmarks/results/cpu_policy.md``).
BANDED_ABOVE = 24 << 20
BAND_BYTES = 8 << 20


def row_bands(out_rows: int, in_row_bytes: int, stride: int) -> list[tuple[int, int]]:
    """The bands ``[(first, stop), ...]`` of output rows in which to compute a block whose expanded map has
    ``in_row_bytes`` per input row; one band (the whole map) where the map is at most :data:`BANDED_ABOVE`."""
    if out_rows * stride * in_row_bytes <= BANDED_ABOVE:
        return [(0, out_rows)]
    rows = max(1, BAND_BYTES // (in_row_bytes * stride))
    return [(r, min(r + rows, out_rows)) for r in range(0, out_rows, rows)]


def input_rows(band: tuple[int, int], height: int, kernel: int, stride: int, padding: int) -> tuple[int, int, int, int]:
    """``(first, stop, pad_top, pad_bottom)``: the input rows a convolution reads for the output rows ``band`` of a
    map ``height`` rows high, and the zero rows its padding adds above and below them."""
    first, stop = band[0] * stride - padding, (band[1] - 1) * stride - padding + kernel
    return max(first, 0), min(stop, height), max(-first, 0), max(stop - height, 0)


def linear_act(module: nn.Module, linear: nn.Linear, x: torch.Tensor, act: nn.Module | None = None) -> torch.Tensor:
    """``act(linear(x))`` (``act`` None: ``linear(x)``), (..., in) -> (..., out). Under the policy (:func:`applies` on
    ``module``) one oneDNN matmul with ``act`` as its post-op, which also spares the copy ``addmm`` makes of a 4-D
    input; else the two modules as written."""
    act = act if act is not None else nn.Identity()
    post_op = _post_op(_FUSED_LINEAR, act, x, linear) if applies(module, x) else None
    if post_op is None:
        return act(linear(x))
    name, scalars = post_op
    return _FUSED_LINEAR(x, linear.weight, linear.bias, name, scalars, "")


class ChannelsLastOnCPU(nn.Module):
    """Mixin of every plugin row: the policy above, around ``nn.Module.__call__``."""

    #: Set per row by the builder: this row's output feeds an Ultralytics layer (or is the model's output), so a
    #: channels-last map is handed on as contiguous NCHW. Rows pickled by older versions lack it (False).
    nchw_out: bool = False

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        channels_last = runs_channels_last(x)
        if channels_last:
            x = map_4d(x, lambda t: t.contiguous(memory_format=torch.channels_last))
        y = super().__call__(x, *args, **kwargs)
        if channels_last and self.nchw_out:
            y = map_4d(y, lambda t: t.contiguous())
        return y
