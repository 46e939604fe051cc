"""The contract between a plugin module and a row of an Ultralytics model YAML.

A row reads ``[from, repeats, ModuleName, [c2, *args]]``. The plugin injects ``c1`` (channels of the ``from``
layer), scales ``c2`` (and any argument listed in ``width_scaled``) by the YAML's width and ``max_channels`` as
Ultralytics does for its own layers, passes the depth-scaled repeats to the module, and checks every argument
against ``yaml_args`` so a malformed row fails with a message that names the row and the expected signature.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

REQUIRED = object()

#: Every YAML-constructible plugin module, by the name a YAML row uses.
YAML_MODULES: dict[str, type[YamlModule]] = {}


def _first_tensor(x: Any) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x
    return next((t for t in x if isinstance(t, torch.Tensor)), None) if isinstance(x, (tuple, list)) else None


def _channels_last_inference(module: nn.Module, x: Any) -> bool:
    t = _first_tensor(x)
    return (
        t is not None
        and not module.training
        and t.device.type == "cpu"
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.onnx.is_in_onnx_export()
        and not torch.compiler.is_compiling()
    )


def _apply_4d(x: Any, fn: Any) -> Any:
    """``fn`` on every 4-D tensor of ``x`` (a tensor, or a tuple such as Mobile-Former's (map, tokens))."""
    if isinstance(x, torch.Tensor):
        return fn(x) if x.dim() == 4 else x
    if isinstance(x, (tuple, list)):
        return type(x)(_apply_4d(t, fn) for t in x)
    return x


@dataclasses.dataclass(frozen=True)
class Arg:
    """One positional YAML argument after ``c2``."""

    name: str
    kind: type | tuple[type, ...]
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None

    def render(self) -> str:
        return self.name if self.default is REQUIRED else f"{self.name}={self.default!r}"


class YamlArgError(ValueError):
    """An argument list that does not fit a module's YAML signature (the integration adds file and row)."""


def _type_ok(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):  # bool is an int subclass: accept it only where bool is asked for
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, kinds)


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


class YamlModule(nn.Module):
    """Base class of modules that a model YAML row can name.

    Subclasses set ``yaml_args`` (the arguments after ``c2``) and are then registered under their class name.
    ``__init__(c1, c2, n, **kwargs)`` receives the injected input channels, the scaled output channels and the
    depth-scaled repeats.
    """

    yaml_args: ClassVar[tuple[Arg, ...] | None] = None
    width_scaled: ClassVar[tuple[str, ...]] = ()  # extra channel-like args scaled by width, like c2
    #: Scaled channels are rounded up to a multiple of this. 8 is Ultralytics' rule; families whose published
    #: widths are not multiples of 8 (Mobile-Former's 12 and 20) use 4 so that they build exactly.
    channel_divisor: ClassVar[int] = 8
    #: A passthrough row has no c2: its output channels are its input's (Ultralytics tracks them), it is built as
    #: ``cls(**kwargs)`` from ``yaml_args`` alone, and repeats must be 1. Used for taps on multi-output stages.
    passthrough: ClassVar[bool] = False
    repeats_doc: ClassVar[str] = "blocks"
    #: Set per row by the integration: this row's output feeds an Ultralytics layer (or is the model's output), so
    #: a channels-last map is handed on as contiguous NCHW. Rows pickled by older versions lack it (False).
    nchw_out: bool = False

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        """CPU inference runs plugin rows in channels-last memory (oneDNN's fast layout for these convolutions:
        about 1.5x on MobileViT-XS at 640, outputs equal to float rounding). Training, other devices, tracing,
        export and compilation see the module unchanged."""
        fast = _channels_last_inference(self, x)
        if fast:
            x = _apply_4d(x, lambda t: t.contiguous(memory_format=torch.channels_last))
        y = super().__call__(x, *args, **kwargs)
        if fast and self.nchw_out:
            y = _apply_4d(y, lambda t: t.contiguous())
        return y

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("yaml_args") is not None:
            YAML_MODULES[cls.__name__] = cls

    @classmethod
    def signature(cls) -> str:
        lead = [] if cls.passthrough else ["c2"]
        return "[" + ", ".join([*lead, *(a.render() for a in cls.yaml_args or ())]) + "]"

    @classmethod
    def bind_args(cls, args: list[Any]) -> tuple[int | None, dict[str, Any]]:
        """Check a YAML argument list and return ``(c2, kwargs)`` (c2 None for passthrough rows);
        raise ``YamlArgError`` naming the problem."""
        spec = cls.yaml_args or ()
        lead = 0 if cls.passthrough else 1
        required = lead + sum(a.default is REQUIRED for a in spec)
        if not isinstance(args, list):
            raise YamlArgError(f"expects an argument list {cls.signature()}, got {args!r}")
        if not required <= len(args) <= lead + len(spec):
            count = f"{required}" if required == lead + len(spec) else f"{required} to {lead + len(spec)}"
            raise YamlArgError(f"expects {count} arguments {cls.signature()}, got {len(args)}: {args!r}")
        c2 = None
        if lead:
            c2 = args[0]
            if not _type_ok(c2, int) or isinstance(c2, float) or c2 <= 0:
                raise YamlArgError(f"expects c2 (output channels) to be a positive int, got {c2!r}")
        kwargs = {}
        for a, value in zip(spec, args[lead:]):
            if not _type_ok(value, a.kind):
                raise YamlArgError(f"expects {a.name} to be {_type_name(a.kind)}, got {value!r}")
            if a.choices is not None and value not in a.choices:
                raise YamlArgError(f"got unknown {a.name} {value!r}; choose one of {list(a.choices)}")
            kwargs[a.name] = value
        for a in spec[len(args) - lead :]:
            kwargs[a.name] = a.default
        return c2, kwargs

    @classmethod
    def check_scaled(cls, c2: int, n: int, kwargs: dict[str, Any]) -> None:
        """Constraints that hold only after width scaling (e.g. attention width divisible by heads)."""
