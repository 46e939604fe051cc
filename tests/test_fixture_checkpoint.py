"""Checkpoints written by an earlier version of the plugin (commit 9327a23, before the building-block redesign; see
``fixtures/make_fixtures.py``) still load with today's code, keep every state-dict key and compute the same outputs to
float32 rounding, unfused and fused. One small model per family covers every plugin row type."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from fixtures.make_fixtures import FIXTURES, NAMES, outputs
from ultralytics import YOLO
from ultralytics.nn.tasks import torch_safe_load


def checkpoint(name: str) -> Path:
    return FIXTURES / f"{name}.pt"


def expected(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.expected.pt")


def assert_identical(got: list[torch.Tensor], want: list[torch.Tensor], label: str) -> None:
    assert len(got) == len(want), f"{label}: {len(got)} output tensors, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, f"{label} output {i}: shape {tuple(g.shape)}, expected {tuple(w.shape)}"
        # float32 rounding only: the machine that wrote the fixtures reproduces them bit for bit; other CPUs'
        # kernels (AVX2 against AVX-512) differ in the last bits (seen: 4.6e-5 on boxes near 60, 1.7e-6 on maps)
        close = torch.allclose(g, w, rtol=1e-5, atol=1e-5)
        assert close, f"{label} output {i}: max |difference| {(g - w).abs().max().item():.3e}"


@pytest.mark.parametrize("name", NAMES)
def test_yolo_loads_old_checkpoint_bit_identically(name: str):
    want = expected(name)
    model = YOLO(str(checkpoint(name))).model.eval()
    assert list(model.state_dict()) == want["state_dict_keys"]
    assert_identical(outputs(model, want["input"]), want["unfused"], f"{name} unfused")
    fused = copy.deepcopy(model).fuse(verbose=False)
    assert_identical(outputs(fused, want["input"]), want["fused"], f"{name} fused")


@pytest.mark.parametrize("name", NAMES)
def test_torch_safe_load_of_old_checkpoint(name: str):
    want = expected(name)
    ckpt, _ = torch_safe_load(str(checkpoint(name)))
    model = ckpt["model"].float().eval()
    assert list(model.state_dict()) == want["state_dict_keys"]
    assert_identical(outputs(model, want["input"]), want["unfused"], f"{name} torch_safe_load")


@pytest.mark.parametrize("name", NAMES)
def test_todays_build_takes_the_old_weights(name: str):
    """The same YAML built by today's code has the old file's keys and shapes, and with its tensors the same outputs."""
    want = expected(name)
    old_model = torch_safe_load(str(checkpoint(name)))[0]["model"].float()
    old = old_model.state_dict()
    model = YOLO(str(FIXTURES / f"{name}.yaml")).model
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: tuple(v.shape) for k, v in old.items()}
    model.load_state_dict(old, strict=True)
    # non-persistent buffers too: ImageNorm's mean/std travel in the pickled module, rounded to fp16 by the save
    with torch.no_grad():
        for (key, buffer), (old_key, old_buffer) in zip(model.named_buffers(), old_model.named_buffers(), strict=True):
            assert key == old_key
            buffer.copy_(old_buffer)
    assert_identical(outputs(model.eval(), want["input"]), want["unfused"], f"{name} rebuilt")
