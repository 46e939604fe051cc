"""Everything that touches Ultralytics' internals lives here.

Ultralytics resolves YAML module names against ``ultralytics.nn.tasks`` globals and infers channels only for its
own classes (``parse_model``). The plugin wraps ``parse_model``: each plugin row is first built as a stand-in
``Conv`` row, so Ultralytics itself injects ``c1``, scales ``c2`` by width and ``max_channels``, scales repeats by
depth and tracks the channels of every later layer; the stand-in is then replaced by the real module, built from
the channels and repeats the stand-in received. Nothing installed is edited: ``register()`` patches the loaded
module object once per process, and the start-up hook (``yolo_mobilevit._startup``) calls it in every interpreter.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import difflib
import logging
import math
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import multiscale
from .checkpoints import make_load, make_torch_safe_load, stamp
from .modules import YAML_MODULES, YamlModule, fuse_modules
from .modules.rows import YamlArgError
from .versions import ULTRALYTICS_MAX, ULTRALYTICS_MIN, check_ultralytics_version

_ORIGINAL = "_yolo_mobilevit_original"


class YamlRowError(ValueError):
    """A model YAML row that the plugin cannot build; the message names the file, the layer and the fix."""


def _row_label(d: dict, i: int) -> str:
    file = d.get("yaml_file") or "<model dict>"
    n_backbone = len(d.get("backbone") or [])
    section, j = ("backbone", i) if i < n_backbone else ("head", i - n_backbone)
    return f"{file}: layer {i} ({section} row {j})"


def _known_names(tasks: Any) -> list[str]:
    ultra = [k for k, v in vars(tasks).items() if isinstance(v, type) and issubclass(v, nn.Module)]
    return sorted({*YAML_MODULES, *ultra})


def scale_channels(c: int, width: float, max_channels: float, divisor: int = 8) -> int:
    """Ultralytics' rule for a row's channels: ``ceil(min(c, max_channels) * width / divisor) * divisor``."""
    return math.ceil(min(c, max_channels) * width / divisor) * divisor


def _resolve_strings(args: list, namespace: dict[str, Any]) -> list:
    """Resolve string args as Ultralytics does: a parse_model variable (``nc``, ``width``...) or a literal."""
    out = []
    for a in args:
        if isinstance(a, str):
            if a in namespace:
                a = namespace[a]
            else:
                with contextlib.suppress(ValueError, SyntaxError):
                    a = ast.literal_eval(a)
        out.append(a)
    return out


def _scaling(d: dict) -> tuple[float, float, float, str | None]:
    """(depth, width, max_channels, scale) as parse_model will use them, with a clear error for a bad letter."""
    depth, width = d.get("depth_multiple", 1.0), d.get("width_multiple", 1.0)
    max_channels, scale, scales = float("inf"), d.get("scale"), d.get("scales")
    if scales:
        scale = scale or next(iter(scales))
        if scale not in scales:
            file = d.get("yaml_file") or "<model dict>"
            raise YamlRowError(
                f"{file}: scale '{scale}' (from the file name) is not defined in this config's `scales`; "
                f"it defines {list(scales)}. Name the file with one of those letters, e.g. "
                f"'{Path(file).name.replace('-', f'{next(iter(scales))}-', 1)}'."
            )
        depth, width, max_channels = scales[scale]
    return depth, width, max_channels, scale


def _row_message(label: str, row: list, cls: type[YamlModule], error: Exception) -> str:
    signature = cls.signature()
    expected = "" if signature in str(error) else f" Expected args {signature}."
    return f"{label} {row!r}: {cls.__name__} {error}.{expected}"


class _PlannedRow:
    """A plugin row: the module class, its checked kwargs and where it sits."""

    def __init__(self, cls: type[YamlModule], kwargs: dict[str, Any], label: str, row: list, source: int) -> None:
        self.cls, self.kwargs, self.label, self.row, self.source = cls, kwargs, label, row, source
        self.c1: int | None = None  # known at plan time only for rows built on an Index stand-in
        self.c2: int | None = None  # output channels after scaling (None for passthrough rows)


def _known_channels(plan: dict[int, _PlannedRow], index: int, ch: int) -> int | None:
    """Output channels of layer ``index`` if the plan knows them (plugin rows, the image), else None."""
    while index in plan and plan[index].cls.passthrough:
        index = plan[index].source
    if index < 0:
        return ch
    return plan[index].c2 if index in plan else None


def _plan(d: dict, tasks: Any, ch: int) -> tuple[dict, dict[int, _PlannedRow]]:
    """Check every row; return a copy of ``d`` with plugin rows swapped for stand-in ``Conv`` rows."""
    depth, width, max_channels, scale = _scaling(d)
    namespace = {
        "nc": d.get("nc"),
        "scale": scale,
        "depth": depth,
        "width": width,
        "max_channels": max_channels,
        "kpt_shape": d.get("kpt_shape", 1.0),
        "reg_max": d.get("reg_max", 16),
        "end2end": d.get("end2end"),
    }
    d = copy.deepcopy(d)
    plan: dict[int, _PlannedRow] = {}
    rows = (d.get("backbone") or []) + (d.get("head") or [])
    for i, row in enumerate(rows):
        label = _row_label(d, i)
        if not isinstance(row, list) or len(row) != 4:
            raise YamlRowError(f"{label} {row!r}: a row must be [from, repeats, module, args]")
        f, n, name, args = row
        if not isinstance(name, str):
            raise YamlRowError(f"{label} {row!r}: the module name must be a string, got {name!r}")
        if name in YAML_MODULES:
            cls = YAML_MODULES[name]
            if not isinstance(f, int):
                raise YamlRowError(f"{label} {row!r}: {name} takes one input; `from` must be an int, got {f!r}")
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise YamlRowError(f"{label} {row!r}: repeats ({cls.repeats_doc}) must be an int >= 1, got {n!r}")
            try:
                c2, kwargs = cls.bind_args(_resolve_strings(args, namespace) if isinstance(args, list) else args)
            except YamlArgError as e:
                raise YamlRowError(_row_message(label, row, cls, e)) from None
            for key in cls.width_scaled:  # same rule parse_model applies to c2
                kwargs[key] = scale_channels(kwargs[key], width, max_channels, cls.channel_divisor)
            if cls.passthrough and n != 1:
                raise YamlRowError(f"{label} {row!r}: {name} is a passthrough row; repeats must be 1, got {n}")
            planned = plan[i] = _PlannedRow(cls, kwargs, label, row, i + f if f < 0 else f)
            # Stand-ins Ultralytics knows. Conv: c1 injected, c2 scaled (rounded to 8), repeats scaled.
            # Index: c2 recorded exactly as given (for widths Ultralytics' rounding would change); c1 comes from
            # the plugin row that feeds it. nn.Identity: keeps its input's channels (passthrough rows).
            if cls.passthrough:
                row[2], row[3] = "nn.Identity", []
            else:
                exact = scale_channels(c2, width, max_channels, cls.channel_divisor)
                if exact == scale_channels(c2, width, max_channels):
                    row[2], row[3] = "Conv", [c2]
                else:
                    planned.c1 = _known_channels(plan, i + f if f < 0 else f, ch)
                    if planned.c1 is None:
                        raise YamlRowError(
                            f"{label} {row!r}: {name} builds {exact} channels (a multiple of {cls.channel_divisor}, "
                            "not of 8), so it must take its input from another plugin row or the image"
                        )
                    row[2], row[3] = "Index", [exact, 0]
                planned.c2 = exact
        elif not (name.startswith(("nn.", "torchvision.ops.")) or name in vars(tasks)):
            close = difflib.get_close_matches(name, _known_names(tasks), n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise YamlRowError(
                f"{label} {row!r}: unknown module '{name}'.{hint} Plugin modules: {', '.join(sorted(YAML_MODULES))}."
            )
    return d, plan


class _Held(logging.Filter):
    """Holds parse_model's table lines so plugin rows can be reprinted with their real module."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


