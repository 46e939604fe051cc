"""Checkpoints that cannot be used get a clear error naming the file, and are never modified: truncated files,
checkpoints written by another plugin version, and pretrained weights whose backbone rows disagree with the config."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import CFG, DATASETS, YOLO_BIN
from ultralytics import YOLO

import yolo_mobilevit
import yolo_mobilevit.modules.mobilevit as mobilevit_module
from yolo_mobilevit.checkpoints import CheckpointError, missing_plugin_classes, written_by

XXS = CFG / "yolov8n-mobilevit-xxs.yaml"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def yolo_fails(*args: str, cwd: Path) -> str:
    """Run `yolo ...` in a fresh interpreter that must fail; returns its output."""
    proc = subprocess.run([str(YOLO_BIN), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "YOLO_OFFLINE": "1"})  # fmt: skip
    assert proc.returncode != 0, proc.stdout[-2000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "xxs.pt"
    YOLO(str(XXS)).save(path)
    return path


def test_checkpoints_record_the_plugin_version(saved: Path):
    assert written_by(saved) == yolo_mobilevit.__version__
    assert missing_plugin_classes(saved) == []
    assert written_by(saved.with_name("absent.pt")) is None


@pytest.mark.slow
def test_truncated_checkpoint_is_refused_by_name(saved: Path, tmp_path: Path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    before = digest(broken)
    out = yolo_fails("predict", f"model={broken}", f"source={DATASETS / 'coco8' / 'images' / 'val'}", "imgsz=64",
                     cwd=tmp_path)  # fmt: skip
    assert "broken.pt" in out and "truncated or corrupted" in out
    assert digest(broken) == before


class FutureBlock(torch.nn.Module):
    """Stands for a module a later plugin version adds; pickled as yolo_mobilevit.modules.mobilevit.FutureBlock."""


@pytest.mark.slow
def test_checkpoint_from_a_newer_plugin_names_the_version_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    FutureBlock.__module__ = mobilevit_module.__name__
    monkeypatch.setattr(mobilevit_module, "FutureBlock", FutureBlock, raising=False)
    model = YOLO(str(XXS))
    model.model.model.yolo_mobilevit_version = "9.0.0"
    model.model.model[3].extra = FutureBlock()
    future = tmp_path / "future.pt"
    model.save(future)
    before = digest(future)
    out = yolo_fails("predict", f"model={future}", f"source={DATASETS / 'coco8' / 'images' / 'val'}", "imgsz=64",
                     cwd=tmp_path)  # fmt: skip
    assert (
        "CheckpointError: " in out and "future.pt was written by yolo-mobilevit 9.0.0 (newer than this install)" in out
    )
    assert "yolo_mobilevit.modules.mobilevit.FutureBlock" in out and 'pip install "yolo-mobilevit==9.0.0"' in out
    assert digest(future) == before


@pytest.mark.slow
def test_pretrained_backbone_from_another_config_is_refused(saved: Path, tmp_path: Path):
    before = digest(saved)
    out = yolo_fails("train", f"model={CFG / 'yolov8n-mobilevit-s.yaml'}", f"pretrained={saved}",
                     f"data={DATASETS / 'coco8' / 'coco8.yaml'}", "epochs=1", "imgsz=64", "device=cpu", "workers=0",
                     f"project={tmp_path}", "name=mismatch", cwd=tmp_path)  # fmt: skip
    assert f"{saved} does not fit" in out and "yolov8n-mobilevit-s.yaml" in out
    assert "layer 3: checkpoint MobileViTStage vs config MobileViTStage (model.3." in out
    assert "Nothing was loaded." in out
    assert digest(saved) == before
    assert not (tmp_path / "mismatch" / "weights" / "last.pt").exists()


def assert_transferred(model: torch.nn.Module, source: dict[str, torch.Tensor]) -> list[str]:
    """Every tensor of ``source`` whose name and shape ``model`` has arrived in ``model``; returns those names."""
    state = model.state_dict()
    fits = [k for k, v in source.items() if k in state and state[k].shape == v.shape]
    for k in fits:
        assert torch.equal(state[k], source[k].to(state[k].dtype)), f"{k} was not loaded"
    return fits


def test_matching_and_stock_transfers_still_load(saved: Path, tmp_path: Path):
    saved_state = torch.load(saved, weights_only=False)["model"].state_dict()
    same = YOLO(str(XXS)).load(str(saved))  # same config: every tensor loads
    assert assert_transferred(same.model, saved_state) == list(saved_state) == list(same.model.state_dict())
    stock = YOLO("yolov8n.yaml").model  # a stock checkpoint: what fits by name and shape transfers, as usual
    fits = assert_transferred(YOLO(str(XXS)).load(stock).model, stock.state_dict())
    assert "model.0.conv.weight" in fits  # the stem conv has stock's shape and names
    cls = YOLO(str(CFG / "yolov8n-mobilevit-cls.yaml"))
    cls.model.model[-1].fc = torch.nn.Linear(cls.model.model[-1].fc.in_features, 10)  # other nc: head may differ
    other = YOLO(str(CFG / "yolov8n-mobilevit-cls.yaml")).load(cls.model)
    fits = assert_transferred(other.model, cls.model.state_dict())
    head = f"model.{len(cls.model.model) - 1}.fc"
    assert set(cls.model.state_dict()) - set(fits) == {f"{head}.weight", f"{head}.bias"}  # the rest arrived
    with pytest.raises(CheckpointError, match="layer 1: checkpoint MV2Stage vs config MV2Stage"):
        YOLO(str(CFG / "yolov8n-mobilevit-s.yaml")).load(str(saved))
