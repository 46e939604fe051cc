"""The self-test on an untested Ultralytics release: does each patched target still take what its wrapper passes on?

Imported only where it runs (an untested release, ``doctor``, the tests): :mod:`inspect` is too slow an import for the
start-up hook of every interpreter. It compares signatures and knows nothing of the patch table:
:func:`yolo_mobilevit.integration.self_test` hands it each row's target and steps.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable


def signature_problem(target: str, original: Callable, wrapper: Callable) -> str | None:
    """None when ``original`` (the stock Ultralytics attribute named ``target``) takes every argument ``wrapper``
    (one step of its patch row, as its factory returns it, before ``functools.wraps``) passes on; else what changed,
    naming the target. The wrapper's own parameter list is what it expects: a named parameter must be the target's,
    at the same place, with the same default; ``*args`` / ``**kwargs`` pass on whatever else the target takes."""
    try:
        found = inspect.signature(original)
        wanted = inspect.signature(wrapper, follow_wrapped=False)
    except (TypeError, ValueError) as e:
        return f"{target} has no readable signature ({e})"
    reason = _mismatch(wanted, found)
    return None if reason is None else f"{target} is now {_plain(found)}, its wrapper takes {_plain(wanted)} ({reason})"


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _mismatch(wanted: inspect.Signature, found: inspect.Signature) -> str | None:
    """Why a wrapper with parameters ``wanted`` cannot stand in for a target with ``found`` (None: it can)."""
    P = inspect.Parameter
    kinds = {p.kind for p in wanted.parameters.values()}
    takes_args, takes_kwargs = P.VAR_POSITIONAL in kinds, P.VAR_KEYWORD in kinds
    named = [p for p in wanted.parameters.values() if p.kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD)]
    params = list(found.parameters.values())
    for i, w in enumerate(p for p in named if p.kind in _POSITIONAL):
        if i >= len(params) or params[i].name != w.name or params[i].kind not in _POSITIONAL:
            return f"no parameter '{w.name}' at position {i + 1}"
    by_name = {p.name: p for p in params}
    for w in named:
        f = by_name.get(w.name)
        if f is None or (w.kind is P.KEYWORD_ONLY and f.kind not in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)):
            return f"no parameter '{w.name}'"
        if f.default is not P.empty and not _same(f.default, w.default):
            theirs = "no default" if w.default is P.empty else f"{w.default!r}"
            return f"'{w.name}' defaults to {f.default!r}, the wrapper's to {theirs}"
    names = {w.name for w in named}
    for f in params:
        if f.name in names:
            continue
        needs_args = f.kind in (*_POSITIONAL, P.VAR_POSITIONAL) and not takes_args
        needs_kwargs = f.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY, P.VAR_KEYWORD) and not takes_kwargs
        if needs_args or needs_kwargs:
            return f"new parameter '{f}' the wrapper would not pass on"
    return None


def _same(a: object, b: object) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - an uncomparable default (an array, say) counts as changed
        return a is b


def _plain(signature: inspect.Signature) -> str:
    """A signature without annotations: ``(d, ch, verbose=True)``."""
    empty = inspect.Signature.empty
    params = [p.replace(annotation=empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=params, return_annotation=empty))
