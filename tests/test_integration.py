"""The patch table: every row resolves, wrappers stack once per factory, come off outermost first, keep metadata."""

from __future__ import annotations

import sys
import types

import pytest

from yolo_mobilevit import integration
from yolo_mobilevit.integration import MARKER, PATCHES, Patch, apply, is_patched, undo


def test_every_row_names_an_existing_factory_and_attribute():
    import ultralytics.engine.trainer
    import ultralytics.nn.tasks  # noqa: F401

    integration.register()
    for patch in PATCHES:
        assert callable(integration._resolve(patch.factory)), patch
        assert patch.why, patch
        if patch.module in sys.modules:  # register() imported every module this Ultralytics has
            assert is_patched(patch), patch
    assert len({(p.module, p.attribute, p.factory) for p in PATCHES}) == len(PATCHES)


def _outer(original):
    def outer(*args):
        return ("outer", original(*args))

    return outer


def _inner(original):
    def inner(*args):
        return ("inner", original(*args))

    return inner


@pytest.fixture
def fake_module(monkeypatch):
    module = types.ModuleType("fake_ultralytics_module")

    class Trainer:
        def step(self, x):
            """Stock docstring."""
            return x

    module.Trainer = Trainer
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(sys.modules[__name__], "outer_factory", _outer, raising=False)
    monkeypatch.setattr(sys.modules[__name__], "inner_factory", _inner, raising=False)
    return module


def test_two_patches_on_one_attribute_stack_once_each_and_undo_outermost_first(fake_module):
    inner = Patch(fake_module.__name__, "Trainer.step", f"{__name__}:inner_factory", "first")
    outer = Patch(fake_module.__name__, "Trainer.step", f"{__name__}:outer_factory", "second")
    stock = fake_module.Trainer.step
    assert apply(inner) and apply(outer)
    assert not apply(inner) and not apply(outer)  # idempotent, per factory
    assert fake_module.Trainer().step(1) == ("outer", ("inner", 1))
    assert fake_module.Trainer.step.__doc__ == "Stock docstring."  # functools.wraps
    assert is_patched(inner) and is_patched(outer)
    assert not undo(inner)  # not outermost: left in place
    assert undo(outer) and undo(inner)
    assert fake_module.Trainer.step is stock and not hasattr(stock, MARKER)


def test_missing_attribute_is_skipped(fake_module):
    assert not apply(Patch(fake_module.__name__, "Trainer.absent", f"{__name__}:inner_factory", "older release"))
