"""The plugin's one performance policy: CPU inference runs plugin rows in channels-last memory.

oneDNN's convolutions are fastest in channels-last layout on CPUs (about 1.5x on MobileViT-XS at 640; outputs equal
up to float rounding). Every plugin row inherits :class:`ChannelsLastOnCPU`: in eval mode on a CPU tensor it converts
its 4-D inputs to channels-last, and a row whose output feeds an Ultralytics layer (``nchw_out``, set by the builder)
hands back contiguous NCHW. Fused convolutions (BatchNorm folded, no gradient) run with their activation as a
oneDNN post-op (:func:`conv_act`), one pass over the output instead of two. Training, other devices, tracing, export
and compilation see the module unchanged. ``YOLO_MOBILEVIT_CHANNELS_LAST=0`` switches the policy off.
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


def applies(module: nn.Module, x: Any) -> bool:
    """Whether ``module`` called on ``x`` runs under the policy."""
    t = _first_tensor(x)
    return (
        ENABLED
        and t is not None
        and not module.training
        and t.device.type == "cpu"
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.onnx.is_in_onnx_export()
        and not torch.compiler.is_compiling()
    )


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


def _hooked(*modules: nn.Module) -> bool:
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
        or _hooked(layer, act)
    ):
        return None
    return POST_OPS.get(type(act))


def conv_act(conv: nn.Conv2d, act: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """``act(conv(x))`` as one oneDNN convolution with ``act`` as its post-op (equal up to float rounding), or None
    where that does not apply (see :func:`_post_op`; also a conv other than zero-padded). Callers have checked
    :func:`applies`."""
    post_op = _post_op(_FUSED_CONV, act, x, conv)
    if post_op is None or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return None
    name, scalars = post_op
    return _FUSED_CONV(
        x, conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups, name,
        scalars, "",
    )  # fmt: skip


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
        fast = applies(self, x)
        if fast:
            x = map_4d(x, lambda t: t.contiguous(memory_format=torch.channels_last))
        y = super().__call__(x, *args, **kwargs)
        if fast and self.nchw_out:
            y = map_4d(y, lambda t: t.contiguous())
        return y
