"""The YAML argument contract of plugin modules."""

from __future__ import annotations

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
    assert kwargs == {"d": 96, "L": 2, "expansion": 4, "heads": 4, "dropout": 0.0}


@pytest.mark.parametrize(
    ("cls", "args", "message"),
    [
        (MobileViTStage, [64], "expects 3 to 6 arguments [c2, d, L, expansion=4, heads=4, dropout=0.0], got 1"),
        (MobileViTStage, [64, 96, 2, 4, 4, 0.0, 1], "got 7"),
        (MobileViTStage, [64, "96", 2], "expects d to be int, got '96'"),
        (MobileViTStage, [64, 96, True], "expects L to be int, got True"),
        (MV2Stage, [0], "expects c2 (output channels) to be a positive int, got 0"),
        (MV2Stage, [32, 3], "unknown stride 3; choose one of [1, 2]"),
        (ConvBNAct, [16, 3, 2, "swish"], "unknown act 'swish'"),
        (ConvBNAct, "16", "expects an argument list"),
    ],
)
def test_bind_args_errors(cls, args, message):
    with pytest.raises(YamlArgError) as err:
        cls.bind_args(args)
    assert message in str(err.value)


def test_heads_must_divide_d_after_scaling():
    with pytest.raises(YamlArgError, match="d=90 .* not divisible by heads=4"):
        MobileViTStage.check_scaled(64, 1, {"d": 90, "L": 2, "heads": 4, "dropout": 0.0})


@pytest.mark.parametrize(("value", "expected"), [(16, 16), (24 * 0.5, 16), (96 * 1.5, 144), (30, 32), (7, 8)])
def test_make_divisible(value, expected):
    assert make_divisible(value, 8) == expected


def test_cli_lists_registered_modules(capsys):
    from yolo_mobilevit.cli import main

    assert main(["modules"]) == 0
    out = capsys.readouterr().out
    for name, cls in YAML_MODULES.items():
        assert f"{name:<20} {cls.signature()}" in out
