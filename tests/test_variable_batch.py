"""`variable_batch`: MobileViT's variable-batch multi-scale sampler, its optimizer cadence and its Ultralytics glue.

The schedule and the step rule are pure functions and are checked in process; the trainer glue is checked against
Ultralytics' own InfiniteDataLoader (with prefetching workers), then end to end through the plain `yolo` CLI,
the Python keyword, and a resume after an interruption.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from conftest import CFG, DATASETS, YOLO_BIN, dataset_yaml, linked_dataset, python, yolo
from ultralytics.cfg import get_cfg
from ultralytics.data.build import build_dataloader

from yolo_mobilevit import variable_batch as ms
from yolo_mobilevit.variable_batch import (
    KEY,
    PAPER_RATIOS,
    StepGate,
    VariableBatchSampler,
    plan_epoch,
    scale_sizes,
    size_batches,
)

MODEL = CFG / "yolov8n-mobilevit-xxs.yaml"


# ------------------------------------------------------------------------------------------------ the schedule
def test_paper_sizes_and_batches():
    """MobileViT (cvnets) at 256 with base batch 128 per GPU: sizes 160..320, batches 327/227/128/101/81."""
    sizes = scale_sizes(256, 32, PAPER_RATIOS)
    assert sizes == [160, 192, 256, 288, 320]
    assert size_batches(sizes, 256, 128) == [(160, 327), (192, 227), (256, 128), (288, 101), (320, 81)]


@pytest.mark.parametrize(
    ("imgsz", "batch", "ratios"), [(640, 16, PAPER_RATIOS), (320, 64, (0.5, 1.5)), (96, 4, (1, 2))]
)
def test_constant_pixel_budget_and_declared_distribution(imgsz: int, batch: int, ratios: tuple[float, float]):
    sizes = scale_sizes(imgsz, 32, ratios)
    pairs = size_batches(sizes, imgsz, batch)
    assert len(sizes) >= 3 and all(s % 32 == 0 and s >= 64 for s in sizes)
    for s, b in pairs:  # floor: never above the base budget, within one image of it
        assert b * s**2 <= batch * imgsz**2 < (b + 1) * s**2
    n = 1000
    plan = plan_epoch(pairs, n, imgsz)
    assert sum(b for _, b in plan) == n
    assert set(plan[:-1]) <= set(pairs)  # every batch is a declared pair, the last one trimmed to fit
    per_size = Counter(s for s, _ in plan)
    assert set(per_size) == set(sizes) and max(per_size.values()) - min(per_size.values()) <= 1
    sampler = VariableBatchSampler(n, pairs, imgsz, seed=3)
    for epoch in range(3):  # each epoch: the same multiset of pairs, in a new order
        assert sorted(sampler.steps(epoch)) == sorted(plan)
    assert sampler.steps(0) != sampler.steps(1)


@pytest.mark.parametrize("n", [1, 5, 32, 101, 997])
def test_every_image_exactly_once_per_epoch(n: int):
    sampler = VariableBatchSampler(n, size_batches([64, 96, 128], 96, 4), 96, seed=0)
    for epoch in range(3):
        batches = list(sampler)  # __iter__ advances the epoch
        assert [b.mark[1] for b in batches] == [epoch] * len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(n))
        assert [(b.mark[3], len(b)) for b in batches] == sampler.steps(epoch)


@pytest.mark.parametrize(("n", "world"), [(101, 2), (32, 2), (7, 3), (1, 2)])
def test_ranks_agree_on_every_step_and_partition_the_epoch(n: int, world: int):
    pairs = size_batches([64, 96, 128], 96, 4)
    ranks = [VariableBatchSampler(n, pairs, 96, seed=5, rank=r, world_size=world) for r in range(world)]
    for epoch in range(2):
        per_rank = [r.batches(epoch) for r in ranks]
        assert len({len(b) for b in per_rank}) == 1  # same number of steps
        for step in zip(*per_rank):  # same size and batch on every rank at every step
            assert len({(size, len(idx)) for size, idx in step}) == 1
        seen = Counter(i for batches in per_rank for _, idx in batches for i in idx)
        assert set(seen) == set(range(n))  # every image; repeats only as DistributedSampler's padding
        assert sum(seen.values()) - n == -n % world and max(seen.values()) <= 2


def test_schedule_depends_only_on_seed_and_epoch():
    """What resume needs: a fresh sampler (new process) gives epoch k the schedule the first run gave it."""
    pairs = size_batches([64, 96, 128], 96, 4)
    first = VariableBatchSampler(50, pairs, 96, seed=7)
    consumed = [[(b.mark[3], list(b)) for b in first] for _ in range(3)]  # epochs 0, 1, 2 by iteration
    resumed = VariableBatchSampler(50, pairs, 96, seed=7)
    resumed.set_epoch(2)
    assert [(b.mark[3], list(b)) for b in resumed] == consumed[2]
    assert resumed.fingerprint(1) == first.fingerprint(1) != first.fingerprint(2)
    assert VariableBatchSampler(50, pairs, 96, seed=8).fingerprint(1) != first.fingerprint(1)
    assert len({len(consumed[0]), len(consumed[1]), len(consumed[2])}) == 1  # same number of batches every epoch


# --------------------------------------------------------------------------------------------- the step rule
def test_optimizer_steps_every_nbs_images_with_rescaled_gradient():
    """Ultralytics steps every `accumulate` batches of `batch` images; here once accumulate*batch images are in,
    and the summed gradient is scaled to exactly that many images."""
    gate, steps = StepGate(target=64), []
    for images in [40, 28, 16, 12, 10, 40, 28, 16, 12, 10]:
        gate.add(images)
        if gate.ready:
            pending = gate.pending
            steps.append((pending, gate.take()))
    assert [p for p, _ in steps] == [68, 78, 66]
    assert all(p * scale == pytest.approx(64) for p, scale in steps)
    assert gate.pending == 0


class _Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def test_trainer_glue_gates_and_rescales_the_optimizer_step():
    """The wrapped preprocess_batch resizes to the batch's size and feeds the gate (following Ultralytics' warm-up
    ramp of `accumulate`); the wrapped optimizer_step steps only when the gate is ready, on a rescaled gradient."""
    stepped = []

    def ultralytics_step(self: SimpleNamespace) -> None:
        stepped.append(float(self.model.w.grad))
        self.model.w.grad = None

    preprocess = ms.make_preprocess_batch(lambda self, batch: batch)
    optimizer_step = ms.make_optimizer_step(ultralytics_step)
    sampler = VariableBatchSampler(100, size_batches([64, 96, 128], 96, 4), 96)
    args = SimpleNamespace(time=None)
    trainer = SimpleNamespace(model=_Model(), args=args, batch_size=4, epochs=1, accumulate=2)  # 8 images per step
    setattr(trainer, ms._RUN, ms._Run(loader=None, sampler=sampler))
    for n, size, accumulate in [(9, 64, None), (2, 128, None), (4, 96, 4), (9, 64, None), (9, 64, None)]:
        if accumulate:
            trainer.accumulate = accumulate  # Ultralytics' warm-up assigns the next value (target 16 images)
        mark = (sampler.token, 0, 0, size)
        batch = preprocess(trainer, {"img": torch.rand(n, 3, 96, 96), KEY: (mark,) * n})
        assert batch["img"].shape == (n, 3, size, size) and KEY not in batch
        assert trainer.accumulate is ms._EVERY  # Ultralytics' loop now calls optimizer_step after every batch
        grad = trainer.model.w.grad
        trainer.model.w.grad = torch.tensor([float(n)]) + (0 if grad is None else grad)  # per-image sum loss
        optimizer_step(trainer)
    # 9 >= 8: step on 9 images scaled to 8; then 2 + 4 + 9 = 15 < 16; + 9 = 24: step scaled to 16
    assert stepped == [pytest.approx(8.0), pytest.approx(16.0)]
    assert ms.run_state(trainer).steps == 2 and ms.run_state(trainer).sizes == [64, 128, 96, 64, 64]


# ---------------------------------------------------------------------------------- glue with a real loader
class _Images(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"img": torch.zeros(3, 8, 8, dtype=torch.uint8), "index": i}

    @staticmethod
    def collate_fn(samples: list[dict]) -> dict:
        return {k: tuple(s[k] for s in samples) for k in samples[0]}


def _trainer(seed: int = 0) -> SimpleNamespace:
    callbacks: dict = defaultdict(list)
    args = SimpleNamespace(imgsz=96, seed=seed, time=None)
    trainer = SimpleNamespace(args=args, stride=32, callbacks=callbacks, epoch=0, epochs=5, batch_size=4, accumulate=1)
    trainer.add_callback = lambda event, fn: callbacks[event].append(fn)
    return trainer


def _epochs(workers: int, start: int, stop: int, reset_at: int = -1, redo_at: int = -1) -> tuple[dict, Any]:
    """Ultralytics' epoch loop over its InfiniteDataLoader: per epoch, the (epoch, position, size) marks and the
    dataset indices of every batch trained on. 9 images make 5 batches: fewer than 2 workers prefetch (8)."""
    trainer = _trainer()
    loader = build_dataloader(_Images(9), batch=4, workers=workers, shuffle=True, rank=-1)
    ms.attach(trainer, loader, 4, (1.0, 2.0))
    preprocess = ms.make_preprocess_batch(lambda self, batch: {**batch, "img": torch.stack(batch["img"]).float()})
    seen, epoch, redone = {}, start, False
    while epoch < stop:
        trainer.epoch = epoch
        for callback in trainer.callbacks["on_train_epoch_start"]:
            callback(trainer)
        if epoch == reset_at:  # close_mosaic
            loader.reset()
        seen[epoch] = []
        for batch in loader:
            mark = batch[KEY][0]
            assert preprocess(trainer, batch)["img"].shape[-1] == mark[3]
            seen[epoch].append((mark[1:], batch["index"]))
        if epoch == redo_at and not redone:  # NaN recovery: the same epoch again
            redone = True
            continue
        epoch += 1
    if hasattr(loader, "close"):
        loader.close()
    return seen, ms.run_state(trainer).sampler


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_delivers_each_epochs_schedule_despite_prefetch_resets_and_resume(workers: int):
    """Prefetching workers draw the next epoch's batches early; close_mosaic resets the loader; a NaN recovery redoes
    an epoch; resume starts at epoch k in a new loader. Every epoch still trains exactly its own schedule."""
    full, sampler = _epochs(workers, 0, 5, reset_at=2, redo_at=3)
    resumed, _ = _epochs(workers, 3, 5)
    for epoch, batches in full.items():
        expected = sampler.batches(epoch)
        assert [(e, p, s) for (e, p, s), _ in batches] == [(epoch, p, s) for p, (s, _) in enumerate(expected)]
        assert [list(i) for _, i in batches] == [i for _, i in expected]
    assert all(resumed[e] == full[e] for e in (3, 4))


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({KEY: "yes"}, "'variable_batch=yes' is invalid. Valid 'variable_batch' values are False (off), True"),
        ({KEY: 1.5}, "'variable_batch=1.5' is invalid"),
        ({KEY: [1.5, 0.5]}, "[min, max] size ratios with 0 < min <= max"),
        ({KEY: True, "multi_scale": 0.5}, "'variable_batch' and 'multi_scale=0.5' both resize training batches"),
        ({KEY: True, "rect": True}, "it cannot be combined with 'rect=True'"),
        ({KEY: True, "task": "classify"}, "'variable_batch' supports training tasks detect, segment, pose, obb"),
    ],
)
def test_bad_values_name_the_key_and_what_is_expected(overrides: dict, message: str):
    with pytest.raises(ValueError) as error:
        get_cfg(overrides=overrides)
    assert message in str(error.value)


def test_accepted_values():
    assert get_cfg().variable_batch is False
    assert ms.parse_value(True) == PAPER_RATIOS and ms.parse_value(0.25) == (0.75, 1.25)
    assert ms.parse_value([0.5, 1.5]) == (0.5, 1.5) and ms.parse_value(0) is None


@pytest.mark.slow
def test_cli_rejects_a_bad_value_before_training(tmp_path: Path):
    proc = subprocess.run(
        [str(YOLO_BIN), "train", f"model={MODEL}", f"data={dataset_yaml('coco8')}", "device=cpu", f"{KEY}=maybe"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "YOLO_OFFLINE": "1"},
    )
    assert proc.returncode != 0
    assert "'variable_batch=maybe' is invalid. Valid 'variable_batch' values are" in proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------ end to end (CLI)
@pytest.fixture(scope="module")
def data32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32 coco128 training images (several batches per epoch at tiny sizes), coco8's 4 validation images."""
    root = tmp_path_factory.mktemp("data32")
    return linked_dataset(root, "coco128", DATASETS / "coco128/images/train2017", DATASETS / "coco8/images/val", 32)


