"""The plugin's one performance policy: CPU inference runs plugin rows in channels-last memory.

oneDNN's convolutions are fastest in channels-last layout on CPUs (about 1.5x on MobileViT-XS at 640; outputs equal
up to float rounding). Every plugin row inherits :class:`ChannelsLastOnCPU`: in eval mode on a CPU tensor it converts
its 4-D inputs to channels-last, and a row whose output feeds an Ultralytics layer (``nchw_out``, set by the builder)
hands back contiguous NCHW. Training, other devices, tracing, export and compilation see the module unchanged.
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
