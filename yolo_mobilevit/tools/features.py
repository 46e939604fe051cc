"""Feature maps of a built Ultralytics model: the backbone's P3/P4/P5 (or the maps its Detect head consumes)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn


def _layers(model: nn.Module) -> tuple[nn.Module, nn.Sequential]:
    """(the Ultralytics ``nn`` model, its layer Sequential) from a ``YOLO`` object or an ``nn`` model."""
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module) and not isinstance(inner, nn.Sequential):  # a YOLO / Model wrapper
        model = inner
    layers = getattr(model, "model", None)
    if not isinstance(layers, nn.Sequential):
        raise TypeError(f"expected an Ultralytics model (YOLO or DetectionModel-like), got {type(model).__name__}")
    return model, layers


def _level(image_size: int, map_size: int) -> int:
    """Pyramid level (log2 of the stride) of a map, robust to the ceil rounding of odd sizes."""
    return round(math.log2(image_size / map_size))


def _n_backbone(model: nn.Module, layers: nn.Sequential) -> int:
    return len(model.yaml["backbone"]) if isinstance(getattr(model, "yaml", None), dict) else len(layers) - 1


def _backbone_taps(model: nn.Module, layers: nn.Sequential, level_of: dict[int, int]) -> dict[int, int]:
    """Per level, the last backbone layer at that level, preferring plugin stage outputs over YOLO's own
    blocks (SPPF, C2PSA) that configs append to the backbone."""
    from ..modules import YamlModule

    taps: dict[int, int] = {}
    for i, level in sorted(level_of.items()):
        current = taps.get(level)
        if i < _n_backbone(model, layers) and (
            current is None or isinstance(layers[i], YamlModule) or not isinstance(layers[current], YamlModule)
        ):
            taps[level] = i
    return taps


def backbone_features(
    model: nn.Module,
    images: torch.Tensor,
    levels: tuple[int, ...] = (3, 4, 5),
    source: Literal["backbone", "head"] = "backbone",
) -> dict[str, torch.Tensor]:
    """Feature maps of ``images`` (B, 3, H, W; [0, 1] RGB as Ultralytics feeds) through an Ultralytics model.

    ``source="backbone"``: for each pyramid level (P3 = stride 8 ...), the output of the last backbone layer at
    that stride, preferring plugin stages (so a config's SPPF is skipped: these are the maps a reference
    backbone's ``features_only`` returns). ``source="head"``: the maps the final Detect/Segment head consumes.
    Returns ``{"P3": (B, C3, H/8, W/8), "P4": ..., "P5": ...}`` (ceil for odd sizes), in level order.
    Runs in the model's current mode; wrap in ``torch.no_grad()`` and call ``model.eval()`` for inference.

    Example::

        feats = backbone_features(YOLO("runs/detect/train/weights/best.pt"), torch.rand(1, 3, 640, 640))
        feats["P5"].shape  # (1, 512, 20, 20) for cfg/yolov8-mobilevitv2.yaml
    """
    model, layers = _layers(model)
    if source == "head":
        f = layers[-1].f
        head_inputs = [j if j >= 0 else len(layers) - 1 + j for j in (f if isinstance(f, (list, tuple)) else [f])]
        last = max(head_inputs)
    else:
        last = _n_backbone(model, layers) - 1
    y: list[torch.Tensor] = []  # every layer's output, as Ultralytics' forward indexes them by ``m.f``
    x = images
    for m in layers[: last + 1]:
        if m.f != -1:
            x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
        x = m(x)
        y.append(x)
    maps = ((i, t) for i, t in enumerate(y) if isinstance(t, torch.Tensor) and t.dim() == 4)
    level_of = {i: _level(images.shape[-2], t.shape[-2]) for i, t in maps}
    if source == "head":
        taps = {level_of[j]: j for j in head_inputs}
    else:
        taps = _backbone_taps(model, layers, level_of)
    missing = [lv for lv in levels if lv not in taps]
    if missing:
        raise ValueError(f"no {source} layer at level(s) {missing}; found levels {sorted(taps)}")
    return {f"P{lv}": y[taps[lv]] for lv in levels}


__all__ = ["backbone_features"]
