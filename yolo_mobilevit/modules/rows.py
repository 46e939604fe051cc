"""The contract between a plugin module and a row of an Ultralytics model YAML.

A row reads ``[from, repeats, ModuleName, [c2, *args]]``. The plugin injects ``c1`` (channels of the ``from``
layer), scales ``c2`` (and every argument declared ``scaled``) by the YAML's width and ``max_channels`` as
Ultralytics does for its own layers, passes the depth-scaled repeats to the module, and checks every argument
against its declaration in ``yaml_args`` (type, default, choices or range) and the repeats against
``max_repeats``, so a malformed row fails with a message that names the row and what was expected. A row class
adds only the rules that relate arguments to each other (``check_scaled``: attention width divisible by heads).

Naming: the same concept has one name in every family: ``stride`` (of the row's first block), ``kernel``,
``expansion`` (a ratio of the input width), ``expanded`` (an explicit expanded width), ``d`` (attention width),
``depth`` (transformer layers), ``heads``, ``token_dim`` (Mobile-Former token width), ``mlp`` (width of a
Linear after pooling), ``act``, ``bn_eps``, ``bn_momentum``, ``dropout``.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, ClassVar

from torch import nn

from .cpu_layout import ChannelsLastOnCPU

REQUIRED = object()

#: Every YAML-constructible plugin module, by the name a YAML row uses.
YAML_MODULES: dict[str, type[YamlModule]] = {}


@dataclasses.dataclass(frozen=True)
class Bound:
    """A numeric range an argument must lie in: ``low``/``high`` (None for unbounded), each open or closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


POSITIVE = Bound(0, low_open=True)
NON_NEGATIVE = Bound(0)
AT_LEAST_ONE = Bound(1)
PROBABILITY = Bound(0, 1, high_open=True)  # dropout rates
MOMENTUM = Bound(0, 1)


@dataclasses.dataclass(frozen=True)
class Arg:
    """One positional YAML argument after ``c2``: its name, type, default, allowed values and scaling.

    ``bound`` (a :class:`Bound`) or ``choices`` restrict the value as written; ``scaled`` marks a channel width that
    the YAML's width multiplies like ``c2`` (rounded up to a multiple of the row's ``channel_divisor``);
    ``old_name`` is a spelling of an earlier release that constructors still accept (with a warning)."""

    name: str
    kind: type | tuple[type, ...]
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None
    bound: Bound | None = None
    scaled: bool = False
    old_name: str | None = None
    doc: str = ""  # what the argument means, for ``yolo-mobilevit modules`` (where the name does not say it)

    def render(self) -> str:
        return self.name if self.default is REQUIRED else f"{self.name}={self.default!r}"

    def describe(self) -> str:
        """What the argument accepts, e.g. ``'depth: int >= 1'``."""
        allowed = f" one of {list(self.choices)}" if self.choices else f" {self.bound.describe()}" if self.bound else ""
        return f"{self.name}: {_type_name(self.kind)}{allowed}" + (f" ({self.doc})" if self.doc else "")


class YamlArgError(ValueError):
    """An argument list that does not fit a module's YAML signature (the builder adds file and row)."""


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


class YamlModule(ChannelsLastOnCPU):
    """Base class of modules that a model YAML row can name.

    Subclasses set ``yaml_args`` (the arguments after ``c2``) and are then registered under their class name.
    ``__init__(c1, c2, n, **kwargs)`` receives the injected input channels, the scaled output channels and the
    depth-scaled repeats, then every ``yaml_args`` entry by name (defaults filled in). A row whose schema
    requires an argument takes its arguments keyword-only, with no default for the required ones.
    """

    yaml_args: ClassVar[tuple[Arg, ...] | None] = None
    #: Scaled channels (``c2`` and ``scaled`` args) are rounded up to a multiple of this. 8 is Ultralytics' rule;
    #: rows whose published widths are not multiples of 8 (Mobile-Former's 12 and 20, its stems) use 4.
    channel_divisor: ClassVar[int] = 8
    #: A passthrough row has no c2: its output channels are its input's (Ultralytics tracks them) and it is built as
    #: ``cls(**kwargs)`` from ``yaml_args`` alone. Used for taps on multi-output stages and input normalisation.
    passthrough: ClassVar[bool] = False
    #: The largest repeats value the row accepts (None: any >= 1); ``repeats_doc`` says what repeats count.
    max_repeats: ClassVar[int | None] = None
    repeats_doc: ClassVar[str] = "blocks"
    #: What the row reads and hands on: a plain map, or Mobile-Former's (map, tokens) pair.
    takes_tokens: ClassVar[bool] = False
    gives_tokens: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("yaml_args") is not None:
            YAML_MODULES[cls.__name__] = cls
            renamed = {a.old_name: a.name for a in cls.yaml_args if a.old_name}
            if renamed:
                cls.__init__ = _accept_old_names(cls.__init__, renamed, cls.__name__)

    @classmethod
    def width_scaled(cls) -> tuple[str, ...]:
        return tuple(a.name for a in cls.yaml_args or () if a.scaled)

    @classmethod
    def stride(cls, kwargs: dict[str, Any]) -> int:
        """How much the row reduces the map (1 unless a subclass says otherwise)."""
        return int(kwargs.get("stride", 1))

    @classmethod
    def signature(cls) -> str:
        lead = [] if cls.passthrough else ["c2"]
        return "[" + ", ".join([*lead, *(a.render() for a in cls.yaml_args or ())]) + "]"

    @classmethod
    def repeats_rule(cls) -> str:
        return "1" if cls.max_repeats == 1 else ">= 1" if cls.max_repeats is None else f"1 to {cls.max_repeats}"

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
            if not _type_ok(c2, int) or c2 <= 0:
                raise YamlArgError(f"expects c2 (output channels) to be a positive int, got {c2!r}")
        kwargs = {}
        for a, value in zip(spec, args[lead:]):
            if not _type_ok(value, a.kind):
                raise YamlArgError(f"expects {a.name} to be {_type_name(a.kind)}, got {value!r}")
            if a.choices is not None and value not in a.choices:
                raise YamlArgError(f"got unknown {a.name} {value!r}; choose one of {list(a.choices)}")
            if a.bound is not None and not a.bound.holds(value):
                raise YamlArgError(f"expects {a.name} {a.bound.describe()}, got {value!r}")
            kwargs[a.name] = value
        for a in spec[len(args) - lead :]:
            kwargs[a.name] = a.default
        return c2, kwargs

    @classmethod
    def check_repeats(cls, n: Any) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1 or (cls.max_repeats and n > cls.max_repeats):
            raise YamlArgError(f"expects repeats to be {cls.repeats_rule()} ({cls.repeats_doc}), got {n!r}")

    @classmethod
    def check_scaled(cls, c2: int | None, n: int, kwargs: dict[str, Any]) -> None:
        """Rules that relate arguments after width scaling (e.g. attention width divisible by heads)."""


def _accept_old_names(init: Any, renamed: dict[str, str], owner: str) -> Any:
    """``init`` that also takes the previous release's keyword names (``renamed``: old -> new), with a warning."""

    @functools.wraps(init)
    def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        for old, new in renamed.items():
            if old in kwargs:
                warnings.warn(f"{owner}({old}=...) is now {new}=...", DeprecationWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
        init(self, *args, **kwargs)

    return __init__
