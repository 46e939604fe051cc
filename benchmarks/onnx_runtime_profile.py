"""Where ONNX Runtime spends its time on our MobileViT-XS backbone and on timm's (identical weights), and what ONNX
Runtime's fused CPU attention would save.

    python benchmarks/onnx_runtime_profile.py          # CPU, 2 threads, batch 1, 640, opset 17

Three graphs, exported as ``backbone_speed.py`` exports them: timm's stem and stages; our fused backbone; our fused
backbone with each attention exported as one ``com.microsoft.MultiHeadAttention`` node (ONNX Runtime's fused CPU
attention; a graph only ONNX Runtime runs, so the plugin does not export it). Prints each graph's P3/P4/P5 error
against timm in PyTorch, its median latency (round-robin, as in ``backbone_speed.py``) and ONNX Runtime's profiler
kernel time per operator type.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from backbone_speed import ROOT, Backbone, build_pair, max_relative_error, median_ms

from yolo_mobilevit.modules.attention import merge_heads, split_heads
from yolo_mobilevit.tools.timing import ort_feed, ort_session


class FusedAttention(torch.autograd.Function):
    """SDPA over (B, N, d) q, k, v split into heads; exported as ONNX Runtime's MultiHeadAttention node."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
        return merge_heads(F.scaled_dot_product_attention(*(split_heads(t, heads) for t in (q, k, v))))

    @staticmethod
    def symbolic(g: Any, q: Any, k: Any, v: Any, heads: int) -> Any:
        return g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=heads)


def fused_attention_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    q, k, v = self.qkv(x).chunk(3, dim=-1)
    return self.proj(FusedAttention.apply(q, k, v, self.heads))


def kernel_ms_by_op(path: Path, feed: dict[str, Any], threads: int, runs: int, folder: Path) -> dict[str, float]:
    """Milliseconds of kernel time per operator type and run, from ONNX Runtime's profiler (after 3 warm-up runs)."""
    sess = ort_session(path, threads, str(folder / path.stem))
    for _ in range(3 + runs):
        sess.run(None, feed)
    events = json.loads(Path(sess.end_profiling()).read_text())
    total: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            total[event["args"]["op_name"]] += event["dur"]
    return {op: us / 1000 / (3 + runs) for op, us in total.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timm", default="mobilevit_xs")
    parser.add_argument("--cfg", type=Path, default=ROOT / "cfg" / "yolov8n-mobilevit.yaml")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    from yolo_mobilevit.modules.mobilevit import MultiHeadSelfAttention

    torch.set_num_threads(args.threads)
    timm_model, _, detector = build_pair(args.timm, args.cfg)
    ours = Backbone(copy.deepcopy(detector).fuse(), (3, 4, 5)).eval()
    x = torch.rand(1, 3, args.imgsz, args.imgsz)
    with torch.no_grad():
        reference = timm_model(x)

    with tempfile.TemporaryDirectory() as tmp:
        folder, paths = Path(tmp), {}
        for name, model in (("timm", timm_model), ("ours (fused)", ours)):
            paths[name] = folder / f"{len(paths)}.onnx"
            torch.onnx.export(model, (x,), str(paths[name]), opset_version=17, dynamo=False)
        plain_forward = MultiHeadSelfAttention.forward
        MultiHeadSelfAttention.forward = fused_attention_forward
        try:
            paths["ours (fused), ORT fused attention"] = folder / "2.onnx"
            torch.onnx.export(
                ours, (x,), str(folder / "2.onnx"), opset_version=17, dynamo=False, custom_opsets={"com.microsoft": 1}
            )
        finally:
            MultiHeadSelfAttention.forward = plain_forward

        sessions = {name: ort_session(path, args.threads) for name, path in paths.items()}
        feeds = {name: ort_feed(s, x) for name, s in sessions.items()}
        print(f"\nONNX Runtime CPU, {args.threads} threads; batch 1, {args.imgsz}x{args.imgsz}, fp32, opset 17\n")
        print("| graph | max relative error vs timm (PyTorch) | median ms |\n|---|---|---|")
        latency = median_ms(
            {name: (lambda s=s, f=feeds[name]: s.run(None, f)) for name, s in sessions.items()},
            args.repeats,
            args.warmup,
            cuda=False,
        )
        for name, s in sessions.items():
            out = [torch.from_numpy(a) for a in s.run(None, feeds[name])]
            print(f"| {name} | {max_relative_error(out, reference):.1e} | {latency[name]:.1f} |")

        profiles = {name: kernel_ms_by_op(path, feeds[name], args.threads, 10, folder) for name, path in paths.items()}
        ops = sorted({op for p in profiles.values() for op in p}, key=lambda op: -profiles["ours (fused)"].get(op, 0))
        print("\nkernel ms per run by operator type (ONNX Runtime profiler, mean of 13 runs)\n")
        print("| operator | " + " | ".join(profiles) + " |\n|---|" + "---|" * len(profiles))
        for op in ops:
            if max(p.get(op, 0) for p in profiles.values()) >= 0.5:
                print(f"| {op} | " + " | ".join(f"{p.get(op, 0):.1f}" for p in profiles.values()) + " |")
        print("| total | " + " | ".join(f"{sum(p.values()):.1f}" for p in profiles.values()) + " |")


if __name__ == "__main__":
    main()
