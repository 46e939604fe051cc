"""The Ultralytics version policy (docs/versions.md): tested range, untested newer 8.4.x after a self-test of every
patched target, outside the series inactive. Newer releases and changed targets are simulated in fresh interpreters
(the version string set before the plugin patches anything; a target replaced by one with another signature)."""

from __future__ import annotations

import inspect
import sys
import tomllib
from pathlib import Path

import pytest
import ultralytics
from conftest import CFG, PY, REPO, run
from helpers import module_absent
from packaging.requirements import Requirement

from yolo_mobilevit import integration
from yolo_mobilevit.selftest import _mismatch
from yolo_mobilevit.versions import (
    OUTSIDE,
    TESTED,
    ULTRALYTICS_MIN,
    ULTRALYTICS_REQUIREMENT,
    ULTRALYTICS_TESTED,
    UNTESTED,
    policy,
)

PLUGIN_YAML = CFG / "yolov8-mobilenetv3-large.yaml"
NEXT = "8.4.191"
# The release after the newest tested one is simulated from that one's code (on 8.4.0's, "8.4.191" would lack the
# export helpers, and is refused for it: tests/test_doctor.py checks that on both ends).
ON_NEWEST = pytest.mark.skipif(
    ultralytics.__version__ != ULTRALYTICS_TESTED, reason=f"simulates {NEXT} from {ULTRALYTICS_TESTED}'s code"
)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("8.3.253", OUTSIDE),
        ("8.4.0", TESTED),
        ("8.4.100", TESTED),
        ("8.4.190", TESTED),
        ("8.4.191", UNTESTED),
        ("8.4.1000", UNTESTED),
        ("8.5.0", OUTSIDE),
        ("9.0.0", OUTSIDE),
    ],
)
def test_policy_boundaries(version, expected):
    assert policy(version) == expected


def _requirement(name: str) -> Requirement:
    """``name``'s line of pyproject.toml's dependencies."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(r for r in map(Requirement, dependencies) if r.name == name)


def test_pyproject_admits_the_next_patch_release_and_not_the_next_minor():
    ultralytics = _requirement("ultralytics")
    assert ultralytics == Requirement(ULTRALYTICS_REQUIREMENT)
    for version in (ULTRALYTICS_MIN, ULTRALYTICS_TESTED, NEXT, "8.4.999", "8.3.253", "8.5.0", "9.0.0"):
        assert ultralytics.specifier.contains(version) == (policy(version) != OUTSIDE), version


def test_every_row_passes_the_self_test_on_this_tested_release():
    """The self-test must not refuse an unchanged release: every target this release has fits its wrapper."""
    integration.register()
    checked = [p for p in integration.PATCHES if p.module in sys.modules]
    unchecked = [p for p in integration.PATCHES if p not in checked]  # 8.4.0 lacks the export helpers, for one
    assert checked and all(module_absent(p.module) for p in unchecked), unchecked
    assert [integration.self_test(p) for p in checked] == [None] * len(checked)


def _sig(function) -> inspect.Signature:
    return inspect.signature(function)


def test_signature_rules():
    def target(self, batch, scale=1.0):
        pass

    def exact(self, batch, scale=1.0):
        pass

    def passes_on(self, *args, **kwargs):
        pass

    def fewer(self, batch):
        pass

    def other_default(self, batch, scale=2.0):
        pass

    def renamed(self, images, scale=1.0):
        pass

    assert _mismatch(_sig(exact), _sig(target)) is None
    assert _mismatch(_sig(passes_on), _sig(target)) is None
    assert "new parameter 'scale=1.0'" in _mismatch(_sig(fewer), _sig(target))
    assert "'scale' defaults to 1.0, the wrapper's to 2.0" in _mismatch(_sig(other_default), _sig(target))
    assert "no parameter 'images' at position 2" in _mismatch(_sig(renamed), _sig(target))
    assert "no parameter 'scale'" in _mismatch(_sig(exact), _sig(fewer))  # Ultralytics dropped one


def _simulate(code: str, tmp_path: Path, autoload: bool = True) -> str:
    """Run ``code`` in a fresh interpreter with warnings shown; stdout + stderr."""
    env = {} if autoload else {"YOLO_MOBILEVIT_AUTOLOAD": "0"}
    proc = run([PY, "-W", "always", "-c", code], cwd=tmp_path, env=env)
    return proc.stdout + proc.stderr


BUILD = f"""
from ultralytics import YOLO
print('stock layers', len(YOLO('yolov8n.yaml').model.model))
try:
    print('plugin row', type(YOLO({str(PLUGIN_YAML)!r}).model.model[1]).__name__)
