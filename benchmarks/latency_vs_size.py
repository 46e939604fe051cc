"""CPU latency against image size, each family beside stock YOLOv8n and YOLO26n (built from YAML, no downloads):
PyTorch eager with Ultralytics' fuse() and ONNX Runtime (fp32, a graph traced at each size), and OpenVINO INT8 (one
dynamic-shape ``yolo export format=openvino int8=True dynamic=True`` per model, the plugin's transformer-aware
settings, calibrated on coco128), batch 1, every model and runtime interleaved at each size. Writes a PNG (one panel
per runtime, a line per family) and a markdown table.

    python benchmarks/latency_vs_size.py --sizes 320 640 960 1280 --runtimes torch onnxruntime openvino-int8 \
        --out benchmarks/results/latency_vs_size
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ultralytics import YOLO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from backbone_speed import onnx_session
from int8_matrix import calibration_set

RUNTIME_TEXT = {
    "torch": f"PyTorch {torch.__version__} eager with Ultralytics fuse(), fp32",
    "onnxruntime": "ONNX Runtime (graph traced at each size, opset 17), fp32",
    "openvino-int8": "OpenVINO INT8 (one dynamic export per model, calibrated on 300 coco128 images; the CPU plugin's "
    "default precision)",
}
RUNTIMES = list(RUNTIME_TEXT)

MODELS = {
    "yolov8n": "yolov8n.yaml",
    "yolo26n": "yolo26n.yaml",
    "MobileViT-XS": str(ROOT / "cfg" / "yolov8-mobilevit.yaml"),
    "MobileViTv2 1.0": str(ROOT / "cfg" / "yolov8-mobilevitv2.yaml"),
    "MobileNetV3-L": str(ROOT / "cfg" / "yolov8-mobilenetv3-large.yaml"),
    "Mobile-Former-26M": str(ROOT / "cfg" / "yolov8-mobileformer-26m.yaml"),
}


def openvino_int8(config: str, calibration: Path, folder: Path):
    """A compiled OpenVINO INT8 model of ``config`` (random weights) that takes any input size."""
    import openvino as ov

    src = folder / f"{Path(config).stem}.pt"
    YOLO(config).save(src)
    xml = YOLO(str(src)).export(
        format="openvino", int8=True, dynamic=True, data=str(calibration), imgsz=640, device="cpu"
    )
    return ov.Core().compile_model(next(Path(xml).glob("*.xml")), "CPU")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", type=int, default=[320, 480, 640, 960, 1280])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/latency_vs_size")
    ap.add_argument("--runtimes", nargs="+", default=RUNTIMES[:2], choices=RUNTIMES)
    ap.add_argument("--coco128", default=str(ROOT.parent / "shared" / "datasets" / "coco128"), help="INT8 calibration")
    args = ap.parse_args()
    threads = torch.get_num_threads()
    models = {k: YOLO(v).model.fuse().eval() for k, v in MODELS.items()}
    keys = [(r, k) for r in args.runtimes for k in models]
    ms = {key: [] for key in keys}
    loads = []
    folder = Path(tempfile.mkdtemp(prefix="latency_vs_size_"))
    if "openvino-int8" in args.runtimes:
        calibration = calibration_set(Path(args.coco128), folder)
        int8 = {k: openvino_int8(v, calibration, folder) for k, v in MODELS.items()}
    for size in args.sizes:
        x = torch.rand(1, 3, size, size)
        array = x.numpy()
        calls = {}
        for runtime, k in keys:
            if runtime == "torch":
                calls[(runtime, k)] = lambda m=models[k], x=x: m(x)
            elif runtime == "openvino-int8":
                calls[(runtime, k)] = lambda m=int8[k], x=array: m(x)
            else:
                calls[(runtime, k)] = onnx_session(models[k], x, threads, folder)
        with torch.inference_mode():
            for call in calls.values():
                call()  # warm-up
            times = {key: [] for key in keys}
            for _ in range(args.repeats):
                for key, call in calls.items():  # interleaved
                    t = time.perf_counter()
                    call()
                    times[key].append((time.perf_counter() - t) * 1e3)
        for key in keys:
            ms[key].append(float(np.median(times[key])))
        loads.append(os.getloadavg())
        print(size, {f"{r}/{k}": round(v[-1], 1) for (r, k), v in ms.items() if v}, flush=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.runtimes), figsize=(7 * len(args.runtimes), 4.5), squeeze=False)
    for ax, runtime in zip(axes[0], args.runtimes):
        for k in models:
            ax.plot(args.sizes, ms[(runtime, k)], marker="o", label=k, linestyle="--" if k.startswith("yolo") else "-")
        ax.set(title=runtime, xlabel="imgsz", ylabel="ms (CPU, batch 1)", yscale="log", xticks=args.sizes)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(f"{args.out}.png", dpi=110)
    lines = [
        (
            f"CPU latency (ms) vs imgsz (`python benchmarks/latency_vs_size.py --sizes {' '.join(map(str, args.sizes))} "
            f"--runtimes {' '.join(args.runtimes)} --repeats {args.repeats}`): "
            + "; ".join(RUNTIME_TEXT[r] for r in args.runtimes)
            + f"; batch 1, {threads} "
            f"threads, 1 warm-up then median of {args.repeats} runs, every model and runtime interleaved at each size; "
            "random weights. Load average (1/5/15 min) after each size: "
            f"{'; '.join(' / '.join(f'{v:.1f}' for v in la) for la in loads)} (2 cores shared with other jobs)."
        ),
        "",
        "| runtime | model | " + " | ".join(map(str, args.sizes)) + " |",
        "|---|---|" + "---|" * len(args.sizes),
        *(f"| {r} | {k} | " + " | ".join(f"{t:.0f}" for t in v) + " |" for (r, k), v in ms.items()),
        "",
        *(
            f"Ratio to yolov8n ({r}): "
            + "; ".join(
                f"{k}: " + ", ".join(f"{t / b:.1f}x" for t, b in zip(ms[(r, k)], ms[(r, "yolov8n")]))
                for k in models
                if k != "yolov8n"
            )
            + "\n"
            for r in args.runtimes
        ),
    ]
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
