"""Windowed MobileViT v1 attention: the paper's output where the map fits one window, padding masked exactly, the
same parameters as the global model (converted timm weights load strictly), traced graphs for every size."""

from __future__ import annotations

import contextlib
import functools
import math
from pathlib import Path

import pytest
import torch
from conftest import CFG
from helpers import relative_error
from mobilevit_refs import save_reference
from ultralytics.nn.tasks import DetectionModel, load_checkpoint

from yolo_mobilevit.convert import convert_checkpoint
from yolo_mobilevit.export import ExportMode, exporting
from yolo_mobilevit.integration import YamlRowError
from yolo_mobilevit.modules.mobilevit import (
    PATCH,
    MobileViTBlock,
    MobileViTStage,
    MultiHeadSelfAttention,
    pretraining_window,
    window_bands,
    window_layout,
)
from yolo_mobilevit.tools.features import backbone_features

WINDOWED = {"yolov8-mobilevit.yaml": "yolov8-mobilevit-win.yaml", "yolo26-mobilevit.yaml": "yolo26-mobilevit-win.yaml"}


def block(window: int, d: int = 32, depth: int = 2) -> MobileViTBlock:
    torch.manual_seed(0)
    return MobileViTBlock(16, d, depth, heads=4, window=window).eval()


@functools.cache
def converted(cfg: str, folder: Path) -> torch.nn.Module:
    """The plugin model of ``cfg`` loaded from a strict conversion of the same random-weight timm mobilevit_xs."""
    output = folder / f"{cfg}.pt"
    convert_checkpoint(save_reference("mobilevit_xs", folder), CFG / cfg, output, strict=True, verbose=False)
    return load_checkpoint(output)[0].float().eval()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("window")


def test_window_layout_covers_with_less_than_one_patch_per_window() -> None:
    for h in range(1, 60):
        for window in (1, 3, 4, 8, 16):
            rows, _, size, _ = window_layout(h, h, window)
            assert size <= window and rows * size >= h and rows * size - h < rows and (rows - 1) * size < h


def test_pretraining_window_is_the_256px_patch_grid() -> None:
    assert [pretraining_window(s) for s in (8, 16, 32)] == [16, 8, 4]


@pytest.mark.parametrize("cfg", list(WINDOWED.values()))
def test_windowed_configs_use_the_pretraining_grid(cfg: str) -> None:
    model = DetectionModel(str(CFG / cfg), verbose=False)
    stages = [m for m in model.model if isinstance(m, MobileViTStage)]
    assert [b.window for s in stages for b in s.blocks] == [16, 8, 4]
    assert [pretraining_window(int(s)) for s in model.stride] == [16, 8, 4]  # the stages are the P3-P5 taps


@pytest.mark.parametrize("hw", [(32, 32), (20, 28), (2, 30)])
def test_map_in_one_window_equals_global(hw: tuple[int, int]) -> None:
    x = torch.randn(2, 16, *hw)
    with torch.no_grad():
        assert torch.equal(block(16)(x), block(0)(x))


def test_padding_is_masked() -> None:
    """Each window of a padded map gives what attention over its real patches alone gives."""
    m = block(4)
    h, w = 5, 7  # patches: windows of 3 x 4 after padding to 6 x 8
    rows, cols, sh, sw = window_layout(h, w, 4)
    assert (rows * sh, cols * sw) == (6, 8)
    y = torch.randn(2, 32, h * PATCH, w * PATCH)
    with torch.no_grad():
        out = m.windowed_representation(y)
        assert out.shape == y.shape
        for r in range(rows):
            for c in range(cols):
                top, left = r * sh * PATCH, c * sw * PATCH
                crop = (slice(None), slice(None), slice(top, top + sh * PATCH), slice(left, left + sw * PATCH))
                ref = m.attend(y[crop])  # the real patches only: the crop stops at the map's edge
                torch.testing.assert_close(out[crop], ref, rtol=1e-5, atol=1e-5)


