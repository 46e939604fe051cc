"""Export modes (``yolo_mobilevit.export``): fixed-size exports trace MobileViT blocks on even maps without the resize
path, dynamic ones keep one graph for every size, and CoreML's 4-D patch layout equals ``pixel_unshuffle``'s.

The exporter wrapper is applied with ``monkeypatch`` here, as the plugin's integration table applies it in every
interpreter (``Exporter.__call__``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import CFG, dataset_yaml
from export_check import calibrated_checkpoint
from test_export import DYNAMIC_SIZES, check, image, run_onnx, torch_output
from ultralytics import YOLO
from ultralytics.engine.exporter import Exporter

from yolo_mobilevit.export import ExportMode, export_mode, exporting, make_exporter_call, mode_for
from yolo_mobilevit.modules.mobilevit import (
    MobileViTBlock,
    fold_patches,
    from_patches,
    needs_resize,
    to_patches,
    unfold_patches,
)
from yolo_mobilevit.modules.mobilevitv2 import MobileViTv2Block

FLAGSHIP = "yolov8-mobilevit.yaml"
COREML = ExportMode(static=True, four_d_patches=True)


@pytest.fixture
def patched_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Exporter, "__call__", make_exporter_call(Exporter.__call__))


@pytest.mark.parametrize("shape", [(1, 8, 4, 6), (2, 96, 20, 28), (3, 5, 2, 2)])
def test_four_d_patches_equal_pixel_unshuffle_layout(shape: tuple[int, ...]):
    x = torch.randn(shape)
    expected, grid = to_patches(x)
    sequences, _ = unfold_patches(x)
    with exporting(COREML):
        got, got_grid = to_patches(x)
        assert torch.equal(got, expected) and got_grid == grid
        assert torch.equal(from_patches(got, grid), x)
        assert torch.equal(fold_patches(*unfold_patches(x)), x)
        assert torch.equal(unfold_patches(x)[0], sequences)


def traced_ops(module: torch.nn.Module, x: torch.Tensor) -> Counter:
    with torch.no_grad():
        graph = torch.jit.trace(module, x, check_trace=False).inlined_graph
    return Counter(node.kind() for node in graph.nodes())


@pytest.mark.parametrize("block", [MobileViTBlock(16, 24, 1, heads=2), MobileViTv2Block(16, 8, 1)])
def test_static_trace_takes_the_direct_path_for_even_maps(block: torch.nn.Module):
    block.eval()
    even, odd = torch.randn(1, 16, 8, 12), torch.randn(1, 16, 7, 12)
    assert needs_resize(8, 12) is False and needs_resize(7, 12) is True  # eager: only odd maps
    assert traced_ops(block, even)["aten::upsample_bilinear2d"] == 2  # no mode: one graph for every size
    with exporting(ExportMode(static=False)):
        assert traced_ops(block, even)["aten::upsample_bilinear2d"] == 2
    with exporting(ExportMode(static=True)):
        assert traced_ops(block, even)["aten::upsample_bilinear2d"] == 0
        assert traced_ops(block, odd)["aten::upsample_bilinear2d"] == 2  # odd maps still need the resize
    with exporting(COREML):
        ops = traced_ops(block, even)
        assert ops["aten::pixel_unshuffle"] == ops["aten::pixel_shuffle"] == 0
        with torch.no_grad():
            traced = torch.jit.trace(block, even, check_trace=False)
    with torch.no_grad():
        torch.testing.assert_close(traced(even), block(even), rtol=0, atol=1e-5)


def test_mode_for_formats():
    assert mode_for("onnx", dynamic=False) == ExportMode(static=True, four_d_patches=False)
    assert mode_for("onnx", dynamic=True) == ExportMode(static=False, four_d_patches=False)
    assert mode_for("CoreML", dynamic=False) == COREML
    assert mode_for("mlmodel", dynamic=True) == ExportMode(static=False, four_d_patches=True)
    for fmt in ("saved_model", "pb", "tfjs", "edgetpu"):  # onnx2tf fails on DepthToSpace (MobileViT-XXS, measured)
        assert mode_for(fmt, dynamic=False) == COREML, fmt


def test_exporter_call_runs_under_the_mode_and_restores_it():
    seen = []

    class Args:
        format, dynamic = "coreml", False

    class FakeExporter:
        args = Args()

    def original(self, model=None):
        seen.append(export_mode())
        return "exported"

    assert make_exporter_call(original)(FakeExporter()) == "exported"
    assert seen == [COREML] and export_mode() is None


def onnx_nodes(path: Path) -> list:
    import onnx

    return list(onnx.load(str(path)).graph.node)


def backbone_prefixes(cfg: str) -> tuple[str, ...]:
    import yaml

    n = len(yaml.safe_load((CFG / cfg).read_text())["backbone"])
    return tuple(f"/model.{i}/" for i in range(n))


@pytest.fixture(scope="module")
def flagship_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("flagship")
    return calibrated_checkpoint(CFG / FLAGSHIP, dataset_yaml("coco8").parent / "images", folder / "flagship.pt")


@pytest.mark.slow
def test_static_onnx_at_640_has_no_resize_in_the_backbone(flagship_pt: Path, patched_exporter: None):
    """At 640 every MobileViT map is even (80, 40, 20): the fixed-size graph has no Resize and no shape arithmetic
    in the backbone, and still matches PyTorch."""
    onnx_file = Path(YOLO(str(flagship_pt)).export(format="onnx", imgsz=640))
    backbone = backbone_prefixes(FLAGSHIP)
    nodes = onnx_nodes(onnx_file)
    in_backbone = Counter(n.op_type for n in nodes if n.name.startswith(backbone))
    assert in_backbone["Resize"] == 0, in_backbone
    assert in_backbone["Shape"] == in_backbone["Gather"] == 0, in_backbone
    assert sum(n.op_type == "Resize" for n in nodes) == 2  # the neck's two nearest-neighbour upsamples
    x = image(640, 640)
    check(
        "flagship onnx static 640", "onnx", run_onnx(onnx_file, x), torch_output(YOLO(str(flagship_pt)).model, x), 640
    )


@pytest.mark.slow
def test_dynamic_onnx_keeps_one_graph_for_every_size(flagship_pt: Path, patched_exporter: None):
    """A dynamic export keeps the resize path, so one graph serves odd maps too. (Every family's dynamic CLI export is
    checked at all of test_export's DYNAMIC_SIZES: 96, 160, 672 and 352x640; here the non-square one is enough.)"""
    onnx_file = Path(YOLO(str(flagship_pt)).export(format="onnx", imgsz=160, dynamic=True))
    in_backbone = Counter(n.op_type for n in onnx_nodes(onnx_file) if n.name.startswith(backbone_prefixes(FLAGSHIP)))
    assert in_backbone["Resize"] == 2 * 3  # two per MobileViT block, one block per stage
    model = YOLO(str(flagship_pt)).model.float().eval()
    for h, w in [size for size in DYNAMIC_SIZES if size[0] != size[1]]:
        x = image(h, w)
        check(f"flagship onnx dynamic {h}x{w}", "onnx", run_onnx(onnx_file, x), torch_output(model, x), max(h, w))
