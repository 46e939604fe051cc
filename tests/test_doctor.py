"""``yolo-mobilevit doctor`` from a fresh interpreter, as a user runs it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import ultralytics
from conftest import CFG, run

from yolo_mobilevit.integration import PATCHES
from yolo_mobilevit.tools.doctor import input_sizes

ALL_APPLIED = f"patches applied: {len(PATCHES)} of {len(PATCHES)}"  # 8.4.190 has every patched module

DOCTOR = [str(Path(sys.executable).with_name("yolo-mobilevit")), "doctor"]


@pytest.mark.slow
def test_environment_report(tmp_path: Path):
    out = run(DOCTOR, cwd=tmp_path).stdout
    assert f"ultralytics {ultralytics.__version__}: supported" in out
    assert "start-up activation: live" in out
    assert "import hook in this process: installed" in out
    assert ALL_APPLIED in out
    assert "safe load: " in out and "not allow-listed" not in out
    assert out.rstrip().endswith("doctor: OK")


@pytest.mark.slow
def test_autoload_switched_off_is_reported(tmp_path: Path):
    out = run(DOCTOR, cwd=tmp_path, env={"YOLO_MOBILEVIT_AUTOLOAD": "0"}).stdout
    assert "start-up activation: NOT live" in out and "YOLO_MOBILEVIT_AUTOLOAD: off" in out
    assert ALL_APPLIED in out  # the doctor itself imports the plugin


@pytest.mark.slow
def test_flagship_map_sizes(tmp_path: Path):
    out = run([*DOCTOR, "--cfg", str(CFG / "yolov8n-mobilevit.yaml"), "--imgsz", "640"], cwd=tmp_path).stdout
    assert "input sides [640]" in out
    assert "layer  3 MobileViTStage     stride  8: maps [80] -> native" in out
    assert "layer  5 MobileViTStage     stride 32: maps [20] -> native" in out
    assert "patch stages: all maps native (even)" in out

    out = run([*DOCTOR, "--cfg", str(CFG / "yolov8n-mobilevit.yaml"), "--imgsz", "640", "--rect"], cwd=tmp_path).stdout
    assert "layer  5 MobileViTStage     stride 32: maps [1, 2, " in out and "21] -> RESIZE at [1, 3, " in out
    assert "use the resize path (odd maps) at some sizes: layers [5]" in out


def test_input_sizes():
    assert input_sizes(640, 32, rect=False, multi_scale=0.0) == [640]
    assert max(input_sizes(640, 32, rect=True, multi_scale=0.0)) == 672
    multi = input_sizes(640, 32, rect=False, multi_scale=0.5)
    assert multi[0] == 320 and multi[-1] == 960 and all(s % 32 == 0 for s in multi)
    assert input_sizes(100, 32, rect=False, multi_scale=0.0) == [128]