def test_additive_mask_equals_boolean_reference() -> None:
    """The attention's key mask gives softmax over the unmasked keys only, as a boolean -inf mask computes it."""
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 4).eval()
    x = torch.randn(3, 9, 16)
    keep = torch.rand(3, 1, 1, 9) > 0.4
    keep[..., 0] = True
    with torch.no_grad():
        ours = attn(x, (~keep).float() * -1e4)
        q, k, v = (t.unflatten(-1, (4, 4)).transpose(1, 2) for t in attn.qkv(x).chunk(3, dim=-1))
        scores = (q @ k.transpose(-1, -2) / math.sqrt(4)).masked_fill(~keep, float("-inf"))
        ref = attn.proj((scores.softmax(-1) @ v).transpose(1, 2).flatten(2))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_trace_serves_every_size() -> None:
    """A graph traced outside a fixed-size export pads and masks by tensor ops: other sizes, including one that
    fits in a single window and an odd one, match eager."""
    m = block(4)
    traced = torch.jit.trace(m, torch.randn(1, 16, 20, 20), check_trace=False)
    for hw in ((28, 36), (8, 6), (13, 22)):
        x = torch.randn(1, 16, *hw)
        with torch.no_grad():
            torch.testing.assert_close(traced(x), m(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bad", ["-1", "2.5", "'big'", "True"])
def test_bad_window_is_refused_naming_the_row(tmp_path: Path, bad: str) -> None:
    row = f"[-1, 1, MobileViTStage, [32, 64, 1, 4, 4, 0.0, {bad}]]"
    cfg = tmp_path / "bad-window.yaml"
    cfg.write_text(
        "nc: 2\nbackbone:\n  - [-1, 1, ConvBNAct, [16, 3, 2]]\n  - [-1, 1, MV2Stage, [24, 2]]\n"
        f"  - {row}\n  - [-1, 1, MobileViTStage, [48, 64, 1]]\n  - [-1, 1, MobileViTStage, [64, 64, 1]]\n"
        "head:\n  - [[2, 3, 4], 1, Detect, [nc]]\n"
    )
    with pytest.raises(YamlRowError) as err:
        DetectionModel(str(cfg), verbose=False)
    message = str(err.value)
    assert str(cfg) in message and "layer 2" in message and "MobileViTStage" in message and "window" in message


def test_converted_timm_weights_load_strictly_and_match_at_256(folder: Path) -> None:
    """The same timm mobilevit_xs checkpoint converts strictly into the global and the windowed flagship; at 256 px
    (every map one window) they are equal, at 640 windows change P3-P5 but stay finite."""
    plain, windowed = converted("yolov8-mobilevit.yaml", folder), converted("yolov8-mobilevit-win.yaml", folder)
    assert plain.state_dict().keys() == windowed.state_dict().keys()
    for size, equal in ((256, True), (640, False)):
        images = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
        with torch.no_grad():
            a, b = backbone_features(plain, images), backbone_features(windowed, images)
        for level in ("P3", "P4", "P5"):
            assert torch.isfinite(b[level]).all(), (size, level)
            if equal:
                assert torch.equal(a[level], b[level]), (size, level)
            else:
                assert relative_error(b[level], a[level]) > 1e-5, (size, level, relative_error(b[level], a[level]))


def test_odd_map_keeps_its_size() -> None:
    """An odd map (P5 21x21 at 672) is resized to even before the windows, as the global block does, and back."""
    x = torch.randn(1, 16, 21, 21)
    with torch.no_grad():
        y = block(4)(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize(
    "mode",
    [
        ExportMode(static=True),
        ExportMode(static=True, four_d_patches=True),
        ExportMode(static=True, unmasked_windows=True),
        None,
    ],
)
def test_traced_graph_is_at_most_4d(mode: ExportMode | None) -> None:
    """Windows, padding and masks of a traced graph (fixed-size ONNX, CoreML's layout, every-size) stay within 4-D
    tensors (NCNN, CoreML), and the graph matches eager."""
    m, x = block(4), torch.randn(1, 16, 20, 28)  # 10 x 14 patches: 3 x 4 windows of 4 x 4, padded
    with exporting(mode) if mode else contextlib.nullcontext(), torch.no_grad():
        traced = torch.jit.trace(m, x, check_trace=False)
    ranks = [
        o.type().dim() for n in traced.inlined_graph.nodes() for o in n.outputs() if o.type().kind() == "TensorType"
    ]
    assert ranks and max(r for r in ranks if r is not None) <= 4
    with torch.no_grad():
        torch.testing.assert_close(traced(x), m(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("n", "window"), [(40, 16), (20, 8), (10, 4), (32, 16), (5, 4), (3, 4)])
def test_window_bands_cover_the_real_patches_of_the_layout(n: int, window: int) -> None:
    """Bands of equal windows over the real patches: together they are the layout's windows, cut at the map's edge."""
    count, _, size, _ = window_layout(n, n, window)
    bands = window_bands(n, count, size)
    assert len(bands) <= 2 and sum(windows for _, windows, _ in bands) == count
    starts = [start + k * length for start, windows, length in bands for k in range(windows)]
    assert starts == [k * size for k in range(count)]
    assert bands[-1][0] + bands[-1][1] * bands[-1][2] == n  # the last window ends at the map's edge: no padding


@pytest.mark.parametrize("hw", [(20, 28), (40, 40), (26, 18)])
def test_unmasked_windows_equal_the_masked_path(hw: tuple[int, int]) -> None:
    """For targets whose attention gets a mask wrong (NCNN), a fixed-size export cuts padded maps into bands of
    regular windows: no padding, no mask in the graph, the same output as eager's padded, masked windows."""
    m, x = block(4), torch.randn(1, 16, *hw)
    with torch.no_grad():
        eager = m(x)
        with exporting(ExportMode(static=True, unmasked_windows=True)):
            traced = torch.jit.trace(m, x, check_trace=False)
        torch.testing.assert_close(traced(x), eager, rtol=1e-5, atol=1e-5)
    kinds = {n.kind() for n in traced.inlined_graph.nodes()}
    assert "aten::constant_pad_nd" not in kinds and "aten::pad" not in kinds, sorted(kinds)
