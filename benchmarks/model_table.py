"""Params, GFLOPs and (optionally) CPU latency of the shipped configs beside stock YOLOv8n, YOLO11n and YOLO26n.

Usage: python benchmarks/model_table.py [--imgsz 640] [--configs CFG ...] [--latency [--threads 2] [--repeats 20]
       [--warmup 3]] [--out FILE.md]

GFLOPs = 2 x multiply-accumulates, two ways: Ultralytics' figure (thop: what `yolo` prints; it does not see fused
attention kernels) and torch's FLOP counter with attention added (what the hardware computes).
Latency: batch 1, fp32, PyTorch eager (`torch.inference_mode`; no BN folding for any model, since Ultralytics'
`fuse()` only folds its own conv classes), `--threads` intra-op threads, median and minimum of `--repeats` timed
forwards taken round-robin over the models (background load falls on every model alike) after `--warmup` ones.
"""

from __future__ import annotations

import argparse
import re
from functools import partial
from pathlib import Path

import torch
from torch import nn
from ultralytics.nn.tasks import DetectionModel

import yolo_mobilevit
from yolo_mobilevit.tools.compare import markdown, model_stats
from yolo_mobilevit.tools.timing import Latency, interleaved_latency

REPO = Path(__file__).resolve().parents[1]
STOCK = ["yolov8n.yaml", "yolo11n.yaml", "yolo26n.yaml"]


def lettered(config: Path, scale: str = "n") -> str:
    """cfg/yolov8-mobilevit.yaml -> cfg/yolov8n-mobilevit.yaml (Ultralytics' scale-letter convention)."""
    return str(config.with_name(re.sub(r"^(yolo(?:v)?\d+)-", rf"\g<1>{scale}-", config.name, count=1)))


def default_configs() -> list[str]:
    other_tasks = r"-(seg|pose|obb|cls|sem|depth)\.yaml$"
    shipped = sorted(p for p in (REPO / "cfg").glob("*.yaml") if not re.search(other_tasks, p.name))
    return STOCK + [lettered(p) for p in shipped]


def build(config: str) -> nn.Module:
    return DetectionModel(config, verbose=False).float().eval()


@torch.inference_mode()
def latencies(models: list[nn.Module], imgsz: int, repeats: int, warmup: int) -> list[Latency]:
    """``repeats`` batch-1 forwards per model after ``warmup`` ones, timed round-robin."""
    x = torch.rand(1, 3, imgsz, imgsz)
    timed = interleaved_latency({str(i): partial(model, x) for i, model in enumerate(models)}, warmup, repeats)
    return list(timed.values())


def row(config: str, model: nn.Module, imgsz: int, latency: Latency | None) -> dict[str, str]:
    stats = model_stats(model, imgsz)
    out = {
        "model": Path(config).name,
        "params (M)": f"{stats['params'] / 1e6:.2f}",
        "backbone params (M)": f"{stats['backbone_params'] / 1e6:.2f}",
        f"GFLOPs@{imgsz} (Ultralytics)": f"{stats['gflops_ultralytics']:.1f}",
        f"GFLOPs@{imgsz} (attention counted)": f"{stats['gflops_attention']:.1f}",
    }
    if latency:
        out["CPU ms (median)"] = f"{latency.median_ms:.0f}"
        out["CPU ms (min)"] = f"{latency.min_ms:.0f}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--configs", nargs="*", default=None, help="model YAMLs (default: yolov8n, yolo11n, cfg/*)")
    parser.add_argument("--latency", action="store_true", help="also time batch-1 CPU forwards")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()
    yolo_mobilevit.register()
    torch.set_num_threads(args.threads)
    names = args.configs or default_configs()
    models = [build(c) for c in names]
    times = latencies(models, args.imgsz, args.repeats, args.warmup) if args.latency else [None] * len(models)
    table = markdown([row(c, m, args.imgsz, t) for c, m, t in zip(names, models, times)])
    note = f"{args.imgsz}x{args.imgsz}, torch {torch.__version__}, {args.threads} threads"
    if args.latency:
        note += f", batch 1 fp32 eager, median/min of {args.repeats} after {args.warmup} warm-up runs"
    print(table + "\n" + note)
    if args.out:
        args.out.write_text(table + "\n" + note + "\n")


if __name__ == "__main__":
    main()
