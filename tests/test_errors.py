"""A malformed plugin row fails at build time with a message naming the file, the layer and what was expected."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import YOLO_BIN
from ultralytics.nn.tasks import DetectionModel

from yolo_mobilevit.integration import YamlRowError

HEAD = """
head:
  - [[2, 3, 4], 1, Detect, [nc]]
"""


def write_config(
    tmp_path: Path, backbone: str, name: str = "bad-mobilevit.yaml", extra: str = "", head: str = HEAD
) -> Path:
    path = tmp_path / name
    path.write_text(f"nc: 2\n{extra}backbone:\n{backbone}{head}")
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
            "MobileViTStage expects 3 to 7 arguments [c2, d, depth, expansion=4, heads=4, dropout=0.0, window=0], got 1",
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


MALFORMED = Path(__file__).parent / "fixtures" / "malformed"


def test_concat_of_p4_for_p3_names_both_inputs_with_stride_and_channels():
    """A stock YOLOv8n neck whose P3 Concat reads backbone layer 6 (P4): refused at build, before the forward
    pass that used to fail with 'Sizes of tensors must match'."""
    cfg = MALFORMED / "yolov8n-61-concat-p4-for-p3.yaml"
    with pytest.raises(YamlRowError) as err:
        DetectionModel(str(cfg), verbose=False)
    message = str(err.value)
    assert (
        f"{cfg}: layer 14 (head row 4) [[-1, 6], 1, 'Concat', [1]]: Concat joins maps of different strides" in message
    )
    assert "layer 13 (Upsample): stride 8, 128 channels; layer 6 (C2f): stride 16, 128 channels" in message
    assert "Layers at stride 8: 3, 4, 13." in message


def test_concat_of_plugin_rows_at_two_strides(tmp_path):
    """Plugin rows have their strides from their own arguments: P5 (layer 4) joined with P4 (layer 3)."""
    head = "head:\n  - [[-1, 3], 1, Concat, [1]]\n  - [[2, 3, 5], 1, Detect, [nc]]\n"
    message = build_error(tmp_path, "\n".join(GOOD) + "\n", head=head)
    assert "layer 5 (head row 0) [[-1, 3], 1, 'Concat', [1]]" in message
    assert (
        "layer 4 (MobileViTStage): stride 32, 64 channels; layer 3 (MobileViTStage): stride 16, 48 channels" in message
    )


def test_head_reading_one_stride_twice(tmp_path):
    message = build_error(tmp_path, "\n".join(GOOD) + "\n", head="head:\n  - [[2, 3, 3], 1, Detect, [nc]]\n")
    assert "layer 5 (head row 0) [[2, 3, 3], 1, 'Detect', ['nc']]: Detect reads the same stride twice" in message
    assert (
        "layer 2 (MobileViTStage): stride 8, 32 channels; layer 3 (MobileViTStage): stride 16, 48 channels" in message
    )


def test_misspelt_stock_module_in_a_stock_config_suggests_ultralytics_module():
    cfg = MALFORMED / "yolov8n-62-stock-misspelt-module.yaml"
    with pytest.raises(YamlRowError) as err:
        DetectionModel(str(cfg), verbose=False)
    assert (
        f"{cfg}: layer 4 (backbone row 4) [-1, 6, 'C2F', [256, True]]: unknown module 'C2F'. Did you mean 'C2f'?"
        in (str(err.value))
    )


STOCK = ["yolov8n.yaml", "yolo11n.yaml", "yolo26n.yaml", "yolov8n-p2.yaml", "yolov8n-p6.yaml", "yolo26n-seg.yaml"]
STOCK += ["yolo11n-pose.yaml", "yolov8n-obb.yaml", "yolov6n.yaml", "yolov3-tiny.yaml", "yolov9t.yaml", "yolov10n.yaml"]
STOCK += ["yolov5nu.yaml", "yolov8n-ghost.yaml", "yolov8-cls-resnet50.yaml", "rtdetr-l.yaml"]


def test_stock_configs_build_as_without_the_plugin(tmp_path):
    """Stock configs (transposed-conv, padded, parallel-downsampling and P2/P6 necks among them) pass the stride
    check and build exactly as Ultralytics alone builds them: same layers, parameters and strides."""
    code = (
        "import json, sys\nfrom ultralytics.nn.tasks import yaml_model_load, parse_model\n"
        "out = {}\nfor name in sys.argv[1:]:\n"
        "    d = yaml_model_load(name)\n"
        "    layers, _ = parse_model(d, d.get('channels', 3), verbose=False)\n"
        "    out[name] = [type(m).__name__ + str(sum(p.numel() for p in m.parameters())) for m in layers]\n"
        "print(json.dumps(out))"
    )
    env = {**os.environ, "YOLO_MOBILEVIT_AUTOLOAD": "0"}
    alone = subprocess.run([sys.executable, "-c", code, *STOCK], env=env, capture_output=True, text=True, check=True)
    expected = json.loads(alone.stdout.strip().splitlines()[-1])
    import yolo_mobilevit

    yolo_mobilevit.register()
    from ultralytics.nn import tasks

    for name in STOCK:
        d = tasks.yaml_model_load(name)
        layers, _ = tasks.parse_model(d, d.get("channels", 3), verbose=False)
        assert [type(m).__name__ + str(sum(p.numel() for p in m.parameters())) for m in layers] == expected[name], name


def test_rounded_width_is_said_once_with_the_rule(tmp_path):
    from ultralytics.utils import LOGGER

    cfg = write_config(tmp_path, with_row(2, "[-1, 1, MobileViTStage, [84, 64, 1]]"), name="rounded-mobilevit.yaml")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    LOGGER.addHandler(handler)
    try:
        model = DetectionModel(str(cfg), verbose=False)
        DetectionModel(str(cfg), verbose=False)
    finally:
        LOGGER.removeHandler(handler)
    assert model.model[2].row_args["c2"] == 88
    said = [r.getMessage() for r in records if "round up" in r.getMessage()]
    assert len(said) == 1, said
    assert f"{cfg}: 1 plugin width(s) round up to their row's multiple" in said[0]
    assert "ceil(min(c, max_channels=inf) * width=1 / multiple) * multiple" in said[0]
    assert "layer 2 [-1, 1, 'MobileViTStage', [84, 64, 1]]: c2 84 -> 88 (multiple of 8)" in said[0]


def test_cli_prints_a_yaml_row_error_without_traceback(tmp_path):
    """The `yolo` entry point (Ultralytics' own, unmodified): the message alone, exit status 1."""
    cfg = MALFORMED / "yolov8n-62-stock-misspelt-module.yaml"
    proc = subprocess.run(
        [str(YOLO_BIN), "predict", f"model={cfg}"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-2].startswith(f"YamlRowError: {cfg}: layer 4 (backbone row 4)")


def test_excepthook_keeps_tracebacks_outside_the_cli(monkeypatch, capsys):
    """A script (or any other exception) goes to the hook installed before the plugin's."""
    from yolo_mobilevit.errors import install_excepthook

    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *a: seen.append(a[0]))
    install_excepthook()
    error = YamlRowError("cfg.yaml: layer 1 (backbone row 1) [...]: unknown module")
    monkeypatch.setattr(sys, "argv", ["train.py"])
    sys.excepthook(YamlRowError, error, None)
    monkeypatch.setattr(sys, "argv", ["/venv/bin/yolo", "train"])
    sys.excepthook(KeyError, KeyError("x"), None)
    assert seen == [YamlRowError, KeyError]
    sys.excepthook(YamlRowError, error, None)
    assert seen == [YamlRowError, KeyError]
    assert capsys.readouterr().err.startswith("YamlRowError: cfg.yaml: layer 1 (backbone row 1)")
