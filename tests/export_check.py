"""What checking an exported model against its PyTorch checkpoint needs, shared by the export tests and
``benchmarks/export_matrix.py`` (test and benchmark code: not part of the package): one config per backbone family, a calibration that makes a random-init model behave
like a trained one numerically, the raw output to compare, and the errors of boxes and scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from yolo_mobilevit.families import export_configs

#: backbone family key -> the config (in ``cfg/``) that stands for it in export checks (its spec's ``export_config``)
FAMILIES = export_configs()


def resized(path: Path, size: int = 160) -> torch.Tensor:
    """An image file as a (3, size, size) RGB tensor in [0, 1], stretched to the square (no letterbox)."""
    import cv2

    img = cv2.resize(cv2.imread(str(path))[:, :, ::-1], (size, size))
    return torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255


def calibrate(model: nn.Module, images: Path) -> None:
    """Make a random-init detector behave like a trained one numerically: BatchNorm statistics measured on the
    ``*.jpg`` files under ``images`` (random init with unit statistics shrinks activations to nothing, so every image
    gives the same output), and a head whose scores and boxes spread (distinct, unsaturated scores: no ties for NMS
    to break differently)."""
    files = sorted(images.rglob("*.jpg"))
    if not files:
        raise FileNotFoundError(f"no *.jpg images under {images} to calibrate BatchNorm statistics on")
    batch = torch.stack([resized(f) for f in files])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration pass
        model.train()(batch)
        model.eval()
        head = model.model[-1]
        for branch in head.cv2:
            branch[-1].weight.mul_(2)
        for branch in head.cv3:  # scores up to ~0.9 on coco8: none saturated at 1.0
            branch[-1].weight.mul_(2)
            branch[-1].bias.fill_(-3.0)


def calibrated_checkpoint(config: str | Path, images: Path, path: Path) -> Path:
    """Build ``config``, :func:`calibrate` it on the images under ``images`` and save it to ``path`` (a checkpoint
    whose exports behave like a trained model's); returns ``path``."""
    from ultralytics import YOLO

    model = YOLO(str(config))
    calibrate(model.model, images)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def torch_output(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The raw (decoded, before NMS) first output of ``model`` on ``x``, as exported models return it."""
    with torch.no_grad():
        out = model(x)
    return (out[0] if isinstance(out, (list, tuple)) else out).numpy()


def errors(got: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """Max |difference| of the decoded boxes (pixels; rows 0-3 of a (B, 4 + classes, anchors) output) and of the
    class scores."""
    if got.shape != expected.shape:
        raise ValueError(f"output shape {got.shape} != {expected.shape}")
    diff = np.abs(got - expected)
    return float(diff[:, :4].max()), float(diff[:, 4:].max())


__all__ = ["FAMILIES", "calibrate", "errors", "resized", "torch_output"]
