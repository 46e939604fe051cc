"""``yolo-mobilevit doctor`` from a fresh interpreter, as a user runs it: exit 0 exactly when nothing is wrong, on
both ends of the tested range (CI runs this file on 8.4.0 too), every problem named."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import ultralytics
from conftest import CFG, PY, run
from helpers import module_absent

from yolo_mobilevit.integration import PATCHES
from yolo_mobilevit.tools.doctor import input_sizes

# The rows whose module this release lacks (8.4.0: the three export helpers) are not applicable, every other applies.
ABSENT = [p for p in PATCHES if module_absent(p.module)]
ALL_APPLIED = f"patches: {len(PATCHES) - len(ABSENT)} applied, {len(ABSENT)} not applicable here, 0 missing"

ENTRY_POINT = Path(sys.executable).with_name("yolo-mobilevit")  # a venv layered on another one has none of its own
DOCTOR = [str(ENTRY_POINT)] if ENTRY_POINT.exists() else [PY, "-m", "yolo_mobilevit.cli"]
DOCTOR.append("doctor")


def doctor_in(code: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``doctor`` run by ``yolo_mobilevit.cli.main`` after ``code``, in a fresh interpreter (exit status kept)."""
    call = f"import sys\nfrom yolo_mobilevit.cli import main\nsys.exit(main({['doctor', *args]!r}))"
    script = f"{textwrap.dedent(code)}\n{call}"
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    return subprocess.run(
        [PY, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.slow
def test_environment_report(tmp_path: Path):
    proc = run(DOCTOR, cwd=tmp_path)  # fails the test unless it exits 0
    out = proc.stdout
    assert f"ultralytics {ultralytics.__version__}: tested (CI tests 8.4.0 to 8.4.190)" in out
    assert "start-up activation: live" in out
    assert "import hook in this process: installed" in out
    assert ALL_APPLIED in out
    for patch in ABSENT:
        assert f"n/a {patch.module}:{patch.attribute}: not applicable here (this ultralytics has no module" in out
    assert "safe load: " in out and "not allow-listed" not in out
    assert proc.returncode == 0 and out.rstrip().endswith("doctor: OK")


@pytest.mark.slow
def test_missing_row_is_named_and_the_config_still_checked(tmp_path: Path):
    """A row that should apply (its module is here) but does not: exit 1 naming it, and --cfg still runs."""
    code = """
    from yolo_mobilevit import integration
    integration.PATCHES += (integration.Patch("ultralytics.engine.trainer", "BaseTrainer.renamed_step",
                                              "yolo_mobilevit.variable_batch:make_optimizer_step", "simulated"),)
    """
    cfg = str(CFG / "yolov8n-mobilevit.yaml")
    proc = doctor_in(code, tmp_path, "--cfg", cfg, "--imgsz", "64")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "1 missing" in out and "!   ultralytics.engine.trainer:BaseTrainer.renamed_step: NOT patched" in out
    assert f"config {cfg}: imgsz 64; input sides [64]" in out  # checked although a check before it failed
    problems = out[out.index("doctor: 1 problem(s):") :]
    assert "ultralytics.engine.trainer has no BaseTrainer.renamed_step" in problems
    assert "pip install 'ultralytics==8.4.190'" in problems


@pytest.mark.slow
@pytest.mark.parametrize("changed", [False, True])
def test_untested_release_reports_the_self_test(tmp_path: Path, changed: bool):
    change = (
        "from ultralytics.nn import tasks\n"
        "stock = tasks.parse_model\n"
        "tasks.parse_model = lambda d, ch, verbose=True, strict=False: stock(d, ch, verbose)\n"
    )
    code = f"import ultralytics; ultralytics.__version__ = '8.4.191'\n{change if changed else ''}"
    proc = doctor_in(code, tmp_path, "--cfg", str(CFG / "yolov8n-mobilevit.yaml"), "--imgsz", "64")
    out = proc.stdout
    if not changed and not ABSENT:  # 8.4.190's code as 8.4.191: every target holds
        assert proc.returncode == 0, out + proc.stderr
        assert "ultralytics 8.4.191: untested (CI tests 8.4.0 to 8.4.190); self-test passed" in out
        assert out.rstrip().endswith("doctor: OK")
        return
    assert proc.returncode == 1, out + proc.stderr
    assert "ultralytics 8.4.191: untested, and the self-test REFUSED it; the plugin is inactive" in out
    if changed:
        named = ["ultralytics.nn.tasks:parse_model is now (d, ch, verbose=True, strict=False), its wrapper takes"]
    else:  # 8.4.0's code as 8.4.191: an untested release without the export helpers 8.4.190 has
        named = [f"{patch.module} no longer exists" for patch in ABSENT]
    assert sum(map(out.count, named)) == 2  # the refused version, and the config that does not build because of it


@pytest.mark.slow
def test_autoload_switched_off_is_reported(tmp_path: Path):
    out = run(DOCTOR, cwd=tmp_path, env={"YOLO_MOBILEVIT_AUTOLOAD": "0"}).stdout  # switched off on purpose: exit 0
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
