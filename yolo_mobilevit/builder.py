"""Building plugin rows inside Ultralytics' ``parse_model`` (the factories the integration's patch table names).

Ultralytics resolves YAML module names against ``ultralytics.nn.tasks`` globals and infers channels only for its
own classes. The wrapped ``parse_model`` first checks every row against the row contract
(:mod:`yolo_mobilevit.modules.rows`) and the flow of maps and Mobile-Former tokens between rows, then builds each
plugin row as a stand-in Ultralytics row (``Conv``, ``Index`` or ``nn.Identity``), so Ultralytics itself injects
``c1``, scales ``c2`` by width and ``max_channels``, scales repeats by depth and tracks the channels of every later
layer; each stand-in is then replaced by the real module, built from what the stand-in received, and the model's
feature map (:mod:`yolo_mobilevit.layer_info`) is recorded. Every error names the file, the layer and section row,
the row as the user wrote it, and what was expected.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import difflib
import logging
import math
import re
from pathlib import Path
from typing import Any

from torch import nn

from .checkpoints import stamp
from .errors import YamlRowError, row_label
from .layer_info import input_layers, layer_maps, layer_outputs, record
from .modules import YAML_MODULES, YamlModule, fuse_modules
from .modules.rows import YamlArgError
from .task_heads import require_task_heads


def _known_names(tasks: Any) -> list[str]:
    ultra = [k for k, v in vars(tasks).items() if isinstance(v, type) and issubclass(v, nn.Module)]
    return sorted({*YAML_MODULES, *ultra})


def _is_known(name: str, tasks: Any) -> bool:
    return name in YAML_MODULES or name.startswith(("nn.", "torchvision.ops.")) or name in vars(tasks)


def suggest_module(name: str, tasks: Any) -> str | None:
    """The module a misspelt name most likely means, from Ultralytics' and the plugin's together; letter case is
    ignored first (``C2F`` -> ``C2f``, not the closer-by-characters ``C2``)."""
    known = _known_names(tasks)
    by_lower = {k.lower(): k for k in known}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def check_module_name(label: str, row: list, name: str, tasks: Any) -> None:
    """Refuse a module name neither Ultralytics nor the plugin defines, with the closest of both."""
    if _is_known(name, tasks):
        return
    close = suggest_module(name, tasks)
    origin = "a plugin module" if close in YAML_MODULES else "an Ultralytics module"
    hint = f" Did you mean '{close}'? ({origin})" if close else ""
    raise YamlRowError(
        f"{label} {row!r}: unknown module '{name}'.{hint} Names are case-sensitive: Ultralytics' modules (those of "
        f"ultralytics.nn.tasks, nn.*, torchvision.ops.*) or the plugin's: {', '.join(sorted(YAML_MODULES))}."
    )


def scale_channels(c: int, width: float, max_channels: float, divisor: int = 8) -> int:
    """Ultralytics' rule for a row's channels: ``ceil(min(c, max_channels) * width / divisor) * divisor``."""
    return math.ceil(min(c, max_channels) * width / divisor) * divisor


_ROUNDED_SAID: set[tuple] = set()  # the rounding reports already given in this process


def _rounded(i: int, row: list, arg: str, written: Any, built: int, scaling: tuple, divisor: int) -> str | None:
    """``"layer 3 [-1, 1, 'MobileViTStage', [84, ...]]: c2 84 -> 88 (multiple of 8)"`` when a width's rounding
    changes it, else None."""
    width, max_channels = scaling
    if (
        not isinstance(written, (int, float))
        or isinstance(written, bool)
        or built == min(written, max_channels) * width
    ):
        return None
    return f"layer {i} {row!r}: {arg} {written} -> {built} (multiple of {divisor})"


def _say_rounded(file: str, rounded: list[str], width: float, max_channels: float) -> None:
    """One warning per config and process listing the plugin widths that rounding changed, with the rule."""
    if not rounded or (file, *rounded) in _ROUNDED_SAID:
        return
    _ROUNDED_SAID.add((file, *rounded))
    from ultralytics.utils import LOGGER

    hint = " Write the built widths to build what you write." if width == 1 else ""
    LOGGER.warning(
        f"yolo-mobilevit: {file}: {len(rounded)} plugin width(s) round up to their row's multiple, "
        f"ceil(min(c, max_channels={max_channels:g}) * width={width:g} / multiple) * multiple: "
        f"{'; '.join(rounded)}.{hint}"
    )


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


def _other_letter(name: str, letter: str) -> str:
    """``name`` with its scale letter replaced: ``yolov8x-mobilevit.yaml`` -> ``yolov8n-mobilevit.yaml``."""
    renamed, count = re.subn(r"(yolo(?:e-)?v?\d+)([nslmx])(?=[-._])", rf"\g<1>{letter}", name, count=1)
    return renamed if count else re.sub(r"(yolo(?:e-)?v?\d+)", rf"\g<1>{letter}", name, count=1)


def _scaling(d: dict) -> tuple[float, float, float, str | None]:
    """(depth, width, max_channels, scale) as parse_model will use them, with a clear error for a bad letter."""
    depth, width = d.get("depth_multiple", 1.0), d.get("width_multiple", 1.0)
    max_channels, scale, scales = float("inf"), d.get("scale"), d.get("scales")
    if scales:
        scale = scale or next(iter(scales))
        if scale not in scales:
            file = d.get("yaml_file") or "<model dict>"
            names = " or ".join(f"'{_other_letter(Path(file).name, s)}'" for s in scales)
            raise YamlRowError(
                f"{file}: scale '{scale}' (from the file name) is not defined in this config's `scales`; "
                f"it defines {list(scales)}. Name the file {names}, or add '{scale}: [depth, width, max_channels]' "
                "to `scales`."
            )
        depth, width, max_channels = scales[scale]
    return depth, width, max_channels, scale


def _row_message(label: str, row: list, cls: type[YamlModule], error: Exception) -> str:
    signature = cls.signature()
    expected = "" if signature in str(error) else f" Expected args {signature}."
    return f"{label} {row!r}: {cls.__name__} {error}.{expected}"


class _PlannedRow:
    """A plugin row: the module class, its checked kwargs, where it sits and the row as the user wrote it."""

    def __init__(self, cls: type[YamlModule], kwargs: dict[str, Any], label: str, row: list, source: int) -> None:
        self.cls, self.kwargs, self.label, self.row, self.source = cls, kwargs, label, row, source
        self.c1: int | None = None  # known at plan time only for rows built on an Index stand-in
        self.c2: int | None = None  # output channels after scaling (None for passthrough rows)
        self.image_channels: int | None = None  # the image's channels, for rows that read it (ImageNorm)


def _known_channels(plan: dict[int, _PlannedRow], index: int, ch: int) -> int | None:
    """Output channels of layer ``index`` if the plan knows them (plugin rows, the image), else None."""
    while index in plan and plan[index].cls.passthrough:
        index = plan[index].source
    if index < 0:
        return ch
    return plan[index].c2 if index in plan else None


class _Flow:
    """What each planned layer hands on: a plain map, or Mobile-Former's (map, tokens) pair with its token width."""

    def __init__(self) -> None:
        self.token_dim: dict[int, int] = {}  # layer index -> token width, for layers that hand on tokens

    def check(self, i: int, label: str, row: list, sources: list[int], cls: type[YamlModule] | None, kwargs: dict):
        fed_tokens = [j for j in sources if j in self.token_dim]
        name = cls.__name__ if cls else row[2]
        if cls is not None and cls.takes_tokens and kwargs.get("token_dim"):
            if not fed_tokens:
                raise YamlRowError(
                    f"{label} {row!r}: {name} takes (map, tokens) from the row before it, but layer {sources[0]} "
                    "hands on a plain map. Put a MobileFormerTokens row (after the stem) before the first "
                    "Mobile-Former block."
                )
            theirs = self.token_dim[fed_tokens[0]]
            if theirs != kwargs["token_dim"]:
                raise YamlRowError(
                    f"{label} {row!r}: {name} is built for token_dim={kwargs['token_dim']} (after width scaling), "
                    f"but layer {fed_tokens[0]} hands on tokens of width {theirs}. Write the same token_dim in every "
                    "Mobile-Former row."
                )
        elif fed_tokens and not (cls is not None and cls.takes_tokens and kwargs.get("token_dim", 1)):
            raise YamlRowError(
                f"{label} {row!r}: {name} reads layer {fed_tokens[0]}, which hands on Mobile-Former's (map, tokens) "
                f"pair. Read the map through a tap row, e.g. [{fed_tokens[0]}, 1, MobileFormerTap, []], and point "
                "this row at it."
            )
        if cls is not None and cls.gives_tokens:
            self.token_dim[i] = kwargs.get("token_dim", self.token_dim.get(fed_tokens[0]) if fed_tokens else None)