except Exception as e:
    print('ERROR', type(e).__name__, e)
print('stock again', len(YOLO('yolo11n.yaml').model.model))
from yolo_mobilevit import integration
print('state', integration.state(), 'patched', sum(map(integration.is_patched, integration.PATCHES)))
from ultralytics.utils import DEFAULT_CFG_DICT
print('plugin keys', 'variable_batch' in DEFAULT_CFG_DICT)
"""


@ON_NEWEST
def test_untested_release_works_with_one_warning(tmp_path: Path):
    out = _simulate(f"import ultralytics; ultralytics.__version__ = {NEXT!r}\n{BUILD}", tmp_path)
    assert "stock layers 23" in out and "plugin row ConvBNAct" in out, out
    assert f"state untested patched {len(integration.PATCHES)}" in out, out  # the first plugin row checked them all
    assert out.count("yolo-mobilevit:") == 1, out
    assert f"ultralytics {NEXT} is newer than the releases it is tested with" in out


REPLACE_STEP = "T.optimizer_step = (lambda stock: lambda self, scaler=None: stock(self))(T.optimizer_step)\n"
# Two changed targets, made before the plugin is imported (autoload off), so it checks them as it patches the modules
# already imported: a signature that gained a parameter, and an export helper's function that is gone.
CHANGED = {
    "trainer": (
        f"from ultralytics.engine.trainer import BaseTrainer as T\n{REPLACE_STEP}",
        "ultralytics.engine.trainer:BaseTrainer.optimizer_step is now (self, scaler=None), its wrapper takes (self)",
    ),
    "export helper": (
        "from ultralytics.utils.export import litert\ndel litert.torch2litert\n",
        "ultralytics.utils.export.litert:torch2litert no longer exists",
    ),
}


@ON_NEWEST
@pytest.mark.parametrize("where", CHANGED)
def test_changed_target_is_refused_by_name_and_stock_is_untouched(tmp_path: Path, where: str):
    change, named = CHANGED[where]
    code = f"import ultralytics; ultralytics.__version__ = {NEXT!r}\n{change}import yolo_mobilevit\n{BUILD}"
    out = _simulate(code, tmp_path, autoload=False)
    assert "stock layers 23" in out and "stock again 24" in out, out
    assert "ERROR YamlRowError" in out and f"{PLUGIN_YAML.name} uses plugin rows" in out, out
    assert named in out, out
    assert "state refused patched 0" in out and "plugin keys False" in out, out  # every patch and key taken back
    assert f"pip install 'ultralytics>={ULTRALYTICS_MIN},<={ULTRALYTICS_TESTED}'" in out


def test_outside_the_series_stays_inactive(tmp_path: Path):
    out = _simulate(f"import ultralytics; ultralytics.__version__ = '8.5.0'\n{BUILD}", tmp_path)
    assert "stock layers 23" in out and "ERROR YamlRowError" in out, out
    assert "state outside patched 0" in out, out
    assert out.count("yolo-mobilevit: inactive") == 1, out
    assert f"and 8.5.0 is installed. pip install '{ULTRALYTICS_REQUIREMENT}'" in out
