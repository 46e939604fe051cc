"""What each part of the plugin's CPU policy (``yolo_mobilevit/modules/cpu_layout.py``) buys, measured by switching
it off, in one process, every configuration timed round-robin:

1. inference (fused, eval, batch 1, fp32): the global and windowed flagships with the policy as shipped, with
   inverted residuals computed whole instead of in bands of rows, and with the whole policy off (NCHW, no post-ops);
2. a training step (forward, loss, backward; batch 8 at 320) of every family: plugin rows in channels-last memory
   against NCHW.

    python benchmarks/cpu_policy.py --out benchmarks/results/cpu_policy.md

Random weights (speed does not depend on them). The machine may be shared: the results file states the load
average; compare configurations measured in the same table.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolo_mobilevit.modules import cpu_layout

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from window_speed import GLOBAL, WINDOWED, add_timing_arguments, eager_latency, training_step

#: The training table: the flagships, then one config of every other family.
TRAIN_CONFIGS = [
    GLOBAL,
    WINDOWED,
    "yolov8n-mobilevit-xxs.yaml",
    "yolov8n-mobilevitv2.yaml",
    "yolov8n-mobilenetv1.yaml",
    "yolov8n-mobilenetv2.yaml",
    "yolov8n-mobilenetv3-large.yaml",
    "yolov8n-mobileformer-151m.yaml",
]
#: name -> (channels-last and post-ops on, inverted residuals in bands)
POLICIES = {"shipped": (True, True), "no bands": (True, False), "policy off": (False, False)}


@contextmanager
def policy(enabled: bool, bands: bool) -> Iterator[None]:
    """The CPU policy on or off (``enabled``) and inverted residuals in bands or whole, restored on exit."""
    saved = cpu_layout.ENABLED, cpu_layout.BANDED_ABOVE
    cpu_layout.ENABLED, cpu_layout.BANDED_ABOVE = enabled, saved[1] if bands else 1 << 62
    try:
        yield
    finally:
        cpu_layout.ENABLED, cpu_layout.BANDED_ABOVE = saved


class UnderPolicy(nn.Module):
    """``model`` called under one :data:`POLICIES` entry (the layout is chosen in the forward; autograd follows)."""

    def __init__(self, model: nn.Module, enabled: bool, bands: bool) -> None:
        super().__init__()
        self.model, self.enabled, self.bands = model, enabled, bands

    def forward(self, x: torch.Tensor) -> Any:
        with policy(self.enabled, self.bands):
            return self.model(x)


def inference(sizes: list[int], repeats: int, warmup: int) -> list[str]:
    from ultralytics import YOLO

    models = {cfg: YOLO(cfg).model.fuse().eval() for cfg in (GLOBAL, WINDOWED)}
    runs = {
        (cfg, name): UnderPolicy(model, *switches)
        for cfg, model in models.items()
        for name, switches in POLICIES.items()
    }
    rows = ["| model | policy | " + " | ".join(map(str, sizes)) + " |", "|---|---|" + "---|" * len(sizes)]
    ms = eager_latency(runs, sizes, repeats, warmup)
    for (cfg, name), values in ms.items():
        shipped = ms[(cfg, "shipped")]
        cells = [f"{t:.0f}" + ("" if name == "shipped" else f" ({t / s:.2f}x)") for t, s in zip(values, shipped)]
        rows.append(f"| {cfg} | {name} | " + " | ".join(cells) + " |")
    return rows


def training(configs: list[str], repeats: int) -> list[str]:
    """Per config, a training step with the plugin rows channels-last (shipped) and in NCHW, round-robin."""
    from ultralytics import YOLO

    rows = [
        "| model | channels-last rows (shipped), img/s | NCHW (policy off), img/s | speed-up |",
        "|---|---|---|---|",
    ]
    for cfg in configs:
        model = YOLO(cfg).model.float()
        plain = copy.deepcopy(model)
        ips = training_step(
            {"shipped": (model, model), "off": (UnderPolicy(plain, False, False), plain)}, 8, 320, repeats, 1
        )
        rows.append(f"| {cfg} | {ips['shipped']:.2f} | {ips['off']:.2f} | {ips['shipped'] / ips['off']:.2f}x |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_arguments(ap)
    ap.add_argument("--train-configs", nargs="+", default=TRAIN_CONFIGS)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cpu_policy.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lines = [
        "# The CPU policy, part by part",
        "",
        f"`python benchmarks/cpu_policy.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        (
            f"torch {torch.__version__}, {args.threads} threads, fp32, {args.warmup} warm-up then median of "
            f"{args.repeats} runs, every configuration round-robin; random weights. Bands: inverted residuals whose "
            f"expanded map exceeds {cpu_layout.BANDED_ABOVE >> 20} MiB run in bands of at most "
            f"{cpu_layout.BAND_BYTES >> 20} MiB of it."
        ),
        "",
        "## Inference, fused, batch 1, ms (in brackets: / shipped)",
        "",
        *inference(args.sizes, args.repeats, args.warmup),
        "",
        "## Training step (forward, loss, backward), batch 8 at 320",
        "",
        *training(args.train_configs, max(2, args.repeats // 2)),
        "",
        f"Load average after: {os.getloadavg()[0]:.1f}.",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
