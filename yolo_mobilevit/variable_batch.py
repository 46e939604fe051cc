"""MobileViT's variable-batch multi-scale training for Ultralytics (``variable_batch=True``).

Each training batch draws one ``(size, batch)`` pair so that every batch holds about the same number of pixels:
``batch_s = max(1, floor(batch * imgsz**2 / s**2))`` per GPU, sizes from a range around ``imgsz`` (by default the
paper's 0.625 ... 1.25 x imgsz in 5 scales, snapped to the model stride: 160/192/256/288/320 at 256, which with
batch 128 gives the published 327/227/128/101/81). The dataset still letterboxes at ``imgsz``; the batch is
resized to its size on the device, as Ultralytics' own ``multi_scale`` does.

- Schedule: per epoch, a permutation of the images and an order of batches drawn from ``(seed, epoch)`` only, so
  every DDP rank and a resumed run compute the same one. Each epoch holds the same multiset of pairs (the sizes in
  turn, nominal size first; one batch trimmed so the epoch holds every image exactly once).
- DDP: the permutation is padded to a multiple of the world size (as ``DistributedSampler`` does, so at most
  ``world - 1`` images repeat), every step has one size and one per-rank batch on every rank, and rank ``r`` takes
  every ``world``-th index of the step's global batch.
- Learning rate: Ultralytics' detection losses are per-image sums and its optimizer steps every
  ``accumulate = round(nbs / batch)`` batches. Here the optimizer steps once the images accumulated since the last
  step reach ``accumulate * batch`` (``nbs`` when ``batch`` divides it; the warm-up ramp of ``accumulate`` is kept),
  and the summed gradient is rescaled to exactly that many images first. Weight decay, EMA, AMP and clipping are
  Ultralytics' own (its ``optimizer_step`` runs unchanged).
- Hooks: the integration's patch table adds the key to Ultralytics' default config (validated by
  :func:`check_args` inside ``check_cfg``) and wraps the trainer methods with the factories at the end of this
  module; the wrappers pass through unless the trainer's config switches the key on. Supported: the YOLO detect,
  segment, pose, obb and semantic trainers (semantic masks stay at ``imgsz``: Ultralytics' semantic loss resizes the
  logits to the masks, as under its own ``multi_scale``); classify, depth and other trainers raise.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Sampler

from .integration import VARIABLE_BATCH

KEY = VARIABLE_BATCH
PAPER_RATIOS = (0.625, 1.25)  # MobileViT: 160 ... 320 around 256 (cvnets' variable-batch sampler)
N_SCALES = 5  # cvnets' default number of scales
MIN_STRIDES = 2  # smallest side: 2 x the model stride, so P5 is at least 2x2 (BatchNorm and 2x2 patches)
SUPPORTED_TASKS = ("detect", "segment", "pose", "obb", "semantic")
_SUPPORTED_TRAINER_MODULES = frozenset(
    {
        "ultralytics.engine.trainer",
        *(f"ultralytics.models.yolo.{task}.train" for task in SUPPORTED_TASKS),
    }
)
_RUN = "_variable_batch_run"  # per-trainer state attribute
_TOKENS = itertools.count(1)
EXPECTED = (
    "False (off), True (sizes 0.625-1.25 x imgsz, as in MobileViT), a float r in (0, 1) (sizes (1-r)-(1+r) x imgsz) "
    "or [min, max] size ratios with 0 < min <= max, e.g. 'variable_batch=[0.5,1.5]'"
)


# --------------------------------------------------------------------------------------------- the key's value
def parse_value(value: Any) -> tuple[float, float] | None:
    """``variable_batch`` value -> (min, max) ratio of ``imgsz``, or None when off. Raises naming the key."""
    if value is None or value is False:
        return None
    if value is True:
        return PAPER_RATIOS
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value == 0:
            return None
        if 0 < value < 1:
            return 1.0 - float(value), 1.0 + float(value)
    elif (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        and 0 < value[0] <= value[1]
    ):
        return float(value[0]), float(value[1])
    raise ValueError(f"'{KEY}={value}' is invalid. Valid '{KEY}' values are {EXPECTED}.")


def check_args(cfg: dict) -> tuple[float, float] | None:
    """Check the key and, for training, what it cannot be combined with. Returns the parsed ratios."""
    ratios = parse_value(cfg.get(KEY))
    if ratios is None or cfg.get("mode", "train") != "train":
        return ratios
    task = cfg.get("task") or "detect"
    if task not in SUPPORTED_TASKS:
        raise ValueError(
            f"'{KEY}' supports training tasks {', '.join(SUPPORTED_TASKS)}, not task={task}: "
            f"remove '{KEY}' (or use 'multi_scale' if your task supports it)."
        )
    if cfg.get("multi_scale"):
        raise ValueError(
            f"'{KEY}' and 'multi_scale={cfg['multi_scale']}' both resize training batches; set one of them "
            f"('multi_scale=0.0' or '{KEY}=False')."
        )
    if cfg.get("rect"):
        raise ValueError(f"'{KEY}' trains square batches; it cannot be combined with 'rect=True'.")
    return ratios


# ------------------------------------------------------------------------------------------- the schedule (pure)
def scale_sizes(imgsz: int, stride: int, ratios: tuple[float, float], n: int = N_SCALES) -> list[int]:
    """``n`` sides evenly spaced over ``ratios * imgsz``, snapped to the nearest multiple of ``stride`` (at least
    ``MIN_STRIDES * stride``), unique and sorted. (256, 32, (0.625, 1.25)) -> [160, 192, 256, 288, 320]."""
    points = np.linspace(ratios[0] * imgsz, ratios[1] * imgsz, n)
    return sorted({max(MIN_STRIDES * stride, int(p + stride / 2) // stride * stride) for p in points})


def size_batches(sizes: Sequence[int], imgsz: int, batch: int) -> list[tuple[int, int]]:
    """(size, batch) pairs at a constant pixel budget: ``max(1, floor(batch * imgsz**2 / size**2))``."""
    return [(s, max(1, math.floor(batch * imgsz**2 / s**2))) for s in sizes]


def plan_epoch(pairs: Sequence[tuple[int, int]], n_images: int, imgsz: int) -> list[tuple[int, int]]:
    """The epoch's (size, batch) multiset for ``n_images`` (one rank's share): the pairs in turn, nearest to
    ``imgsz`` first, until they hold every image; the last batch is trimmed to fit exactly. Epoch independent."""
    cycle = sorted(pairs, key=lambda p: (abs(p[0] - imgsz), p[0]))
    plan, total = [], 0
    for size, batch in itertools.cycle(cycle):
        if total >= n_images:
            break
        batch = min(batch, n_images - total)
        plan.append((size, batch))
        total += batch
    return plan


class MarkedBatch(list):
    """A batch of dataset indices that carries ``mark = (token, epoch, position, size)`` to the collated batch."""

    mark: tuple[int, int, int, int]


class VariableBatchSampler(Sampler):
    """Batch sampler: yields ``MarkedBatch`` index lists, one (size, batch) pair per step.

    The schedule of epoch ``e`` depends only on ``(seed, e)`` and the sampler's arguments: every rank and a resumed
    run compute the same one. ``epoch`` is the epoch of the next pass; each ``__iter__`` call advances it.
    """

    def __init__(
        self,
        n_images: int,
        pairs: Sequence[tuple[int, int]],
        imgsz: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if n_images < 1 or not pairs or not 0 <= rank < world_size:
            raise ValueError(f"VariableBatchSampler: n_images={n_images}, pairs={pairs}, rank {rank} of {world_size}")
        self.n_images, self.pairs, self.imgsz = n_images, list(pairs), imgsz
        self.seed, self.rank, self.world_size = int(seed), rank, world_size
        self.per_rank = math.ceil(n_images / world_size)  # DistributedSampler's padding
        self.plan = plan_epoch(self.pairs, self.per_rank, imgsz)
        self.token = next(_TOKENS)
        self.epoch = 0
        self.first_pass: int | None = None  # epoch of the first pass started since the last rewind

    def __len__(self) -> int:
        return len(self.plan)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _draw(self, epoch: int) -> tuple[list[tuple[int, int]], np.ndarray]:
        """Epoch ``epoch``'s order of steps and permutation of the images, from ``(seed, epoch)`` only."""
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, epoch])
        steps = [self.plan[j] for j in rng.permutation(len(self.plan))]
        return steps, rng.permutation(self.n_images)

    def steps(self, epoch: int) -> list[tuple[int, int]]:
        """(size, per-rank batch) per step of epoch ``epoch``; the same on every rank."""
        return self._draw(epoch)[0]

    def batches(self, epoch: int) -> list[tuple[int, list[int]]]:
        """This rank's (size, indices) per step of epoch ``epoch``: every ``world_size``-th index of the step's
        global batch, from the permutation padded to ``per_rank * world_size`` with its own first indices."""
        steps, images = self._draw(epoch)
        pad = self.per_rank * self.world_size - self.n_images
        images = np.concatenate([images, images[:pad]]).tolist()
        out, start = [], 0
        for size, batch in steps:
            chunk = images[start : start + batch * self.world_size]
            out.append((size, chunk[self.rank :: self.world_size]))
            start += batch * self.world_size
        return out

    def fingerprint(self, epoch: int) -> str:
        """Short digest of this rank's schedule for ``epoch`` (sizes and indices), for logs and tests."""
        return hashlib.sha1(repr(self.batches(epoch)).encode()).hexdigest()[:10]

    def __iter__(self) -> Iterator[MarkedBatch]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        if self.first_pass is None:
            self.first_pass = epoch
        for position, (size, indices) in enumerate(self.batches(epoch)):
            batch = MarkedBatch(indices)
            batch.mark = (self.token, epoch, position, size)
            yield batch


