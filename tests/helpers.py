"""Helpers shared by the tests: non-trivial norm statistics for random models, the relative error they compare, and
a private Ultralytics runs dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm/GroupNorm/LayerNorm non-default affine parameters and running statistics (seeded), so
    that a wrongly mapped, re-initialised or mis-folded norm shows up in the outputs. Returns ``model``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.num_batches_tracked.fill_(1000)
    return model


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours - ref| / max |ref| (in fp32)."""
    ours, ref = ours.float(), ref.float()
    return ((ours - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def assert_trained(run: Path, epochs: int = 1) -> dict[str, list[float]]:
    """A finished ``yolo train`` folder: best.pt and last.pt written, ``results.csv`` holding one row per epoch and
    every loss column (train and val) finite and non-negative (a batch without positives has a DFL loss of 0), with a
    positive training loss in every epoch. Returns the csv's columns."""
    import csv
    import math

    for weights in ("best.pt", "last.pt"):
        assert (run / "weights" / weights).is_file(), f"{run}/weights/{weights} was not written"
    with open(run / "results.csv", newline="") as f:
        rows = [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    assert len(rows) == epochs, f"{run}/results.csv has {len(rows)} rows for {epochs} epochs"
    columns = {k: [row[k] for row in rows] for k in rows[0]}
    losses = {k: v for k, v in columns.items() if k.endswith("_loss")}
    assert any(k.startswith("train/") for k in losses), sorted(columns)
    bad = {k: v for k, v in losses.items() if not all(math.isfinite(x) and x >= 0 for x in v)}
    assert not bad, f"{run}/results.csv: losses not finite and non-negative: {bad}"
    train = [k for k in losses if k.startswith("train/")]
    idle = [i for i in range(epochs) if not any(columns[k][i] > 0 for k in train)]
    assert not idle, f"{run}/results.csv: no positive training loss in epochs {idle}: {losses}"
    return columns


def assert_predictions(labels: Path, images: Path) -> None:
    """``yolo predict ... save_txt=True`` wrote a non-empty label file for every image in ``images``."""
    found = {p.stem: p.read_text().split() for p in labels.glob("*.txt")}
    expected = sorted(p.stem for p in images.glob("*.jpg"))
    assert sorted(found) == expected, f"{labels}: label files {sorted(found)}, images {expected}"
    assert all(found.values()), f"{labels}: empty label files {[k for k, v in found.items() if not v]}"


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def private_runs_dir(root: Path) -> tuple[dict[str, str], Path]:
    """(environment, runs_dir) of a private Ultralytics settings file under ``root`` whose ``runs_dir`` (and
    ``weights_dir``, ``root/weights_dir``) are empty folders, so a test sees whatever Ultralytics writes there."""
    config, runs, weights = root / "config", root / "runs_dir", root / "weights_dir"
    runs.mkdir(parents=True)
    weights.mkdir()
    env = {"YOLO_CONFIG_DIR": str(config)}
    code = (
        f"from ultralytics.utils import SETTINGS; SETTINGS.update(runs_dir={str(runs)!r}, weights_dir={str(weights)!r})"
    )
    subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True, capture_output=True)
    return env, runs


def run_as_user(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``cmd`` as a user's shell would: without pytest's ``PYTEST_CURRENT_TEST``, under which Ultralytics writes
    its runs into its own package's ``tests/tmp/runs`` instead of the runs dir. Fails with the output on an error."""
    full_env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"} | {"YOLO_OFFLINE": "1", **env}
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


def files_under(folder: Path) -> list[str]:
    """Every path under ``folder`` (folders too), relative and sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def module_absent(name: str) -> bool:
    """This Ultralytics release has no module ``name`` (nor, for a submodule, its parent package)."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is None
    except ModuleNotFoundError:
        return True