def _sources(f: Any, i: int, label: str, row: list) -> list[int]:
    """Absolute layer indices a row reads (-1: the image); refuses ``from`` entries outside layers 0..i-1."""
    entries = f if isinstance(f, list) else [f]
    if not entries or not all(isinstance(j, int) and not isinstance(j, bool) for j in entries):
        raise YamlRowError(f"{label} {row!r}: `from` must be a layer index or a list of them, got {f!r}")
    out = input_layers(entries, i)
    for j, k in zip(entries, out):
        if (k < 0 and (k != -1 or i > 0)) or k >= i:
            where = "the image (-1 on the first row)" if i == 0 else f"layers 0 to {i - 1} (or -1 to -{i})"
            raise YamlRowError(
                f"{label} {row!r}: `from` {j} does not name an earlier layer; layer {i} can read {where}"
            )
    return out


def _plan(d: dict, tasks: Any, ch: int) -> tuple[dict, dict[int, _PlannedRow]]:
    """Check every row; return a copy of ``d`` with plugin rows swapped for stand-in rows, and the plan."""
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
    staged = copy.deepcopy(d)
    plan: dict[int, _PlannedRow] = {}
    rows = (staged.get("backbone") or []) + (staged.get("head") or [])
    written = copy.deepcopy(rows)  # as the user wrote them, for messages (the staged rows become stand-ins)
    if not any(isinstance(r, list) and len(r) == 4 and isinstance(r[2], str) and r[2] in YAML_MODULES for r in written):
        for i, row in enumerate(written):  # a stock model: left to Ultralytics, once its module names are known
            if isinstance(row, list) and len(row) == 4 and isinstance(row[2], str):
                check_module_name(row_label(d, i), row, row[2], tasks)
        return staged, plan
    file = d.get("yaml_file") or "<model dict>"
    nc = d.get("nc")
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool) or nc < 1):
        raise YamlRowError(f"{file}: nc (number of classes) must be an int >= 1, got {nc!r}")
    flow = _Flow()
    rounded: list[str | None] = []
    scaling = (width, max_channels)
    for i, (row, user_row) in enumerate(zip(rows, written)):
        label = row_label(d, i)
        if not isinstance(row, list) or len(row) != 4:
            raise YamlRowError(f"{label} {user_row!r}: a row must be [from, repeats, module, args]")
        f, n, name, args = row
        if not isinstance(name, str):
            raise YamlRowError(f"{label} {user_row!r}: the module name must be a string, got {name!r}")
        sources = _sources(f, i, label, user_row)
        cls = YAML_MODULES.get(name)
        if cls is None:
            check_module_name(label, user_row, name, tasks)
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise YamlRowError(f"{label} {user_row!r}: repeats must be an int >= 1, got {n!r}")
            flow.check(i, label, user_row, sources, None, {})
            continue
        if len(sources) != 1 or isinstance(f, list):
            raise YamlRowError(f"{label} {user_row!r}: {name} takes one input; `from` must be an int, got {f!r}")
        try:
            cls.check_repeats(n)
            c2, kwargs = cls.bind_args(_resolve_strings(args, namespace) if isinstance(args, list) else args)
        except YamlArgError as e:
            raise YamlRowError(_row_message(label, user_row, cls, e)) from None
        if getattr(cls, "reads_image", False) and sources[0] != -1:
            raise YamlRowError(
                f"{label} {user_row!r}: {name} normalises the image's channels, so it must read the image: make it "
                "the first row with `from` -1 (the image), and start the backbone after it."
            )
        for key in cls.width_scaled():  # same rule parse_model applies to c2
            written_width = kwargs[key]
            kwargs[key] = scale_channels(written_width, width, max_channels, cls.channel_divisor)
            rounded.append(_rounded(i, user_row, key, written_width, kwargs[key], scaling, cls.channel_divisor))
        flow.check(i, label, user_row, sources, cls, kwargs)
        planned = plan[i] = _PlannedRow(cls, kwargs, label, user_row, sources[0])
        if getattr(cls, "reads_image", False):
            planned.image_channels = ch
        # Stand-ins Ultralytics knows. Conv: c1 injected, c2 scaled (rounded to 8), repeats scaled.
        # Index: c2 recorded exactly as given (for widths Ultralytics' rounding would change); c1 comes from
        # the plugin row that feeds it. nn.Identity: keeps its input's channels (passthrough rows).
        if cls.passthrough:
            row[2], row[3] = "nn.Identity", []
            continue
        exact = scale_channels(c2, width, max_channels, cls.channel_divisor)
        rounded.append(_rounded(i, user_row, "c2", c2, exact, scaling, cls.channel_divisor))
        if exact == scale_channels(c2, width, max_channels):
            row[2], row[3] = "Conv", [c2]
        else:
            planned.c1 = _known_channels(plan, sources[0], ch)
            if planned.c1 is None:
                raise YamlRowError(
                    f"{label} {user_row!r}: {name} builds {exact} channels (a multiple of {cls.channel_divisor}, "
                    "not of 8), so it must take its input from another plugin row or the image"
                )
            row[2], row[3] = "Index", [exact, 0]
        planned.c2 = exact
    _say_rounded(file, [r for r in rounded if r], width, max_channels)
    return staged, plan


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
        kwargs = dict(planned.kwargs)
        if planned.image_channels is not None:
            kwargs["channels"] = planned.image_channels
        module = planned.cls(**kwargs) if planned.cls.passthrough else planned.cls(c1, c2, n, **kwargs)
    except (YamlArgError, ValueError) as e:
        raise YamlRowError(_row_message(planned.label, planned.row, planned.cls, e)) from None
    module.i, module.f = stand_in.i, stand_in.f
    module.type = f"{planned.cls.__module__}.{planned.cls.__qualname__}"
    module.np = sum(p.numel() for p in module.parameters())
    module.row_args = {"c1": c1, "c2": c2, "n": n, **planned.kwargs}
    return module


