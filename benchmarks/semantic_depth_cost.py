"""Cost of the semantic segmentation (``-sem``) and depth (``-depth``) configs beside stock yolo26n-sem / -depth:
parameters, GFLOPs and batch-1 CPU latency (semantic at 512 and 1024, depth at 512).

Usage: python benchmarks/semantic_depth_cost.py [--threads 2] [--repeats 10] [--warmup 2]
       [--out benchmarks/results/semantic_depth_cost.md]

GFLOPs = 2 x multiply-accumulates, as ``yolo`` prints them (Ultralytics' thop) and with attention counted
(``yolo_mobilevit.tools.flops``). Latency: PyTorch eager fp32 (``torch.inference_mode``), ``--threads`` intra-op
threads, median of ``--repeats`` forwards per model timed round-robin over all models of a table in one process
(drifting load falls on every model alike) after ``--warmup`` ones; ratios are to the stock model of the table.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import torch
from ultralytics import YOLO

import yolo_mobilevit
from yolo_mobilevit.tools.compare import cpu_name, markdown, model_stats
from yolo_mobilevit.tools.timing import interleaved_latency

REPO = Path(__file__).resolve().parents[1]
FAMILIES = (
    "mobilevit", "mobilevit-xxs", "mobilevitv2", "mobilevitv2-050", "mobilenetv1", "mobilenetv2",
    "mobilenetv3-large", "mobilenetv3-small", "mobileformer-151m",
)  # fmt: skip
TASKS = {"sem": ("yolo26n-sem.yaml", (512, 1024)), "depth": ("yolo26n-depth.yaml", (512,))}


def configs(suffix: str) -> list[str]:
    stock = TASKS[suffix][0]
    return [stock] + [str(REPO / "cfg" / f"yolo26n-{family}-{suffix}.yaml") for family in FAMILIES]


def table(suffix: str, repeats: int, warmup: int) -> str:
    names = configs(suffix)
    models = [YOLO(name, verbose=False).model.float().eval() for name in names]
    sizes = TASKS[suffix][1]
    rows = [
        {
            "model": Path(name).name,
            "params (M)": f"{sum(p.numel() for p in m.parameters()) / 1e6:.2f}",
        }
        for name, m in zip(names, models)
    ]
    for imgsz in sizes:
        x = torch.rand(1, 3, imgsz, imgsz)
        with torch.inference_mode():
            timed = interleaved_latency({str(i): partial(m, x) for i, m in enumerate(models)}, warmup, repeats)
        medians = [t.median_ms for t in timed.values()]
        for row, m, median in zip(rows, models, medians):
            stats = model_stats(m, imgsz)
            row[f"GFLOPs@{imgsz}"] = f"{stats['gflops_ultralytics']:.1f}"
            row[f"GFLOPs@{imgsz} (attention counted)"] = f"{stats['gflops_attention']:.1f}"
            row[f"CPU ms@{imgsz}"] = f"{median:.0f}"
            row[f"x stock@{imgsz}"] = f"{median / medians[0]:.2f}"
    return markdown(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    args = parser.parse_args()
    yolo_mobilevit.register()
    torch.set_num_threads(args.threads)
    note = (
        f"torch {torch.__version__}, {args.threads} threads on {cpu_name()}, batch 1 "
        f"fp32 eager, median of {args.repeats} forwards after {args.warmup} warm-up ones, round-robin per table"
    )
    text = "".join(
        f"## {title}\n\n{table(suffix, args.repeats, args.warmup)}\n"
        for suffix, title in (("sem", "Semantic segmentation (-sem)"), ("depth", "Depth (-depth)"))
    )
    print(text + note)
    if args.out:
        command = "python benchmarks/semantic_depth_cost.py " + " ".join(
            f"--{k} {v}" for k, v in (("threads", args.threads), ("repeats", args.repeats), ("warmup", args.warmup))
        )
        args.out.write_text(
            "# Cost of the semantic and depth configs\n\n"
            f"Command: `{command} --out {args.out.as_posix()}` (PYTHONPATH at the repository root).\n"
            "The machine was shared with other jobs while this ran: compare the ratios to the stock model of each "
            "table (timed round-robin in one process), not the absolute milliseconds.\n\n" + text + note + "\n"
        )


if __name__ == "__main__":
    main()
