"""Params, GFLOPs and (optionally) CPU latency of the shipped configs beside stock YOLOv8n, YOLO11n and YOLO26n.

Usage: python benchmarks/model_table.py [--imgsz 640] [--configs CFG ...] [--latency [--fuse] [--threads 2]
       [--repeats 20] [--warmup 3]] [--out FILE.md]

GFLOPs = 2 x multiply-accumulates, two ways: Ultralytics' figure (thop: what `yolo` prints; it does not see fused
attention kernels) and torch's FLOP counter with attention added (what the hardware computes).
Latency: batch 1, fp32, PyTorch eager (`torch.inference_mode`; with `--fuse` every model is timed after
`model.fuse()`, BatchNorms folded as `yolo predict` / `val` run it, the plugin's rows included; params and GFLOPs are
always the unfused model's), `--threads` intra-op threads, median and minimum of `--repeats` timed
forwards taken round-robin over the models (background load falls on every model alike) after `--warmup` ones;
with `--reference MODEL` (one of the configs) two columns give each model's median and minimum as multiples of that
model's (on a loaded machine the two differ where the load changed during the run: read them as a range).
The note under the table records the load average before and after the timing (the machine may be shared).
"""

from __future__ import annotations

import argparse
import copy
import os
import re
from functools import partial
from pathlib import Path

import torch
from torch import nn
from ultralytics.nn.tasks import DetectionModel

import yolo_mobilevit
from yolo_mobilevit.configs import scaled_name
from yolo_mobilevit.tools.compare import markdown, model_stats
from yolo_mobilevit.tools.timing import Latency, interleaved_latency

REPO = Path(__file__).resolve().parents[1]
STOCK = ["yolov8n.yaml", "yolo11n.yaml", "yolo26n.yaml"]


def lettered(config: Path, scale: str = "n") -> str:
    """cfg/yolov8-mobilevit.yaml -> cfg/yolov8n-mobilevit.yaml (Ultralytics' scale-letter convention)."""
    return str(config.with_name(scaled_name(config.name, scale)))


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


def load_average() -> str:
    """The 1/5/15-minute load averages, e.g. "1.8 / 2.2 / 2.0"."""
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def row(
    config: str, model: nn.Module, imgsz: int, latency: Latency | None, reference: tuple[str, Latency] | None
) -> dict[str, str]:
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
    if latency and reference:
        name, ref = reference
        out[f"median / {Path(name).stem}"] = f"{latency.median_ms / ref.median_ms:.2f}"
        out[f"min / {Path(name).stem}"] = f"{latency.min_ms / ref.min_ms:.2f}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--configs", nargs="*", default=None, help="model YAMLs (default: yolov8n, yolo11n, cfg/*)")
    parser.add_argument("--latency", action="store_true", help="also time batch-1 CPU forwards")
    parser.add_argument("--fuse", action="store_true", help="with --latency: time every model fused (as yolo predict)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--reference", default=None, help="with --latency: a model of --configs to give latency ratios against"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args()
    yolo_mobilevit.register()
    torch.set_num_threads(args.threads)
    names = args.configs or default_configs()
    if args.reference and args.reference not in names:
        parser.error(f"--reference {args.reference} is not among the configs: {' '.join(names)}")
    models = [build(c) for c in names]
    load_before = load_average()
    timed = [copy.deepcopy(m).fuse(verbose=False) for m in models] if args.fuse else models
    times = latencies(timed, args.imgsz, args.repeats, args.warmup) if args.latency else [None] * len(models)
    reference = (args.reference, times[names.index(args.reference)]) if args.latency and args.reference else None
    table = markdown([row(c, m, args.imgsz, t, reference) for c, m, t in zip(names, models, times)])
    note = f"{args.imgsz}x{args.imgsz}, torch {torch.__version__}, {args.threads} threads"
    if args.latency:
        note += (
            f", batch 1 fp32 eager{', fused' if args.fuse else ''}, median/min of {args.repeats} after {args.warmup}"
            " warm-up runs, all models"
            f" round-robin in one process; load average (1/5/15 min) {load_before} before the timing,"
            f" {load_average()} after ({os.cpu_count()} CPUs, shared with other jobs)"
        )
    print(table + "\n" + note)
    if args.out:
        args.out.write_text(table + "\n" + note + "\n")


if __name__ == "__main__":
    main()
