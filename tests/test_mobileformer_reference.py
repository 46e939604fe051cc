"""Mobile-Former 151M against an independent reference made with the official Mobile-Former code.

``../shared/reference/mobileformer-official-reference.pt`` holds random weights in the official layout (classifier
included), the official code's 224x224 input, and its outputs: P3, P4, P5 (the map after the last block of each
stride), the final tokens (batch first) and the logits. Nothing here re-derives the official forward: the plugin's
converted models are compared with those tensors directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from yolo_mobilevit.convert import map_weights
from yolo_mobilevit.convert.core import build_model, detect_format
from yolo_mobilevit.tools.features import backbone_features

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference" / "mobileformer-official-reference.pt"
BACKBONE_PREFIXES = ("tokens.", "stem.", "features.")  # the official backbone; the rest is the classifier


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).norm() / theirs.norm()).item()


@pytest.fixture(scope="module")
def reference() -> dict:
    if not REFERENCE.is_file():
        pytest.fail(f"{REFERENCE} (the shared Mobile-Former reference) is missing")
    return torch.load(REFERENCE, map_location="cpu", weights_only=False)


def converted(cfg: str, state_dict: dict[str, torch.Tensor]) -> tuple[torch.nn.Module, int]:
    """The config's model with the reference weights mapped in (eval mode), and how many tensors were mapped."""
    model = build_model(ROOT / "cfg" / cfg)
    mapped, _report = map_weights(state_dict, model, detect_format(state_dict))
    model.load_state_dict(mapped, strict=False)
    return model.eval(), len(mapped)


def test_detect_backbone_maps_and_tokens_equal_the_official_ones(reference):
    state_dict = reference["state_dict"]
    model, count = converted("yolov8-mobileformer-151m.yaml", state_dict)
    assert count == sum(k.startswith(BACKBONE_PREFIXES) for k in state_dict)  # every backbone tensor, no other
    layers = model.model
    last_block = max(
        i for i, m in enumerate(layers[: len(model.yaml["backbone"])]) if type(m).__name__ == "MobileFormerBlock"
    )
    captured = {}
    hook = layers[last_block].register_forward_hook(lambda _m, _a, out: captured.update(tokens=out[1]))
    with torch.no_grad():
        maps = backbone_features(model, reference["input"])
    hook.remove()
    for level in ("P3", "P4", "P5"):
        assert maps[level].shape == reference[level].shape, level
        assert relative_error(maps[level], reference[level]) < 1e-5, level
    assert captured["tokens"].shape == reference["tokens"].shape
    assert relative_error(captured["tokens"], reference["tokens"]) < 1e-5


def test_classifier_logits_equal_the_official_ones(reference):
    """The -cls config's head is the official one: ReLU6 after the head conv's BatchNorm and h-swish after the
    pool (without them the softmax differed by up to 0.012)."""
    state_dict = reference["state_dict"]
    model, count = converted("yolov8-mobileformer-151m-cls.yaml", state_dict)
    assert count == len(state_dict)  # the classifier's tensors land too
    with torch.no_grad():
        probs, logits = model(reference["input"])
    assert logits.shape == reference["logits"].shape
    assert relative_error(logits, reference["logits"]) < 1e-5
    assert (probs - reference["logits"].softmax(1)).abs().max().item() < 1e-6
    assert probs.argmax(1).tolist() == reference["logits"].argmax(1).tolist()