def _consumers(layers: nn.Sequential, i: int) -> list[int]:
    """Indices of the layers that read layer ``i``'s output; ``[len(layers)]`` (the model output) when none do."""
    users = [j for j in range(i + 1, len(layers)) if i in input_layers(layers[j].f, j)]
    return users or [len(layers)]


def _reprint(records: list[logging.LogRecord], model: nn.Sequential, plan: dict[int, _PlannedRow], logger) -> None:
    """Emit parse_model's table with each plugin row's line showing its real module and arguments."""
    for rec in records:
        i = next((i for i in plan if rec.getMessage().startswith(f"{i:>3}{model[i].f!s:>20}")), None)
        if i is not None:
            m = model[i]
            args = list(m.row_args.values())[3:]
            if not plan[i].cls.passthrough:
                args = [m.row_args["c1"], m.row_args["c2"], *args]
            pad = " " if len(m.type) >= 45 else ""
            rec.msg, rec.args = f"{i:>3}{m.f!s:>20}{m.row_args['n']:>3}{m.np:10.0f}  {m.type:<45}{pad}{args!s:<30}", ()
        logger.handle(rec)


def _written_rows(d: dict) -> list:
    return (d.get("backbone") or []) + (d.get("head") or [])


def _joins_maps(module: nn.Module) -> bool:
    """Whether a layer combines its inputs element by element or along channels (so their sizes must agree)."""
    return any(c.__name__ in {"Concat", "Add"} for c in type(module).__mro__)


