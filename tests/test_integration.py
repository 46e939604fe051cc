"""The patch table: every row resolves, one wrapper per row composes its steps in the listed order, wrappers stack
once per row (GUARD on parse_model), come off outermost first, keep metadata."""

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
        assert all(callable(integration._resolve(step)) for step in patch.steps), patch
        assert patch.why, patch
        if patch.module in sys.modules:  # register() imported every module this Ultralytics has
            assert is_patched(patch), patch
    assert len({(p.module, p.attribute) for p in PATCHES}) == len(PATCHES)  # one wrapper per (module, attribute)


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


def _answers_alone(original):
    def answers_alone(*args):
        return "answered" if args[-1] == "mine" else original(*args)

    return answers_alone


def test_steps_compose_into_one_wrapper_first_listed_outermost(fake_module, monkeypatch):
    """A row of several steps assigns one wrapper; the first step runs first and may answer without the rest."""
    monkeypatch.setattr(sys.modules[__name__], "answers_alone", _answers_alone, raising=False)
    steps = (f"{__name__}:answers_alone", f"{__name__}:outer_factory", f"{__name__}:inner_factory")
    row = Patch(fake_module.__name__, "Trainer.step", steps, "composed")
    stock = fake_module.Trainer.step
    assert apply(row) and not apply(row)
    assert fake_module.Trainer().step(1) == ("outer", ("inner", 1))
    assert fake_module.Trainer().step("mine") == "answered"  # the later steps never ran
    assert getattr(fake_module.Trainer.step, MARKER) is stock  # one wrapper, directly on the stock method
    assert row.factory == " > ".join(steps) and is_patched(row)
    assert undo(row) and fake_module.Trainer.step is stock


def test_load_rows_convert_reference_weights_before_checking_a_transfer():
    """The two rows that had two patches each: the reference-weights step is outermost."""
    for attribute in ("BaseModel.load", "torch_safe_load"):
        (row,) = [p for p in PATCHES if p.attribute == attribute]
        assert [step.split(":")[0] for step in row.steps] == ["yolo_mobilevit.pretrained", "yolo_mobilevit.checkpoints"]


def test_missing_attribute_is_skipped(fake_module):
    assert not apply(Patch(fake_module.__name__, "Trainer.absent", f"{__name__}:inner_factory", "older release"))
