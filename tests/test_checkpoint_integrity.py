"""Damaged and altered checkpoints: byte flips anywhere in a file either load the same weights or are refused with
CheckpointError (or Ultralytics' own "not a loadable checkpoint"); trainer checkpoints carry a weights digest that
refuses tensors changed after saving, with a documented bypass; checkpoints without a digest still load."""

from __future__ import annotations

import copy
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import CFG
from ultralytics.engine.trainer import BaseTrainer
from ultralytics.nn import tasks
from ultralytics.nn.tasks import DetectionModel, load_checkpoint

import yolo_mobilevit  # noqa: F401  (registers the plugin)
from yolo_mobilevit.checkpoints import (
    DIGEST_KEY,
    SKIP_DIGEST_ENV,
    CheckpointError,
    make_save_model,
    weights_digest,
)

XXS = CFG / "yolov8n-mobilevit-xxs.yaml"
FLIPS = 60


def _stub_trainer(model: torch.nn.Module, folder: Path) -> SimpleNamespace:
    """The attributes ``BaseTrainer.save_model`` reads, around a built model (its EMA is the model itself)."""
    return SimpleNamespace(
        ema=SimpleNamespace(ema=model, updates=0), model=model, epoch=0, best_fitness=1.0, fitness=1.0,
        stopper=SimpleNamespace(best_fitness=1.0, best_epoch=0), optimizer=torch.optim.SGD(model.parameters(), 0.1),
        scaler=SimpleNamespace(state_dict=dict), args=SimpleNamespace(), metrics={}, read_results_csv=dict,
        wdir=folder, last=folder / "last.pt", best=folder / "best.pt", save_period=-1,
    )  # fmt: skip


def _trainer_save(model: torch.nn.Module, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(BaseTrainer, "save_model", make_save_model(BaseTrainer.save_model))
    trainer = _stub_trainer(model, folder)
    BaseTrainer.save_model(trainer)
    assert not hasattr(model.model, DIGEST_KEY)  # the live model never keeps it
    return trainer.last


@pytest.fixture(scope="module")
def xxs() -> DetectionModel:
    torch.manual_seed(0)
    return DetectionModel(str(XXS), verbose=False)


@pytest.fixture
def saved(xxs: DetectionModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return _trainer_save(xxs, tmp_path, monkeypatch)


def _raw(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_trainer_checkpoint_records_the_digest_of_its_weights(saved: Path):
    ema = _raw(saved)["ema"]
    assert getattr(ema.model, DIGEST_KEY) == weights_digest(ema)
    _, ckpt = load_checkpoint(saved)
    assert not hasattr(ckpt["ema"].model, DIGEST_KEY)  # verified, then dropped: an edited model never carries it


def test_stock_checkpoint_gets_no_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    stock = DetectionModel("yolov8n.yaml", verbose=False)
    assert not hasattr(_raw(_trainer_save(stock, tmp_path, monkeypatch))["ema"].model, DIGEST_KEY)


def test_tensor_changed_after_saving_is_refused_by_name(saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    ckpt = _raw(saved)
    weight = next(v for v in ckpt["ema"].state_dict().values() if v.ndim == 4)
    weight.view(-1)[0] += 1  # a consistent zip (valid CRCs) around one changed value
    altered = tmp_path / "altered.pt"
    torch.save(ckpt, altered)
    before = altered.read_bytes()
    with pytest.raises(CheckpointError, match=rf"{altered}.*SHA-256.*{SKIP_DIGEST_ENV}=1"):
        load_checkpoint(altered)
    monkeypatch.setenv(SKIP_DIGEST_ENV, "1")
    model, _ = load_checkpoint(altered)
    assert torch.equal(next(v for v in model.state_dict().values() if v.ndim == 4).view(-1)[0], weight.view(-1)[0])
    assert altered.read_bytes() == before


def test_checkpoint_without_digest_still_loads(saved: Path, xxs: DetectionModel, tmp_path: Path):
    ckpt = _raw(saved)
    delattr(ckpt["ema"].model, DIGEST_KEY)
    old = tmp_path / "old.pt"
    torch.save(ckpt, old)
    model, _ = load_checkpoint(old)
    expected = copy.deepcopy(xxs).half().float().state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())


def test_random_byte_flips_load_the_same_weights_or_are_refused(saved: Path, tmp_path: Path, monkeypatch):
    def no_install(*args, **kwargs):
        raise AssertionError(f"Ultralytics tried to install {args} for a damaged plugin checkpoint")

    monkeypatch.setattr(tasks, "check_requirements", no_install)
    intact = saved.read_bytes()
    expected = load_checkpoint(saved)[0].state_dict()
    rng = random.Random(0)
    outcomes = {"same": 0, "CheckpointError": 0, "ultralytics": 0}
    damaged = tmp_path / "damaged.pt"
    # a third anywhere (mostly tensor data), a third in the zip's first records (data.pkl), a third in its directory
    regions = [(0, len(intact)), (0, min(len(intact), 1 << 16)), (max(0, len(intact) - (1 << 13)), len(intact))]
    for flip in range(FLIPS):
        data = bytearray(intact)
        position = rng.randrange(*regions[flip % 3])
        data[position] ^= rng.randrange(1, 256)
        damaged.write_bytes(data)
        try:
            model, _ = load_checkpoint(damaged)
        except CheckpointError as e:
            assert str(damaged) in str(e)
            outcomes["CheckpointError"] += 1
        except TypeError as e:
            assert "is not a loadable checkpoint" in str(e), (position, e)
            outcomes["ultralytics"] += 1
        else:
            state = model.state_dict()
            assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in state), position
            outcomes["same"] += 1
        assert damaged.read_bytes() == data  # never written to
    assert outcomes["CheckpointError"] > 0 and sum(outcomes.values()) == FLIPS


@pytest.mark.slow
def test_training_writes_checkpoints_whose_digest_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from conftest import dataset_yaml
    from ultralytics import YOLO

    monkeypatch.setattr(BaseTrainer, "save_model", make_save_model(BaseTrainer.save_model))
    data = tmp_path / "coco8"
    shutil.copytree(dataset_yaml("coco8").parent, data)  # Ultralytics writes label caches next to the labels
    spec = yaml.safe_load((data / "coco8.yaml").read_text())
    (data / "coco8.yaml").write_text(yaml.safe_dump({**spec, "path": str(data)}))
    YOLO(str(XXS)).train(data=str(data / "coco8.yaml"), epochs=1, imgsz=64, batch=4, workers=0, device="cpu",
                         project=str(tmp_path / "runs"), name="train", plots=False, val=True)  # fmt: skip
    weights = tmp_path / "runs" / "train" / "weights"
    for name in ("last.pt", "best.pt"):  # after Ultralytics' strip_optimizer rewrote them
        raw = _raw(weights / name)
        model = raw.get("ema") or raw["model"]
        assert getattr(model.model, DIGEST_KEY) == weights_digest(model), name
        loaded, _ = load_checkpoint(weights / name)
        assert all(torch.equal(v, model.float().state_dict()[k]) for k, v in loaded.state_dict().items())
