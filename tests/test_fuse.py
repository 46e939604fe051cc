"""Folding the plugin's conv+BN pairs for inference (what Ultralytics' ``fuse()`` does for its own ``Conv``)."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import CFG
from helpers import randomize_norms
from torch import nn
from ultralytics import YOLO

from yolo_mobilevit.modules import BatchNorm2d, ConvBNAct, fuse_modules
from yolo_mobilevit.modules.layers import fold_batchnorm

FLAGSHIP = CFG / "yolov8n-mobilevit.yaml"


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters, so a fold that ignores any of them shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def raw_outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out[0] if isinstance(out, (list, tuple)) else out


def assert_close_relative(a: torch.Tensor, b: torch.Tensor, rtol: float) -> None:
    err = (a - b).abs().max().item() / b.abs().max().clamp_min(1e-12).item()
    assert err <= rtol, f"max error {err:.2e} (relative to max |output|) > {rtol:.0e}"


@pytest.mark.parametrize("groups", [1, 4])
def test_fold_batchnorm_matches_conv_then_bn(groups: int):
    m = ConvBNAct(8, 16, kernel=3, stride=2, groups=groups).eval()
    randomize_batchnorm(m)
    x = torch.randn(2, 8, 11, 9)
    expected = m(x)
    assert m.fuse() is m and m.is_fused and isinstance(m.bn, nn.Identity)
    assert_close_relative(m(x), expected, 1e-6)
    conv = m.conv
    m.fuse()  # idempotent
    assert m.conv is conv


def test_fold_batchnorm_keeps_an_existing_bias():
    conv, bn = nn.Conv2d(3, 5, 1, bias=True), BatchNorm2d(5).eval()
    randomize_batchnorm(bn)
    x = torch.randn(1, 3, 4, 4)
    assert_close_relative(fold_batchnorm(conv, bn)(x), bn(conv(x)), 1e-6)


def test_flagship_fused_equals_unfused():
    model = YOLO(str(FLAGSHIP)).model.eval()
    randomize_batchnorm(model)
    fused = copy.deepcopy(model)
    n = fuse_modules(fused)
    fused.fuse(verbose=False)  # Ultralytics' own Conv layers (neck, head)
    assert n > 0
    assert not any(isinstance(m, BatchNorm2d) for m in fused.modules()), "a plugin BatchNorm survived fusing"
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.rand(1, 3, 160, 160)
    with torch.no_grad():
        assert_close_relative(raw_outputs(fused, x), raw_outputs(model, x), 1e-5)
    assert fuse_modules(fused) == 0


def test_ultralytics_fuse_folds_plugin_layers():
    """``YOLO(...).fuse()`` (also run by export and by AutoBackend for predict/val) folds the plugin's pairs."""
    model = YOLO(str(FLAGSHIP))
    model.model.eval()
    model.fuse()
    assert not any(isinstance(m, BatchNorm2d) for m in model.model.modules())


@pytest.mark.parametrize("act", ["silu", "relu", "relu6", "hardswish", "none"])
@pytest.mark.parametrize("groups", [1, 8])
def test_fused_conv_runs_its_activation_as_a_onednn_post_op(act: str, groups: int, monkeypatch: pytest.MonkeyPatch):
    """CPU inference of a fused ConvBNAct is one oneDNN convolution with the activation as its post-op, equal to the
    conv followed by the activation; training and modules with a gradient to track take the ordinary path."""
    from yolo_mobilevit.modules import cpu_layout

    calls = []
    fused_conv = cpu_layout._FUSED_CONV
    assert fused_conv is not None, "this torch has no mkldnn::_convolution_pointwise"
    monkeypatch.setattr(cpu_layout, "_FUSED_CONV", lambda *a: calls.append(a[7]) or fused_conv(*a))
    torch.manual_seed(0)
    m = ConvBNAct(8, 16, kernel=3, stride=2, act=act, groups=groups)
    randomize_norms(m).eval().fuse()
    for p in m.parameters():
        p.requires_grad_(False)
    x = 3 * torch.randn(2, 8, 17, 15)
    with torch.no_grad():
        expected = m.act(m.conv(x.clone()))
        y = m(x)
    assert calls == [cpu_layout.POST_OPS[type(m.act)][0]]
    assert y.shape == (2, 16, 9, 8)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    seen = []
    hook = m.conv.register_forward_hook(lambda *_: seen.append("conv"))
    with torch.no_grad():
        torch.testing.assert_close(m(x), expected, rtol=1e-5, atol=1e-5)
    hook.remove()
    assert seen == ["conv"] and len(calls) == 1  # a hooked conv (FLOP counters, profilers) is called as a module
    m.train()
    m(x)
    assert len(calls) == 1  # training: the ordinary conv, then the activation


def test_gflops_count_what_the_fused_path_runs():
    """Ultralytics' GFLOPs (thop hooks) are the same with the oneDNN post-op path as without it (fused, eval, CPU)."""
    from ultralytics.utils.torch_utils import get_flops

    from yolo_mobilevit.modules import cpu_layout

    model = YOLO(str(CFG / "yolov8-mobilevit.yaml")).model.eval().fuse()
    fused = get_flops(model, 256)
    enabled = cpu_layout.ENABLED
    try:
        cpu_layout.ENABLED = False
        plain = get_flops(model, 256)
    finally:
        cpu_layout.ENABLED = enabled
    assert fused == pytest.approx(plain) and plain > 0
