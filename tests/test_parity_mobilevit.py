"""Converted timm weights reproduce timm's P3/P4/P5 through the plugin's Ultralytics model (fp32, eval)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from mobilevit_refs import config, features_only, rel_err, save_reference, timm_p3_p5
from ultralytics.nn.tasks import load_checkpoint

from yolo_mobilevit.convert import convert_checkpoint
from yolo_mobilevit.tools.features import backbone_features

VARIANTS = ["mobilevit_xxs", "mobilevit_xs", "mobilevit_s", "mobilevitv2_050", "mobilevitv2_100", "mobilevitv2_200"]
TOLERANCE = 1e-5


@functools.cache
def converted(name: str, folder: Path) -> torch.nn.Module:
    """The plugin model loaded from a checkpoint converted from a saved random-weight timm state_dict."""
    output = folder / f"{name}-converted.pt"
    convert_checkpoint(save_reference(name, folder), config(name), output, verbose=False)
    model, _ = load_checkpoint(output)
    return model.float().eval()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("parity")


@pytest.mark.parametrize("size", [256, 640])
@pytest.mark.parametrize("name", VARIANTS)
def test_features_match_timm(name: str, size: int, folder: Path) -> None:
    model = converted(name, folder)
    images = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        ours = backbone_features(model, images)
        ref = timm_p3_p5(features_only(name), images)
    for (level, a), b in zip(ours.items(), ref):
        assert a.shape == b.shape, (level, a.shape, b.shape)
        assert rel_err(a, b) < TOLERANCE, (name, size, level, rel_err(a, b))


def test_head_source_returns_detect_inputs(folder: Path) -> None:
    model = converted("mobilevitv2_050", folder)
    with torch.no_grad():
        feats = backbone_features(model, torch.rand(1, 3, 160, 96), source="head")
    assert [tuple(f.shape[-2:]) for f in feats.values()] == [(20, 12), (10, 6), (5, 3)]
    assert [f.shape[1] for f in feats.values()] == [64, 128, 256]  # the YOLOv8n neck's widths


@pytest.mark.parametrize("hw", [(672, 672), (200, 328)])
def test_v1_odd_maps_match_timm(hw: tuple[int, int], folder: Path) -> None:
    """v1 resizes odd maps for the transformer and back exactly as timm does: P5 21x21 at 672, every level odd
    at 200x328, and still equal to the reference."""
    model = converted("mobilevit_xxs", folder)
    images = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = backbone_features(model, images)
        ref = timm_p3_p5(features_only("mobilevit_xxs"), images)
    assert ours["P5"].shape[-1] % 2 == 1  # the case that needs the resize
    for (level, a), b in zip(ours.items(), ref):
        assert a.shape == b.shape, (level, a.shape, b.shape)
        assert rel_err(a, b) < TOLERANCE, (hw, level, rel_err(a, b))
