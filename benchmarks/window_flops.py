"""Multiply-accumulates per image of the windowed flagship beside the global one, timm's MobileViT-XS with the same
neck and YOLOv8n / YOLO26n, attention included: a count that does not depend on how busy the machine is (latency:
``benchmarks/window_speed.py``). Counted by ``torch.utils.flop_counter`` with attention on PyTorch's math kernel (so
its two matmuls are counted like any other), fused models, batch 1.

    python benchmarks/window_flops.py --out benchmarks/results/window_flops.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from window_speed import converted_models, fused_models


def gmacs(model: torch.nn.Module, size: int) -> float:
    """Giga multiply-accumulates of one forward at ``size`` x ``size`` (FLOPs / 2)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), counter:
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 2e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[256, 320, 640, 960, 1280])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "window_flops.md")
    args = ap.parse_args()
    timm_features, converted = converted_models(Path(tempfile.mkdtemp(prefix="window_flops_")))
    models = fused_models(timm_features, converted)
    macs = {name: [gmacs(m, s) for s in args.sizes] for name, m in models.items()}
    head = "| " + " | ".join(map(str, args.sizes)) + " |"
    rule = "|---|" + "---|" * len(args.sizes)
    lines = [
        "# MACs per image, attention included",
        "",
        f"`python benchmarks/window_flops.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        f"torch {torch.__version__} `FlopCounterMode`, attention on the math kernel; fused models, batch 1. GMAC:",
        "",
        "| model " + head,
        rule,
        *(f"| {k} | " + " | ".join(f"{v:.2f}" for v in vs) + " |" for k, vs in macs.items()),
        "",
        "| ratio " + head,
        rule,
        *(
            f"| {k} / yolov8n | " + " | ".join(f"{v / b:.2f}x" for v, b in zip(vs, macs["yolov8n"])) + " |"
            for k, vs in macs.items()
            if k != "yolov8n"
        ),
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