def _is_head(module: nn.Module) -> bool:
    """Whether a layer is a multi-scale head (Detect and its Segment/Pose/OBB/YOLO26/YOLOE/v10 variants)."""
    return any(c.__name__ == "Detect" and c.__module__.startswith("ultralytics.") for c in type(module).__mro__)


def measured_maps(layers: nn.Sequential, ch: int, end: int, size: int = 256) -> list[tuple[float, int]] | None:
    """(stride, channels) of the map each of the first ``end`` layers hands on, from one forward pass of a zero
    ``size`` x ``size`` image in eval mode (the layers' training flags are restored); None when that pass fails."""
    import torch

    modes = [m.training for m in layers.modules()]
    layers.eval()
    try:
        with torch.no_grad():
            outputs = layer_outputs(layers, torch.zeros(1, ch, size, size), end)
    except Exception:  # noqa: BLE001 (a layer that needs more than an image: Ultralytics judges it)
        return None
    finally:
        for m, mode in zip(layers.modules(), modes):
            m.training = mode
    maps = [o[0] if isinstance(o, (list, tuple)) else o for o in outputs]
    if not all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in maps):
        return None
    return [(size / t.shape[-1], int(t.shape[1])) for t in maps]


def check_strides(layers: nn.Sequential, d: dict, ch: int) -> None:
    """Refuse, before Ultralytics' first forward pass, a ``Concat``/``Add`` whose inputs come at different strides
    (a neck row pointing at P4 instead of P3) and a head given the same stride twice, naming every input layer with
    its stride and channels. The strides each layer's modules tell (:func:`yolo_mobilevit.layer_info.layer_maps`)
    pick the suspects; a forward pass of the layers before the suspect row (:func:`measured_maps`) confirms them and
    gives the channels, so a stride the modules mis-tell never refuses a model that works."""
    told = [m["reduction"] for m in layer_maps(layers, ch)]
    for i, module in enumerate(layers):
        joins, head = _joins_maps(module), _is_head(module)
        if not (joins or head):
            continue
        sources = input_layers(module.f, i)
        strides = [1.0 if j < 0 else told[j] for j in sources]
        if None in strides or not ((joins and len(set(strides)) > 1) or (head and len(set(strides)) < len(strides))):
            continue
        measured = measured_maps(layers, ch, i)
        if measured is None:
            continue
        image = (1.0, ch)
        strides = [(image if j < 0 else measured[j])[0] for j in sources]
        if joins and len(set(strides)) > 1:
            problem = f"{type(module).__name__} joins maps of different strides"
            expected = (
                "its inputs must share one stride (the same height and width). Point `from` at layers of one "
                f"pyramid level, e.g. the stride {strides[0]:g} of its first input"
            )
            same = [j for j in range(i) if measured[j][0] == strides[0]]
        elif head and len(set(strides)) < len(strides):
            problem = f"{type(module).__name__} reads the same stride twice"
            expected = (
                "each input is one pyramid level (P3, P4, P5: strides 8, 16, 32). Point `from` at one layer per level"
            )
            same = []
        else:
            continue
        inputs = "; ".join(
            ("the image" if j < 0 else f"layer {j} ({type(layers[j]).__name__})")
            + f": stride {(image if j < 0 else measured[j])[0]:g}, {(image if j < 0 else measured[j])[1]} channels"
            for j in sources
        )
        row = _written_rows(d)[i] if i < len(_written_rows(d)) else module.f
        hint = f" Layers at stride {strides[0]:g}: {', '.join(map(str, same))}." if same else ""
        raise YamlRowError(f"{row_label(d, i)} {row!r}: {problem} ({inputs}); {expected}.{hint}")


def make_parse_model(original: Any) -> Any:
    """Wrap Ultralytics' ``parse_model(d, ch, verbose)`` so plugin rows build with inferred channels."""
    import sys

    tasks = sys.modules["ultralytics.nn.tasks"]

    def parse_model(d: dict, ch: int, verbose: bool = True) -> tuple[nn.Sequential, list[int]]:
        require_task_heads(d, tasks)  # semantic / depth heads on an Ultralytics older than those tasks
        staged, plan = _plan(d, tasks, ch)
        if not plan:
            model, save = original(staged, ch, verbose)
            check_strides(model, d, ch)
            return model, save
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
        check_strides(model, d, ch)
        stamp(model)
        record(model, d, ch)
        _reprint(held.records, model, plan, logger)
        return model, save

    return parse_model


def make_fuse(original: Any) -> Any:
    """Wrap ``BaseModel.fuse`` (which folds only Ultralytics' own conv classes) so the plugin's conv+BN pairs fold
    too; Ultralytics' exporter and its predict/val loaders call it."""

    def fuse(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        fuse_modules(self)
        return original(self, *args, **kwargs)

    return fuse