def _build(planned: _PlannedRow, stand_in: nn.Module) -> nn.Module:
    if planned.cls.passthrough:
        c1 = c2 = None
        n = 1
    else:
        copies = list(stand_in) if isinstance(stand_in, nn.Sequential) else [stand_in]
        c1 = planned.c1 if planned.c1 is not None else copies[0].conv.in_channels
        c2, n = planned.c2, len(copies)
    try:
        planned.cls.check_scaled(c2, n, planned.kwargs)
        module = planned.cls(**planned.kwargs) if planned.cls.passthrough else planned.cls(c1, c2, n, **planned.kwargs)
    except (YamlArgError, ValueError) as e:
        raise YamlRowError(_row_message(planned.label, planned.row, planned.cls, e)) from None
    module.i, module.f = stand_in.i, stand_in.f
    module.type = f"{planned.cls.__module__}.{planned.cls.__qualname__}"
    module.np = sum(p.numel() for p in module.parameters())
    module.row_args = {"c1": c1, "c2": c2, "n": n, **planned.kwargs}
    return module


def _consumers(layers: nn.Sequential, i: int) -> list[int]:
    """Indices of the layers that read layer ``i``'s output; ``[len(layers)]`` (the model output) when none do."""
    users = []
    for j in range(i + 1, len(layers)):
        sources = layers[j].f if isinstance(layers[j].f, list) else [layers[j].f]
        if any((j + f if f < 0 else f) == i for f in sources):
            users.append(j)
    return users or [len(layers)]


