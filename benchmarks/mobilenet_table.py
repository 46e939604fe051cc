"""Params, GFLOPs and CPU latency of the MobileNet YOLOs beside stock YOLOv8n and the MobileViT flagship.

Usage: python benchmarks/mobilenet_table.py [--imgsz 640] [--threads 2] [--repeats 30] [--warmup 5] [--scales n]
       [--out FILE.md]

Latency: batch 1, fp32, PyTorch eager (``torch.inference_mode``, no BN fusion for any model: Ultralytics' ``fuse()``
only folds its own conv classes), ``--threads`` intra-op threads, median (and 10th/90th percentiles) of
``--repeats`` timed forwards, round-robin over the models, after ``--warmup`` untimed ones. On a shared machine the
minimum is the least disturbed figure.
GFLOPs = 2 x multiply-accumulates: Ultralytics' figure (thop, what ``yolo`` prints) and torch's FLOP counter with
attention (what the hardware computes).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils.torch_utils import get_flops

import yolo_mobilevit
from yolo_mobilevit.flops import count_macs

REPO = Path(__file__).resolve().parents[1]
BASELINES = ["yolov8n.yaml", "cfg/yolov8{scale}-mobilevit.yaml"]
MOBILENETS = ["mobilenetv1", "mobilenetv2", "mobilenetv3-large", "mobilenetv3-small"]


def configs(scales: list[str]) -> list[str]:
    """Stock yolov8n (Ultralytics' packaged YAML), then per scale the MobileViT flagship and the MobileNets."""
    out = [BASELINES[0]]
    for scale in scales:
        out += [BASELINES[1].format(scale=scale), *(f"cfg/yolov8{scale}-{name}.yaml" for name in MOBILENETS)]
    return out


def build(config: str) -> nn.Module:
    path = REPO / config if (REPO / config).exists() else config  # bare names resolve inside ultralytics
    return DetectionModel(str(path), verbose=False).float().eval()


@torch.inference_mode()
def latencies_ms(models: list[nn.Module], imgsz: int, repeats: int, warmup: int) -> list[list[float]]:
    """Milliseconds of ``repeats`` batch-1 forwards per model, timed round-robin so that any background load
    falls on every model alike."""
    x = torch.rand(1, 3, imgsz, imgsz)
    for model in models:
        for _ in range(warmup):
            model(x)
    times: list[list[float]] = [[] for _ in models]
    for _ in range(repeats):
        for model, t in zip(models, times):
            start = time.perf_counter()
            model(x)
            t.append((time.perf_counter() - start) * 1e3)
    return times


def row(config: str, model: nn.Module, imgsz: int, times: list[float]) -> dict[str, str]:
    n_backbone = len(model.yaml["backbone"])
    params = sum(p.numel() for p in model.parameters())
    backbone = sum(p.numel() for m in model.model[:n_backbone] for p in m.parameters())
    macs = count_macs(model, torch.zeros(1, 3, imgsz, imgsz))
    deciles = statistics.quantiles(times, n=10)
    return {
        "model": Path(config).name,
        "params (M)": f"{params / 1e6:.2f}",
        "backbone params (M)": f"{backbone / 1e6:.2f}",
        f"GFLOPs@{imgsz} (Ultralytics)": f"{get_flops(model, imgsz):.1f}",
        f"GFLOPs@{imgsz} (all ops)": f"{2 * macs / 1e9:.1f}",
        "CPU ms (median)": f"{statistics.median(times):.1f}",
        "CPU ms (min)": f"{min(times):.1f}",
        "CPU ms (p10-p90)": f"{deciles[0]:.1f}-{deciles[-1]:.1f}",
    }


def markdown(rows: list[dict[str, str]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r[h] for h in header) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--scales", nargs="+", default=["n"], choices=["n", "s"])
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()
    yolo_mobilevit.register()
    torch.set_num_threads(args.threads)
    names = configs(args.scales)
    models = [build(c) for c in names]
    times = latencies_ms(models, args.imgsz, args.repeats, args.warmup)
    rows = [row(c, m, args.imgsz, t) for c, m, t in zip(names, models, times)]
    table = markdown(rows)
    note = f"batch 1, {args.imgsz}x{args.imgsz}, fp32 eager, {args.threads} threads, torch {torch.__version__}"
    print(table + f"\n{note}; median of {args.repeats} after {args.warmup} warm-up runs\n")
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
