"""The CPU policy (``yolo_mobilevit/modules/cpu_layout.py``): inverted residuals in bands of rows on large maps, and
plugin rows in channels-last memory in training, both equal to the plain computation up to float rounding."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from conftest import CFG
from helpers import randomize_norms, relative_error
from torch import nn
from ultralytics import YOLO

from yolo_mobilevit.modules import cpu_layout
from yolo_mobilevit.modules.layers import InvertedResidual, SqueezeExcite, fuse_modules
from yolo_mobilevit.modules.mobilevit import MobileViTStage


def fused_block(c1: int, c2: int, stride: int, expansion: float, kernel: int, se: bool = False) -> InvertedResidual:
    torch.manual_seed(0)
    hidden = round(c1 * expansion)
    block = InvertedResidual(c1, c2, stride, expansion, kernel=kernel, se=SqueezeExcite(hidden, 8) if se else None)
    randomize_norms(block).eval()
    fuse_modules(block)
    return block.requires_grad_(False)


def force_bands(monkeypatch: pytest.MonkeyPatch, block: InvertedResidual, width: int, rows: int) -> None:
    """Band every map, ``rows`` expanded input rows per band."""
    monkeypatch.setattr(cpu_layout, "BANDED_ABOVE", 0)
    monkeypatch.setattr(cpu_layout, "BAND_BYTES", rows * block.depthwise.conv.in_channels * width * 4)


def test_row_bands_cover_the_map_and_input_rows_include_the_padding(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(cpu_layout, "BANDED_ABOVE", 100)
    monkeypatch.setattr(cpu_layout, "BAND_BYTES", 30)
    assert cpu_layout.row_bands(10, 10, 1) == [(0, 10)]  # an expanded map of 100 bytes: whole
    assert cpu_layout.row_bands(11, 10, 1) == [(0, 3), (3, 6), (6, 9), (9, 11)]  # 3 rows of 10 bytes per band
    assert cpu_layout.row_bands(6, 10, 2) == [(r, r + 1) for r in range(6)]  # stride 2: 2 input rows per output row
    assert cpu_layout.row_bands(3, 40, 1) == [(0, 1), (1, 2), (2, 3)]  # a row above the band size: one row per band
    # 9 input rows, 3x3 kernel, stride 2, padding 1: 5 output rows; the first band reads a padding row above, the
    # last one below (an odd height)
    assert cpu_layout.input_rows((0, 2), 9, 3, 2, 1) == (0, 4, 1, 0)
    assert cpu_layout.input_rows((2, 4), 9, 3, 2, 1) == (3, 8, 0, 0)
    assert cpu_layout.input_rows((4, 5), 9, 3, 2, 1) == (7, 9, 0, 1)
    assert cpu_layout.input_rows((0, 9), 9, 5, 1, 2) == (0, 9, 2, 2)


@pytest.mark.parametrize(
    ("c1", "c2", "stride", "expansion", "kernel", "size"),
    [
        (8, 8, 1, 4, 3, (23, 17)),  # residual
        (8, 12, 2, 4, 3, (23, 18)),  # stride 2, odd height: a padding row below the last band
        (8, 12, 2, 4, 3, (24, 17)),
        (8, 8, 1, 1, 3, (20, 9)),  # no expand conv (expansion 1)
        (8, 16, 2, 3, 5, (31, 12)),  # MobileNetV3's 5x5 depthwise
    ],
)
def test_inverted_residual_in_bands_equals_the_whole_map(
    c1: int, c2: int, stride: int, expansion: float, kernel: int, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
):
    """A block computed band by band (the first and last bands reading the depthwise conv's zero padding, a short
    last band) equals the block computed on the whole map, and keeps the channels-last layout."""
    block = fused_block(c1, c2, stride, expansion, kernel)
    x = torch.randn(2, c1, *size).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        whole = block(x)
        assert block.cpu_bands(x) is None  # a small map: whole
        force_bands(monkeypatch, block, size[1], rows=4)
        bands = block.cpu_bands(x)
        banded = block(x)
    assert bands is not None and len(bands) > 2
    assert bands[0][0] == 0 and bands[-1][1] == whole.shape[2]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bands))
    assert banded.shape == whole.shape == (2, c2, (size[0] - 1) // stride + 1, (size[1] - 1) // stride + 1)
    assert banded.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(banded, whole, rtol=1e-5, atol=1e-5)


def test_blocks_that_cannot_run_in_bands_run_whole(monkeypatch: pytest.MonkeyPatch):
    """A squeeze-excite pools the whole map, a forward hook expects its module to be called, an unfused block has
    BatchNorms, a block in training tracks statistics: each runs as written, never in bands."""
    x = torch.randn(1, 8, 20, 20).contiguous(memory_format=torch.channels_last)
    with_se = fused_block(8, 8, 1, 4, 3, se=True)
    hooked = fused_block(8, 8, 1, 4, 3)
    hooked.expand.register_forward_hook(lambda *_: None)
    unfused = randomize_norms(InvertedResidual(8, 8, 1, 4)).eval()
    training = fused_block(8, 8, 1, 4, 3).train()
    force_bands(monkeypatch, with_se, 20, rows=2)
    banded = []
    monkeypatch.setattr(InvertedResidual, "forward_in_bands", lambda *a: banded.append(a))
    with torch.no_grad():
        for block in (with_se, hooked, unfused):
            assert block.cpu_bands(x) is None
            block(x)
        training(x)
    assert banded == []
    assert fused_block(8, 8, 1, 4, 3).cpu_bands(x) is not None  # the same block, fused, unhooked: in bands


def tensors(out: object) -> list[torch.Tensor]:
    """Every tensor of a model's output (a tensor, or lists, tuples and dicts of them), in order."""
    if isinstance(out, torch.Tensor):
        return [out]
    items = out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple)) else []
    return [t for item in items for t in tensors(item)]