def make_parse_model(original: Any, tasks: Any) -> Any:
    """Wrap Ultralytics' ``parse_model(d, ch, verbose)`` so plugin rows build with inferred channels."""

    def parse_model(d: dict, ch: int, verbose: bool = True) -> tuple[nn.Sequential, list[int]]:
        staged, plan = _plan(d, tasks, ch)
        if not plan:
            return original(staged, ch, verbose)
        logger = tasks.LOGGER
        held = _Held()
        logger.addFilter(held)
        try:
            model, save = original(staged, ch, verbose)
        finally:
            logger.removeFilter(held)
        for i, planned in plan.items():
            model[i] = _build(planned, model[i])
        for i in plan:
            model[i].nchw_out = any(j not in plan for j in _consumers(model, i))
        stamp(model)
        for record in held.records:
            i = next((i for i in plan if record.getMessage().startswith(f"{i:>3}{model[i].f!s:>20}")), None)
            if i is not None:
                m = model[i]
                args = list(m.row_args.values())[3:]
                if not plan[i].cls.passthrough:
                    args = [m.row_args["c1"], m.row_args["c2"], *args]
                pad = " " if len(m.type) >= 45 else ""
                line = f"{i:>3}{m.f!s:>20}{m.row_args['n']:>3}{m.np:10.0f}  {m.type:<45}{pad}{args!s:<30}"
                record.msg, record.args = line, ()
            logger.handle(record)
        return model, save

    parse_model.__wrapped__ = original
    parse_model.__doc__ = original.__doc__
    setattr(parse_model, _ORIGINAL, original)
    return parse_model


def make_fuse(original: Any) -> Any:
    """Wrap ``BaseModel.fuse`` (which folds only Ultralytics' own conv classes) so the plugin's conv+BN pairs fold
    too; Ultralytics' exporter and its predict/val loaders call it."""

    def fuse(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        fuse_modules(self)
        return original(self, *args, **kwargs)

    fuse.__wrapped__, fuse.__doc__ = original, original.__doc__
    setattr(fuse, _ORIGINAL, original)
    return fuse


def _mark(wrapper: Any) -> Any:
    """Tag a wrapper (whose ``__wrapped__`` is the Ultralytics original) so ``register()`` never wraps twice."""
    setattr(wrapper, _ORIGINAL, wrapper.__wrapped__)
    return wrapper


def safe_classes() -> list[type]:
    """Plugin classes a checkpoint may reference; allowed for ``torch.load(weights_only=True)``."""
    prefix = f"{__package__}.modules."
    return [
        obj
        for name, module in list(sys.modules.items())
        if name.startswith(prefix)
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__ == name
    ]


_REGISTERED = False


def register() -> None:
    """Teach the imported Ultralytics the plugin's YAML modules. Idempotent; raises on an unsupported version."""
    global _REGISTERED
    if _REGISTERED:
        return
    import ultralytics
    from ultralytics.nn import tasks

    check_ultralytics_version(ultralytics.__version__)
    parse = getattr(tasks, "parse_model", None)
    if parse is None or not callable(parse):
        raise RuntimeError(
            f"yolo-mobilevit cannot find ultralytics.nn.tasks.parse_model in ultralytics {ultralytics.__version__} "
            f"(supported: {ULTRALYTICS_MIN} to {ULTRALYTICS_MAX})."
        )
    if not hasattr(parse, _ORIGINAL):
        tasks.parse_model = make_parse_model(parse, tasks)
    if not hasattr(tasks.BaseModel.fuse, _ORIGINAL):
        tasks.BaseModel.fuse = make_fuse(tasks.BaseModel.fuse)
    if not hasattr(tasks.BaseModel.load, _ORIGINAL):
        tasks.BaseModel.load = _mark(make_load(tasks.BaseModel.load))
    if not hasattr(tasks.torch_safe_load, _ORIGINAL):
        tasks.torch_safe_load = _mark(make_torch_safe_load(tasks.torch_safe_load))
    if hasattr(torch.serialization, "add_safe_globals"):
        torch.serialization.add_safe_globals(safe_classes())
    multiscale.install()  # the `variable_batch` training key
    _REGISTERED = True


def is_registered() -> bool:
    return _REGISTERED
