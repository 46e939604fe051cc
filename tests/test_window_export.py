"""The windowed flagship exports as the global one does: a fixed-size ONNX graph at 640 without Resize or shape
arithmetic in the backbone, and a dynamic graph that pads and masks for every size; both match PyTorch.

The exporter wrapper is applied with ``monkeypatch``, as in ``test_export_modes.py``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import CFG, dataset_yaml
from export_check import calibrated_checkpoint
from test_export import check, image, run_onnx, torch_output
from test_export_modes import backbone_prefixes, onnx_nodes, patched_exporter  # noqa: F401 (fixture)
from ultralytics import YOLO

WINDOWED = "yolov8-mobilevit-win.yaml"
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("patched_exporter")]


@pytest.fixture(scope="module")
def windowed_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("windowed")
    return calibrated_checkpoint(CFG / WINDOWED, dataset_yaml("coco8").parent / "images", folder / "windowed.pt")


def test_static_onnx_at_640_matches_pytorch(windowed_pt: Path):
    """At 640 every window layout is fixed (P3 3x3 windows of 14 patches, P4 3x3 of 7, P5 3x3 of 4): padding and masks
    are constants: the backbone has no Resize and no shape arithmetic, and the output matches PyTorch."""
    onnx_file = Path(YOLO(str(windowed_pt)).export(format="onnx", imgsz=640))
    in_backbone = Counter(n.op_type for n in onnx_nodes(onnx_file) if n.name.startswith(backbone_prefixes(WINDOWED)))
    assert in_backbone["Resize"] == in_backbone["Shape"] == 0, in_backbone
    x = image(640, 640)
    model = YOLO(str(windowed_pt)).model
    check("windowed onnx static 640", "onnx", run_onnx(onnx_file, x), torch_output(model, x), 640)


def test_dynamic_onnx_serves_320_to_1280(windowed_pt: Path):
    """One dynamic graph: one window per map at 320 (as global), padded windows at 480x800 and 1280 (P5 at 1280:
    40x40 -> 20x20 patches in 5x5 windows of 4), and an odd P5 (672)."""
    onnx_file = Path(YOLO(str(windowed_pt)).export(format="onnx", imgsz=320, dynamic=True))
    model = YOLO(str(windowed_pt)).model.float().eval()
    for h, w in [(320, 320), (480, 800), (672, 672), (1280, 1280)]:
        x = image(h, w)
        check(f"windowed onnx dynamic {h}x{w}", "onnx", run_onnx(onnx_file, x), torch_output(model, x), max(h, w))
