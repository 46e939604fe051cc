"""Fixed-size exports before and after the static export mode: the flagship exported at 640 with `dynamic=False`,
once as before (every MobileViT block traced through its resize path) and once under the plugin's exporter wrapper
(direct path on even maps), then ONNX Runtime and OpenVINO latency of both, interleaved.

    python benchmarks/static_export.py --out benchmarks/results/static_export.md
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import torch
from ultralytics import YOLO
from ultralytics.engine import exporter

from yolo_mobilevit.export import make_exporter_call

ROOT = Path(__file__).resolve().parents[1]


def export(pt: Path, fmt: str, imgsz: int, static_mode: bool) -> Path:
    original = exporter.Exporter.__call__
    if static_mode:
        exporter.Exporter.__call__ = make_exporter_call(original)
    try:
        return Path(YOLO(str(pt)).export(format=fmt, imgsz=imgsz, device="cpu"))
    finally:
        exporter.Exporter.__call__ = original


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cfg", default="yolov8-mobilevit.yaml")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/results/static_export.md")
    args = ap.parse_args()
    import onnxruntime as ort
    import openvino as ov

    work = Path(tempfile.mkdtemp())
    runners, ops = {}, {}
    for label, mode in [("before", False), ("after", True)]:
        pt = work / label / "model.pt"
        pt.parent.mkdir()
        YOLO(str(ROOT / "cfg" / args.cfg)).save(pt)
        f = export(pt, "onnx", args.imgsz, mode)
        nodes = onnx.load(str(f)).graph.node
        ops[label] = Counter(n.op_type for n in nodes)
        session = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        runners[("ONNX Runtime", label)] = lambda x, s=session, n=name: s.run(None, {n: x})
        xml = next(export(pt, "openvino", args.imgsz, mode).glob("*.xml"))
        compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        runners[("OpenVINO", label)] = lambda x, c=compiled: c(x)
    x = np.random.default_rng(0).random((1, 3, args.imgsz, args.imgsz), dtype=np.float32)
    for run in runners.values():
        for _ in range(3):
            run(x)
    times = {k: [] for k in runners}
    for _ in range(args.repeats):  # interleaved: load from other jobs hits every variant alike
        for k, run in runners.items():
            t = time.perf_counter()
            run(x)
            times[k].append((time.perf_counter() - t) * 1e3)
    load = os.getloadavg()
    med = {k: float(np.median(v)) for k, v in times.items()}
    lines = [
        (
            f"Static (`dynamic=False`) export of `{args.cfg}` at {args.imgsz}: before = traced through the resize path "
            "(one-graph-for-every-size behaviour), after = the plugin's static export mode. "
            f"`python benchmarks/static_export.py` (random weights; torch {torch.__version__}, onnxruntime {ort.__version__}, "
            f"openvino {ov.__version__}); batch 1, fp32, runtimes' default threads, 3 warm-up runs, median of {args.repeats} "
            f"interleaved runs; load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} on 2 cores shared with other jobs."
        ),
        "",
        "| graph | Resize | Shape | Gather | Concat | nodes | ONNX Runtime ms | OpenVINO ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label in ("before", "after"):
        c = ops[label]
        lines.append(
            f"| {label} | {c['Resize']} | {c['Shape']} | {c['Gather']} | {c['Concat']} | {sum(c.values())} | "
            f"{med[('ONNX Runtime', label)]:.1f} | {med[('OpenVINO', label)]:.1f} |"
        )
    for rt in ("ONNX Runtime", "OpenVINO"):
        lines.append(f"\n{rt}: after / before = {med[(rt, 'after')] / med[(rt, 'before')]:.3f}")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