@dataclass
class StepGate:
    """Optimizer cadence by images: step once ``pending >= target`` images were accumulated, after rescaling
    the summed gradient by ``target / pending`` (so every step carries exactly ``target`` images' worth)."""

    target: int = 1
    pending: int = 0

    def add(self, images: int) -> None:
        self.pending += images

    @property
    def ready(self) -> bool:
        return self.pending >= self.target

    def take(self) -> float:
        """The gradient scale for this step; starts a new accumulation."""
        scale, self.pending = self.target / self.pending, 0
        return scale


# -------------------------------------------------------------------------------------------- Ultralytics glue
class _EveryIteration(int):
    """``trainer.accumulate`` while the mode is on: Ultralytics' loop calls ``optimizer_step`` every iteration and
    the wrapped ``optimizer_step`` decides (an ``int`` subclass so Ultralytics' own assignments are recognised)."""


_EVERY = _EveryIteration(1)


class _MarkedFetch:
    """``dataset.__getitems__``: torch's fetcher hands it the whole index list, so the batch's mark reaches the
    samples (and, collated, the batch) in worker processes too."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __call__(self, indices: Sequence[int]) -> list[dict]:
        samples = [self.dataset[i] for i in indices]
        mark = getattr(indices, "mark", None)
        if mark is not None:
            for sample in samples:
                sample[KEY] = mark
        return samples


def _dist() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class _Run:
    """Per-trainer state: the sampler, its loader, the step gate and this epoch's record."""

    def __init__(self, loader: Any, sampler: VariableBatchSampler) -> None:
        self.loader, self.sampler = loader, sampler
        self.gate = StepGate()
        self.accumulate = 1  # Ultralytics' current accumulate (nominal, or its warm-up ramp)
        self.epoch = 0  # the trainer's epoch
        self.last: tuple[int, int] | None = None  # (epoch, position) of the last batch trained on
        self.sizes: list[int] = []
        self.images = self.steps = 0

    def next_epoch(self) -> int | None:
        """Epoch of the next batch the loader delivers, None when it is mid-pass."""
        if self.last is None:
            return self.sampler.first_pass if self.sampler.first_pass is not None else self.sampler.epoch
        epoch, position = self.last
        return epoch + 1 if position == len(self.sampler) - 1 else None

    def start_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch``'s; drop prefetched batches of another pass (resume, NaN redo)."""
        self.epoch = epoch
        if self.next_epoch() != epoch:
            self.gate.pending = 0  # Ultralytics zeroed the gradients on every path that gets here
            self.loader.reset()
        self.sizes, self.images, self.steps = [], 0, 0

    def on_reset(self) -> None:
        """Before the loader drops its iterator: the new one starts with the trainer's current epoch."""
        self.sampler.set_epoch(self.epoch)
        self.sampler.first_pass, self.last = None, None

    def on_batch(self, trainer: Any, mark: tuple[int, int, int, int], images: int) -> None:
        token, epoch, position, size = mark
        if token != self.sampler.token:  # e.g. a QAT calibration loader
            return
        self.last = (epoch, position)
        self.sizes.append(size)
        self.images += images
        accumulate = getattr(trainer, "accumulate", None)
        if accumulate is not None and accumulate is not _EVERY:
            self.accumulate = int(accumulate)  # Ultralytics (re)assigned it: nominal or warm-up ramp
        trainer.accumulate = _EVERY
        target = self.accumulate * int(trainer.batch_size)
        if not getattr(trainer.args, "time", None):  # as Ultralytics caps accumulate: at least one step per run
            target = min(target, self.sampler.per_rank * self.sampler.world_size * int(trainer.epochs))
        self.gate.target = max(target, 1)
        self.gate.add(images * self.sampler.world_size)

    def summary(self) -> str:
        epoch = self.last[0] if self.last else self.epoch
        counts = ", ".join(f"{s}: {n}" for s, n in sorted(Counter(self.sizes).items()))
        return (
            f"epoch {self.epoch + 1}: {self.images} images in {len(self.sizes)} batches (per size {{{counts}}}), "
            f"optimizer steps {self.steps}, schedule {self.sampler.fingerprint(epoch)}"
        )


