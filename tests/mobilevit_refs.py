"""timm MobileViT references for the v2, conversion and parity tests: random weights with non-trivial norm
statistics, saved as a plain state_dict, and their stage outputs."""

from __future__ import annotations

import functools
from pathlib import Path

import timm
import torch
from conftest import CFG
from helpers import randomize_norms
from helpers import relative_error as rel_err  # noqa: F401
from torch import nn

#: timm name -> plugin config carrying the same backbone
CONFIGS = {
    "mobilevit_xxs": "yolov8-mobilevit-xxs.yaml",
    "mobilevit_xs": "yolov8-mobilevit.yaml",
    "mobilevit_s": "yolov8-mobilevit-s.yaml",
    "mobilevitv2_050": "yolov8-mobilevitv2-050.yaml",
    "mobilevitv2_075": "yolov8-mobilevitv2-075.yaml",
    "mobilevitv2_100": "yolov8-mobilevitv2.yaml",
    "mobilevitv2_125": "yolov8-mobilevitv2-125.yaml",
    "mobilevitv2_150": "yolov8-mobilevitv2-150.yaml",
    "mobilevitv2_175": "yolov8-mobilevitv2-175.yaml",
    "mobilevitv2_200": "yolov8-mobilevitv2-200.yaml",
}


def config(name: str) -> Path:
    return CFG / CONFIGS[name]


@functools.cache
def reference(name: str) -> nn.Module:
    """timm ``name`` with seeded random weights (incl. norm statistics), eval mode."""
    torch.manual_seed(0)
    return randomize_norms(timm.create_model(name)).eval()


#: what a detection config leaves of a timm classifier: the head, and MobileViT v1's final 1x1 conv (v2 has none)
NOT_IN_DETECT_CONFIGS = ("head.", "final_conv.")


def backbone_counts(name: str) -> tuple[int, int]:
    """(state-dict tensors, parameters) of timm ``name`` that a detection config of the same backbone loads."""
    model = reference(name)
    tensors = sum(not k.startswith(NOT_IN_DETECT_CONFIGS) for k in model.state_dict())
    params = sum(p.numel() for k, p in model.named_parameters() if not k.startswith(NOT_IN_DETECT_CONFIGS))
    return tensors, params


def save_reference(name: str, folder: Path) -> Path:
    path = folder / f"{name}.pth"
    if not path.exists():
        torch.save(reference(name).state_dict(), path)
    return path


def features_only(name: str) -> nn.Module:
    """timm's ``features_only`` model of ``name`` carrying the reference weights (its keys say ``stages_N``)."""
    feats = timm.create_model(name, features_only=True, out_indices=(2, 3, 4)).eval()
    state = {k.replace("stages.", "stages_", 1): v for k, v in reference(name).state_dict().items()}
    feats.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})
    return feats


def timm_p3_p5(feats: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """P3/P4/P5 of a ``features_only`` model: its stride-8/16 outputs and the last stage's output (for v1,
    features_only's stride-32 map is ``final_conv``, which the configs do not use; for v2 that is Identity)."""
    taps: list[torch.Tensor] = []
    handle = feats.stages_4.register_forward_hook(lambda m, i, o: taps.append(o))
    try:
        p3, p4, last = feats(images)
    finally:
        handle.remove()
    if isinstance(feats.final_conv, nn.Identity):
        assert torch.equal(last, taps[0])
    return [p3, p4, taps[0]]
