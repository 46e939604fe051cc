"""The YAML argument contract of plugin modules."""

from __future__ import annotations

import re

import pytest

from yolo_mobilevit.modules import YAML_MODULES, ConvBNAct, MobileViTStage, MV2Stage
from yolo_mobilevit.modules.layers import make_divisible
from yolo_mobilevit.modules.rows import YamlArgError


def test_registry_names_the_core_modules():
    assert {"ConvBNAct", "MV2Stage", "MobileViTStage"} <= set(YAML_MODULES)
    assert YAML_MODULES["MobileViTStage"] is MobileViTStage


def test_bind_args_fills_defaults():
    c2, kwargs = MobileViTStage.bind_args([64, 96, 2])
    assert c2 == 64
    assert kwargs == {"d": 96, "depth": 2, "expansion": 4, "heads": 4, "dropout": 0.0, "window": 0}


@pytest.mark.parametrize(
    ("cls", "args", "message"),
    [
        (
            MobileViTStage,
            [64],
            "expects 3 to 7 arguments [c2, d, depth, expansion=4, heads=4, dropout=0.0, window=0], got 1",
        ),
        (MobileViTStage, [64, 96, 2, 4, 4, 0.0, 16, 1], "got 8"),
        (MobileViTStage, [64, 96, 2, 4, 4, 0.0, -1], "expects window >= 0, got -1"),
        (MobileViTStage, [64, "96", 2], "expects d to be int, got '96'"),
        (MobileViTStage, [64, 96, True], "expects depth to be int, got True"),
        (MV2Stage, [0], "expects c2 (output channels) to be a positive int, got 0"),
        (MV2Stage, [32, 3], "unknown stride 3; choose one of [1, 2]"),
        (ConvBNAct, [16, 3, 2, "swish"], "unknown act 'swish'"),
        (ConvBNAct, "16", "expects an argument list"),
        (MV2Stage, [32, 2, 0], "expects expansion > 0, got 0"),
        (MV2Stage, [32, 2, -1.5], "expects expansion > 0, got -1.5"),
        (MobileViTStage, [64, 0, 2], "expects d > 0, got 0"),
        (MobileViTStage, [64, 96, 0], "expects depth >= 1, got 0"),
        (MobileViTStage, [64, 96, 2, 4, 4, 1.0], "expects dropout in [0, 1), got 1.0"),
        (ConvBNAct, [16, 0], "expects kernel >= 1, got 0"),
        (ConvBNAct, [16, 3, 0], "expects stride >= 1, got 0"),
        (ConvBNAct, [16, 3, 1, "silu", 0.0], "expects bn_eps > 0, got 0.0"),
        (ConvBNAct, [16, 3, 1, "silu", 1e-5, 1.5], "expects bn_momentum in [0, 1], got 1.5"),
    ],
)
def test_bind_args_errors(cls, args, message):
    with pytest.raises(YamlArgError) as err:
        cls.bind_args(args)
    assert message in str(err.value)


def test_heads_must_divide_d_after_scaling():
    with pytest.raises(YamlArgError, match="d=90 .* not divisible by heads=4"):
        MobileViTStage.check_scaled(64, 1, {"d": 90, "depth": 2, "heads": 4, "dropout": 0.0})


@pytest.mark.parametrize(("value", "expected"), [(16, 16), (24 * 0.5, 16), (96 * 1.5, 144), (30, 32), (7, 8)])
def test_make_divisible(value, expected):
    assert make_divisible(value, 8) == expected


def test_cli_lists_registered_modules(capsys):
    from yolo_mobilevit.cli import main

    assert main(["modules"]) == 0
    out = capsys.readouterr().out
    for name, cls in YAML_MODULES.items():
        assert f"{name:<20} {cls.signature()}" in out


def test_every_row_declares_its_arguments_once():
    """Each argument has a type and, where numeric, a range or choices; scaled widths are ints."""
    for cls in YAML_MODULES.values():
        for arg in cls.yaml_args:
            numeric = arg.kind in (int, float, (int, float))
            assert not numeric or arg.bound is not None or arg.choices is not None, f"{cls.__name__}.{arg.name}"
            assert not arg.scaled or arg.kind is int, f"{cls.__name__}.{arg.name}"


def test_old_argument_names_still_build_with_a_warning():
    with pytest.warns(DeprecationWarning, match=r"MobileViTStage\(L=...\) is now depth="):
        old = MobileViTStage(16, 32, 1, d=32, L=1)
    assert len(old.blocks[0].transformer) == 1
    with pytest.warns(DeprecationWarning, match=r"ConvBNAct\(k=...\) is now kernel="):
        conv = ConvBNAct(3, 8, k=5, s=2)
    assert conv.conv.kernel_size == (5, 5) and conv.conv.stride == (2, 2)


@pytest.mark.parametrize(
    ("cls", "n", "message"),
    [(ConvBNAct, 2, "repeats to be 1 (one conv), got 2"), (MV2Stage, 0, "repeats to be >= 1 (blocks), got 0")],
)
def test_repeats_are_declared_per_row(cls, n, message):
    with pytest.raises(YamlArgError, match=re.escape(message)):
        cls.check_repeats(n)