def _args(data: Path, project: Path, name: str, epochs: int = 1) -> list[str]:
    return [
        f"data={data}",
        f"epochs={epochs}",
        "imgsz=96",
        "batch=4",
        "nbs=16",
        "workers=0",
        "device=cpu",
        f"project={project}",
        f"name={name}",
        "exist_ok=True",
        "plots=False",
    ]


def _summaries(log: str) -> list[str]:
    return [line.split("variable_batch:", 1)[1] for line in log.splitlines() if "variable_batch:" in line]


def _expected(epoch: int) -> str:
    """The schedule fingerprint the runs below must log: 32 images, imgsz 96, batch 4, seed 0, one rank."""
    pairs = size_batches(scale_sizes(96, 32, PAPER_RATIOS), 96, 4)
    return VariableBatchSampler(32, pairs, 96, seed=0).fingerprint(epoch)


@pytest.mark.slow
def test_plain_cli_trains_with_variable_batch(data32: Path, tmp_path: Path):
    out = yolo("train", f"model={MODEL}", *_args(data32, tmp_path, "run"), f"{KEY}=True", cwd=tmp_path)
    log = out.stdout + out.stderr
    setup, epoch = _summaries(log)[:2]
    assert "sizes [64, 96, 128] with batches per GPU [9, 4, 2] (pixel budget 4x96^2); 7 batches per epoch" in setup
    assert "epoch 1: 32 images in 7 batches (per size {64: 2, 96: 3, 128: 2})" in epoch
    assert f"schedule {_expected(0)}" in epoch
    assert yaml.safe_load((tmp_path / "run" / "args.yaml").read_text())[KEY] is True
    assert (tmp_path / "run" / "weights" / "best.pt").is_file()


