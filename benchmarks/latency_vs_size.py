"""CPU latency against image size, each family beside stock YOLOv8n and YOLO26n (built from YAML, no downloads):
PyTorch eager with Ultralytics' fuse(), batch 1, models interleaved at each size. Writes a PNG and a markdown table.

    python benchmarks/latency_vs_size.py --sizes 320 480 640 960 1280 --out benchmarks/results/latency_vs_size
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from ultralytics import YOLO

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "yolov8n": "yolov8n.yaml",
    "yolo26n": "yolo26n.yaml",
    "MobileViT-XS": str(ROOT / "cfg" / "yolov8-mobilevit.yaml"),
    "MobileViTv2 1.0": str(ROOT / "cfg" / "yolov8-mobilevitv2.yaml"),
    "MobileNetV3-L": str(ROOT / "cfg" / "yolov8-mobilenetv3-large.yaml"),
    "Mobile-Former-26M": str(ROOT / "cfg" / "yolov8-mobileformer-26m.yaml"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", type=int, default=[320, 480, 640, 960, 1280])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/latency_vs_size")
    args = ap.parse_args()
    models = {k: YOLO(v).model.fuse().eval() for k, v in MODELS.items()}
    ms = {k: [] for k in models}
    loads = []
    with torch.inference_mode():
        for size in args.sizes:
            x = torch.rand(1, 3, size, size)
            for m in models.values():
                m(x)  # warm-up
            times = {k: [] for k in models}
            for _ in range(args.repeats):
                for k, m in models.items():  # interleaved
                    t = time.perf_counter()
                    m(x)
                    times[k].append((time.perf_counter() - t) * 1e3)
            for k in models:
                ms[k].append(float(np.median(times[k])))
            loads.append(os.getloadavg()[0])
            print(size, {k: round(v[-1], 1) for k, v in ms.items()}, flush=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, v in ms.items():
        ax.plot(args.sizes, v, marker="o", label=k, linestyle="--" if k.startswith("yolo") else "-")
    ax.set(xlabel="imgsz", ylabel="ms (PyTorch eager, fused, CPU, batch 1)", yscale="log", xticks=args.sizes)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(f"{args.out}.png", dpi=110)
    lines = [
        (
            f"CPU latency vs imgsz (`python benchmarks/latency_vs_size.py`): PyTorch {torch.__version__} eager, "
            f"Ultralytics fuse(), fp32, batch 1, {torch.get_num_threads()} threads, 1 warm-up then median of "
            f"{args.repeats} runs, models interleaved at each size; random weights. 1-minute load average at each size: "
            f"{', '.join(f'{v:.1f}' for v in loads)} (2 cores shared with other jobs)."
        ),
        "",
        "| model | " + " | ".join(map(str, args.sizes)) + " |",
        "|---|" + "---|" * len(args.sizes),
        *(f"| {k} | " + " | ".join(f"{t:.0f}" for t in v) + " |" for k, v in ms.items()),
        "",
        "Ratio to yolov8n: "
        + "; ".join(
            f"{k}: " + ", ".join(f"{t / b:.1f}x" for t, b in zip(v, ms["yolov8n"]))
            for k, v in ms.items()
            if k != "yolov8n"
        ),
    ]
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