def test_training_runs_plugin_rows_channels_last_with_the_same_gradients():
    """On the CPU a training step runs the plugin rows' convolutions on channels-last maps, hands Ultralytics' layers
    contiguous NCHW maps and leaves the parameters and their gradients in the ordinary layout; losses, gradients and
    BatchNorm statistics equal those of the policy switched off."""
    model = YOLO(str(CFG / "yolov8n-mobilevit.yaml")).model
    randomize_norms(model).train()
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))

    def step(net: nn.Module) -> tuple[list[torch.Tensor], dict[str, bool]]:
        layouts: dict[str, bool] = {}

        def record(name: str, contiguous: bool) -> None:
            layouts.setdefault(name, contiguous)

        stage = next(m for m in net.model if isinstance(m, MobileViTStage))
        stage.blocks[0].conv_fusion.conv.register_forward_pre_hook(
            lambda m, a: record("plugin conv", a[0].is_contiguous(memory_format=torch.channels_last))
        )
        head = net.model[-1]  # Detect reads P3-P5 from the neck
        head.register_forward_pre_hook(lambda m, a: record("head", all(t.is_contiguous() for t in a[0])))
        out = tensors(net(x))
        sum(o.square().mean() for o in out).backward()
        return out, layouts

    plain = copy.deepcopy(model)
    out, layouts = step(model)
    enabled = cpu_layout.ENABLED
    try:
        cpu_layout.ENABLED = False
        plain_out, plain_layouts = step(plain)
    finally:
        cpu_layout.ENABLED = enabled
    assert layouts == {"plugin conv": True, "head": True}
    assert plain_layouts == {"plugin conv": False, "head": True}
    assert max(relative_error(a, b) for a, b in zip(out, plain_out)) < 1e-4
    grads = {name: (p.grad, q.grad) for (name, p), q in zip(model.named_parameters(), plain.parameters())}
    assert all((a is None) == (b is None) for a, b in grads.values())
    # against the largest gradient (some, biases before a BatchNorm in training, are 0 up to rounding); fp32 sums in
    # another order through the whole backward move the stem's by about 2e-4 of it (in float64 they agree to 1e-14)
    scale = max(b.abs().max().item() for _, b in grads.values() if b is not None)
    for name, (a, b) in grads.items():
        if a is not None:
            assert (a - b).abs().max().item() < 1e-3 * scale, name
    for name, p in model.named_parameters():
        assert p.is_contiguous() and (p.grad is None or p.grad.is_contiguous()), name
    for (name, a), b in zip(model.named_buffers(), plain.buffers()):
        assert relative_error(a, b) < 1e-4, name
