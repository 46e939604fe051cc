"""A malformed plugin row fails at build time with a message naming the file, the layer and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
from ultralytics.nn.tasks import DetectionModel

from yolo_mobilevit.integration import YamlRowError

HEAD = """
head:
  - [[2, 3, 4], 1, Detect, [nc]]
"""


def write_config(tmp_path: Path, backbone: str, name: str = "bad-mobilevit.yaml", extra: str = "") -> Path:
    path = tmp_path / name
    path.write_text(f"nc: 2\n{extra}backbone:\n{backbone}{HEAD}")
    return path


GOOD = [
    "  - [-1, 1, ConvBNAct, [16, 3, 2]]",
    "  - [-1, 1, MV2Stage, [24, 2]]",
    "  - [-1, 1, MobileViTStage, [32, 64, 1]]",
    "  - [-1, 1, MobileViTStage, [48, 64, 1]]",
    "  - [-1, 1, MobileViTStage, [64, 64, 1]]",
]


def with_row(index: int, row: str) -> str:
    rows = list(GOOD)
    rows[index] = f"  - {row}"
    return "\n".join(rows) + "\n"


def build_error(tmp_path: Path, backbone: str, **kwargs) -> str:
    cfg = write_config(tmp_path, backbone, **kwargs)
    with pytest.raises(YamlRowError) as err:
        DetectionModel(str(cfg), verbose=False)
    message = str(err.value)
    assert str(cfg) in message
    return message


def test_good_rows_build(tmp_path):
    model = DetectionModel(str(write_config(tmp_path, "\n".join(GOOD) + "\n")), verbose=False)
    assert model.stride.tolist() == [8.0, 16.0, 32.0]


@pytest.mark.parametrize(
    ("index", "row", "expected"),
    [
        (2, "[-1, 1, MobileViTStage, [32]]", "layer 2 (backbone row 2)"),
        (
            2,
            "[-1, 1, MobileViTStage, [32]]",
            "MobileViTStage expects 3 to 6 arguments [c2, d, depth, expansion=4, heads=4, dropout=0.0], got 1",
        ),
        (2, "[-1, 1, MobileViTStage, [32, 64.5, 2]]", "expects d to be int, got 64.5"),
        (2, "[-1, 1, MobileViTStage, [32, 60, 2, 4, 5]]", "d=64 (after width scaling) is not divisible by heads=5"),
        (
            1,
            "[-1, 1, MV2Stage, [24, 2, 4, swish]]",
            "unknown act 'swish'; choose one of ['silu', 'relu', 'relu6', 'hardswish', 'gelu', 'none']",
        ),
        (1, "[-1, 0, MV2Stage, [24, 2]]", "expects repeats to be >= 1 (blocks), got 0"),
        (1, "[[-1, 0], 1, MV2Stage, [24, 2]]", "MV2Stage takes one input; `from` must be an int"),
        (0, "[-1, 2, ConvBNAct, [16, 3, 2]]", "ConvBNAct expects repeats to be 1 (one conv), got 2"),
    ],
)
def test_malformed_rows(tmp_path, index, row, expected):
    message = build_error(tmp_path, with_row(index, row))
    assert f"layer {index}" in message
    assert expected in message


def test_misspelt_module_suggests_closest(tmp_path):
    message = build_error(tmp_path, with_row(2, "[-1, 1, MobileVitStage, [32, 64, 1]]"))
    assert "unknown module 'MobileVitStage'. Did you mean 'MobileViTStage'?" in message


def test_misspelt_ultralytics_module_suggests_closest(tmp_path):
    message = build_error(tmp_path, with_row(0, "[-1, 1, Cnov, [16, 3, 2]]"))
    assert "Did you mean 'Conv'?" in message


def test_undefined_scale_letter(tmp_path):
    extra = "scales:\n  n: [1.0, 1.0, 1024]\n"
    cfg = write_config(tmp_path, "\n".join(GOOD) + "\n", name="yolov8-mobilevit-custom.yaml", extra=extra)
    lettered = cfg.with_name("yolov8x-mobilevit-custom.yaml")
    with pytest.raises(YamlRowError, match=r"scale 'x' \(from the file name\) is not defined .* defines \['n'\]"):
        DetectionModel(str(lettered), verbose=False)


def test_width_not_multiple_of_8_builds_exactly(tmp_path):
    """Rows with channel_divisor 4 keep published widths such as 12 (Ultralytics would round to 16)."""
    cfg = write_config(tmp_path, with_row(0, "[-1, 1, ConvBNAct, [12, 3, 2]]"))
    model = DetectionModel(str(cfg), verbose=False)
    assert model.model[0].conv.out_channels == 12
    assert model.model[1].row_args["c1"] == 12


def test_width_not_multiple_of_8_needs_a_plugin_input(tmp_path):
    rows = with_row(0, "[-1, 1, Conv, [16, 3, 2]]").replace("MV2Stage, [24, 2]", "ConvBNAct, [12, 3, 2]")
    message = build_error(tmp_path, rows)
    assert (
        "ConvBNAct builds 12 channels (a multiple of 4, not of 8), so it must take its input from another plugin row"
        in message
    )
