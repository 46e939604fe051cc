"""Training and validation of one model on the shared recipe: throughput, what it started from, mAP, COCO metrics
and the dense tasks' metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import task_metrics

# Train arguments that also apply to the validation after training.
VAL_KEYS = ("workers", "plots", "half", "single_cls", "classes")


class EpochClock:
    """Ultralytics callbacks that time each training epoch (batches only; the validation after it is excluded)."""

    def __init__(self) -> None:
        self.epochs: list[tuple[int, float]] = []  # (images, seconds)

    def start(self, trainer: Any) -> None:
        self.t0 = time.perf_counter()

    def end(self, trainer: Any) -> None:
        if getattr(trainer.device, "type", "") == "cuda":
            import torch

            torch.cuda.synchronize(trainer.device)
        self.epochs.append((len(trainer.train_loader.dataset), time.perf_counter() - self.t0))

    def images_per_s(self) -> float | None:
        """Over every epoch but the first (data loader start-up, caches), or the first when it is the only one."""
        timed = self.epochs[1:] or self.epochs
        seconds = sum(s for _, s in timed)
        return sum(n for n, _ in timed) / seconds if seconds > 0 else None


def train_and_val(
    spec: str,
    out_dir: Path,
    data: str,
    train: dict[str, Any],
    pretrained: str = "none",
    progress: Callable[[str], None] = lambda phase: None,
) -> dict[str, Any]:
    """Train one model on the shared recipe under the pretraining policy (:mod:`yolo_mobilevit.tools.pretraining`), then validate its
    best.pt; throughput, what the model started from, and accuracy."""
    import torch
    from ultralytics import YOLO

    from ..pretraining import train as train_with_policy

    progress("train")
    model = YOLO(spec)
    clock = EpochClock()
    model.add_callback("on_train_epoch_start", clock.start)
    model.add_callback("on_train_epoch_end", clock.end)
    start = train_with_policy(model, pretrained, data=data, project=str(out_dir), name="train", exist_ok=True, **train)
    train_threads = torch.get_num_threads()
    trainer = model.trainer
    best = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
    res: dict[str, Any] = {
        "train_img_s": clock.images_per_s(),
        "train_epochs_timed": max(1, len(clock.epochs) - 1) if clock.epochs else 0,
        "train_images": clock.epochs[0][0] if clock.epochs else None,
        "train_threads": train_threads,
        "weights": str(best),
        "pretrained": start.description,
        "pretrained_loaded": start.loaded,
        "pretrained_problem": start.problem,
    }
    return res | validate(best, out_dir, data, train, progress)


def validate(
    weights: Path,
    out_dir: Path,
    data: str,
    settings: dict[str, Any],
    progress: Callable[[str], None] = lambda phase: None,
) -> dict[str, Any]:
    """mAP50 and mAP50-95 of ``YOLO(weights).val()`` and the COCO metrics (:func:`coco_metrics`) on ``data``'s val
    split, at the recipe's ``imgsz`` and device (and its ``single_cls``, ``classes``, ... where given)."""
    from ultralytics import YOLO

    progress("val")
    val = {k: settings[k] for k in VAL_KEYS if k in settings}
    metrics = YOLO(weights).val(
        data=data,
        imgsz=settings["imgsz"],
        device=settings.get("device"),
        project=str(out_dir),
        name="val",
        exist_ok=True,
        **val,
    )
    box = getattr(metrics, "box", None)
    if box is None:
        return task_metrics.from_val(metrics)  # semantic / depth: mIoU, delta1, ...
    progress("COCO eval")
    return {"map50": float(box.map50), "map50_95": float(box.map), **coco_metrics(weights, out_dir, data, settings)}


def coco_metrics(weights: Path, out_dir: Path, data: str, train: dict[str, Any]) -> dict[str, Any]:
    """COCO-standard AP, AP50, AP75, APs, APm, APl, AR100 of ``weights`` (:mod:`yolo_mobilevit.tools.cocoeval`), keys ``coco_<metric>``."""
    from ..cocoeval import run

    settings = {"imgsz": train["imgsz"], "single_cls": bool(train.get("single_cls", False))}
    settings |= {"device": train["device"]} if train.get("device") else {}
    report = run(str(weights), data, project=str(out_dir), name="cocoeval", exist_ok=True, **settings)
    return {f"coco_{k}": v for k, v in report["metrics"].items()}