@pytest.mark.slow
def test_resume_restores_the_schedule(data32: Path, tmp_path: Path):
    """Python keyword, interrupted after epoch 1 of 2; `yolo train resume` trains epoch 2 on epoch 2's schedule."""
    code = f"""
        from ultralytics import YOLO
        model = YOLO({str(MODEL)!r})
        def interrupt(trainer):
            raise KeyboardInterrupt("simulated interruption after epoch 1")
        model.add_callback("on_fit_epoch_end", interrupt)
        try:
            model.train(data={str(data32)!r}, epochs=2, imgsz=96, batch=4, nbs=16, workers=0, device="cpu",
                        project={str(tmp_path)!r}, name="run", exist_ok=True, plots=False, val=False, {KEY}=True)
        except KeyboardInterrupt:
            print("interrupted")
        """
    first = python(code, cwd=tmp_path)
    assert "interrupted" in first.stdout
    assert "epoch 1: 32 images in 7 batches" in "".join(_summaries(first.stdout + first.stderr))
    assert f"schedule {_expected(0)}" in "".join(_summaries(first.stdout + first.stderr))
    out = yolo("train", "resume", f"model={tmp_path / 'run' / 'weights' / 'last.pt'}", cwd=tmp_path)
    log = out.stdout + out.stderr
    assert "from epoch 2 to 2 total epochs" in log
    resumed = [s for s in _summaries(log) if "epoch 2:" in s]
    assert resumed and f"schedule {_expected(1)}" in resumed[0] and _expected(1) != _expected(0)


@pytest.mark.slow
def test_segment_trains_with_variable_batch(tmp_path: Path):
    """Masks stay at imgsz / mask_ratio; Ultralytics' segmentation loss matches them to the resized prototypes."""
    seg = DATASETS / "coco8-seg" / "images"
    data = linked_dataset(tmp_path / "data", "coco8-seg", seg / "train", seg / "val")
    out = yolo(
        "train",
        f"model={CFG / 'yolov8n-mobilevit-seg.yaml'}",
        f"data={data}",
        "epochs=1",
        "imgsz=64",
        "batch=2",
        "workers=0",
        "device=cpu",
        f"project={tmp_path}",
        "name=seg",
        "plots=False",
        f"{KEY}=[1.0,2.0]",
        cwd=tmp_path,
    )
    epoch = next(s for s in _summaries(out.stdout + out.stderr) if "epoch 1:" in s)
    assert "4 images in 3 batches (per size {64: 1, 96: 1, 128: 1}), optimizer steps 1," in epoch
