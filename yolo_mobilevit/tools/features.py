"""Feature maps of a built Ultralytics model: the backbone's P3/P4/P5 (or the maps its Detect head consumes)."""

from __future__ import annotations

from typing import Literal

import torch

from ..layer_info import feature_taps, input_layers, layer_outputs, model_and_layers


def backbone_features(
    model: torch.nn.Module,
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
    model, layers = model_and_layers(model)
    if source == "head":
        head = layers[-1]
        inputs = input_layers(head.f, len(layers) - 1)
        taps = {int(s).bit_length() - 1: j for s, j in zip(head.stride.tolist(), inputs)}  # Detect's strides
    else:
        taps = {int(level[1:]): j for level, j in feature_taps(model).items()}
    y = layer_outputs(layers, images, max(taps.values(), default=-1) + 1)
    missing = [lv for lv in levels if lv not in taps]
    if missing:
        raise ValueError(f"no {source} layer at level(s) {missing}; found levels {sorted(taps)}")
    return {f"P{lv}": y[taps[lv]] for lv in levels}


__all__ = ["backbone_features"]