def run_state(trainer: Any) -> _Run | None:
    """The variable-batch state of ``trainer`` (None when the mode is off)."""
    return getattr(trainer, _RUN, None)


def _log(message: str) -> None:
    from ultralytics.utils import LOGGER, RANK, colorstr

    if RANK in {-1, 0}:
        LOGGER.info(f"{colorstr(f'{KEY}:')} {message}")


def _on_train_epoch_start(trainer: Any) -> None:
    run = run_state(trainer)
    if run is not None:
        run.start_epoch(trainer.epoch)


def _on_train_epoch_end(trainer: Any) -> None:
    run = run_state(trainer)
    if run is not None:
        _log(run.summary())


def _check_trainer(trainer: Any) -> None:
    for cls in type(trainer).__mro__:
        module = cls.__module__
        if module.startswith("ultralytics.") and module not in _SUPPORTED_TRAINER_MODULES:
            raise ValueError(
                f"'{KEY}' is not supported by {cls.__name__} ({module}); it supports Ultralytics' YOLO "
                f"{', '.join(SUPPORTED_TASKS)} trainers. Remove '{KEY}'."
            )


def attach(trainer: Any, loader: Any, batch_size: int, ratios: tuple[float, float]) -> _Run:
    """Give ``loader`` (the train loader ``get_dataloader`` just built) a variable-batch sampler."""
    from ultralytics.data.build import InfiniteDataLoader

    _check_trainer(trainer)
    imgsz, stride = int(trainer.args.imgsz), int(trainer.stride)
    rank, world = _dist()
    dataset = loader.dataset
    pairs = size_batches(scale_sizes(imgsz, stride, ratios), imgsz, batch_size)
    sampler = VariableBatchSampler(len(dataset), pairs, imgsz, int(trainer.args.seed or 0), rank, world)
    dataset.__getitems__ = _MarkedFetch(dataset)
    repeat = type(loader.batch_sampler) if isinstance(loader, InfiniteDataLoader) else None
    # torch's DataLoader refuses a new batch_sampler once built, and Ultralytics builds the loader inside the trainer
    object.__setattr__(loader, "batch_sampler", repeat(sampler) if repeat else sampler)
    run = _Run(loader, sampler)
    original_reset = getattr(loader, "reset", None)

    def reset() -> None:
        run.on_reset()
        if original_reset is not None:
            original_reset()

    loader.reset = reset
    reset()  # an iterator built before the swap (8.4.0 builds one eagerly) must not serve the old batches
    setattr(trainer, _RUN, run)
    for event, callback in (
        ("on_train_epoch_start", _on_train_epoch_start),
        ("on_train_epoch_end", _on_train_epoch_end),
    ):
        if callback not in trainer.callbacks.get(event, []):
            trainer.add_callback(event, callback)
    budget = f"{batch_size}x{imgsz}^2"
    _log(
        f"sizes {[s for s, _ in pairs]} with batches per GPU {[b for _, b in pairs]} (pixel budget {budget}); "
        f"{len(sampler)} batches per epoch over {world} rank(s), seed {sampler.seed}; the optimizer steps once "
        f"accumulate x batch images are summed (rescaled to exactly that many)"
    )
    return run


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size), bilinear as Ultralytics' multi_scale."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def make_get_dataloader(original: Callable) -> Callable:
    """``get_dataloader`` that gives the train loader the variable-batch sampler when the key is on."""

    def get_dataloader(self: Any, dataset_path: Any, batch_size: int = 16, rank: int = 0, mode: str = "train") -> Any:
        loader = original(self, dataset_path, batch_size=batch_size, rank=rank, mode=mode)
        ratios = parse_value(getattr(self.args, KEY, None))
        if mode == "train" and ratios is not None:
            attach(self, loader, batch_size, ratios)
        return loader

    return get_dataloader


def make_preprocess_batch(original: Callable) -> Callable:
    """``preprocess_batch`` that resizes each variable-batch batch to its drawn size (passes others through)."""

    def preprocess_batch(self: Any, batch: dict) -> dict:
        marks = batch.pop(KEY, None)
        batch = original(self, batch)
        if marks:
            mark = marks[0]
            batch["img"] = _resize(batch["img"], mark[3])
            run = run_state(self)
            if run is not None:
                run.on_batch(self, mark, len(batch["img"]))
        return batch

    return preprocess_batch


def make_optimizer_step(original: Callable) -> Callable:
    """``optimizer_step`` that, under variable_batch, steps once ``accumulate x batch`` images are summed."""

    def optimizer_step(self: Any) -> Any:
        run = run_state(self)
        if run is None:
            return original(self)
        if not run.gate.ready:
            return None  # keep accumulating
        scale = run.gate.take()
        if scale != 1.0:
            with torch.no_grad():
                for p in self.model.parameters():
                    if p.grad is not None:
                        p.grad.mul_(scale)
        run.steps += 1
        return original(self)

    return optimizer_step
