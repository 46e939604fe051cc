"""Windowed MobileViT attention (``cfg/*-mobilevit-win.yaml``) beside the global flagship, timm's MobileViT-XS with the
same YOLOv8 neck, YOLOv8n and YOLO26n, in one process, every model timed round-robin:

1. outputs: P3/P4/P5 of the windowed flagship against the global one on the same converted weights (a timm
   ``mobilevit_xs`` with seeded random weights: no download), at 256 (equal: every map fits one window), 640, 1280;
2. PyTorch eager latency, fp32, batch 1, ``model.fuse()``, ``--threads`` threads, at ``--sizes``;
3. a training step (forward, loss, backward; batch 8 at 320, fp32, ``--threads`` threads);
4. OpenVINO fp32 latency at 640 (``format=openvino`` static exports, compiled with ``INFERENCE_PRECISION_HINT=f32``
   so that CPUs with AMX / AVX512-BF16 do not run them in bf16). Last: once OpenVINO has run, its CPU plugin's
   threads slow PyTorch in the same process (every model's training step about 1.5x slower).

    python benchmarks/window_speed.py --out benchmarks/results/window_speed.md

The machine may be shared: the results file states the load average; compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolo_mobilevit.tools.timing import interleaved_latency

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from backbone_speed import TimmFeatures

GLOBAL, WINDOWED, WINDOWED26 = "yolov8-mobilevit.yaml", "yolov8-mobilevit-win.yaml", "yolo26-mobilevit-win.yaml"


class TimmWithNeck(nn.Module):
    """timm's MobileViT stem and stages as P3/P4/P5 (layers 3, 4, 5 of the flagship), then the flagship's own SPPF,
    neck and head: the same detector with timm's backbone implementation."""

    def __init__(self, timm_features: nn.Module, detector: nn.Module) -> None:
        super().__init__()
        self.backbone, self.layers = timm_features, detector.model

    def forward(self, x: torch.Tensor):
        y: list = [None] * len(self.layers)
        y[3], y[4], y[5] = self.backbone(x)
        x = y[5]
        for m in self.layers[6:]:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y[m.i] = x
        return x


def converted_models(folder: Path) -> tuple[nn.Module, dict[str, nn.Module]]:
    """timm mobilevit_xs (seeded random weights, BN statistics randomised) and the plugin detectors carrying its
    weights, converted strictly (unfused, eval)."""
    import timm
    from ultralytics.nn.tasks import load_checkpoint

    from yolo_mobilevit.convert import convert_checkpoint

    torch.manual_seed(0)
    ref = timm.create_model("mobilevit_xs", pretrained=False)
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    torch.save(ref.state_dict(), folder / "ref.pth")
    models = {}
    for cfg in (GLOBAL, WINDOWED, WINDOWED26):
        convert_checkpoint(folder / "ref.pth", ROOT / "cfg" / cfg, folder / f"{cfg}.pt", strict=True, verbose=False)
        models[cfg] = load_checkpoint(folder / f"{cfg}.pt")[0].float().eval()
    return TimmFeatures(ref).eval(), models


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| over the whole map."""
    return ((a - b).norm() / b.norm()).item()


def output_differences(models: dict[str, nn.Module], sizes: list[int]) -> list[str]:
    from yolo_mobilevit.tools.features import backbone_features

    rows = ["| input | P3 | P4 | P5 |", "|---|---|---|---|"]
    for size in sizes:
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
        with torch.no_grad():
            a, b = backbone_features(models[WINDOWED], x), backbone_features(models[GLOBAL], x)
        rows.append(f"| {size} | " + " | ".join(f"{relative_difference(a[k], b[k]):.2e}" for k in a) + " |")
    return rows


def eager_latency(runs: dict[Any, nn.Module], sizes: list[int], repeats: int, warmup: int) -> dict[Any, list[float]]:
    """Median ms of every model of ``runs`` at each size (eager, inference mode, round-robin), by ``runs``' keys."""
    ms: dict[Any, list[float]] = {name: [] for name in runs}
    for size in sizes:
        x = torch.rand(1, 3, size, size)
        with torch.inference_mode():
            latency = interleaved_latency({k: functools.partial(m, x) for k, m in runs.items()}, warmup, repeats)
        for name, t in latency.items():
            ms[name].append(t.median_ms)
        print(size, {k: round(v[-1], 1) for k, v in ms.items()}, f"load {os.getloadavg()[0]:.1f}", flush=True)
    return ms


def openvino_latency(files: dict[str, Path], size: int, threads: int, repeats: int, warmup: int) -> dict[str, float]:
    import openvino as ov
    from ultralytics import YOLO

    core = ov.Core()
    compiled = {}
    for name, pt in files.items():
        folder = Path(YOLO(str(pt)).export(format="openvino", imgsz=size, device="cpu"))
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        compiled[name] = core.compile_model(next(folder.glob("*.xml")), "CPU", config)
    x = torch.rand(1, 3, size, size).numpy()
    latency = interleaved_latency({k: functools.partial(c, x) for k, c in compiled.items()}, warmup, repeats)
    return {k: t.median_ms for k, t in latency.items()}


def training_step(models: dict[str, tuple[nn.Module, nn.Module]], batch: int, size: int, repeats: int, warmup: int):
    """Images per second of forward + loss + backward; ``models``: name -> (module to run, detector whose loss)."""
    from ultralytics.cfg import get_cfg

    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=g)
    n = 4 * batch
    targets = {
        "img": images,
        "batch_idx": torch.arange(batch).repeat_interleave(4).float(),
        "cls": torch.randint(0, 80, (n, 1), generator=g).float(),
        "bboxes": torch.rand(n, 4, generator=g) * 0.5 + torch.tensor([0.25, 0.25, 0.0, 0.0]),
    }

    def step(module: nn.Module, detector: nn.Module) -> None:
        loss, _ = detector.loss(targets, module(images))
        loss.sum().backward()

    for module, detector in models.values():
        detector.args = get_cfg()
        module.train()
    latency = interleaved_latency({k: functools.partial(step, *m) for k, m in models.items()}, warmup, repeats)
    return {k: batch / (t.median_ms / 1e3) for k, t in latency.items()}


def fused_models(timm_features: nn.Module, converted: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """The models every table compares, fused, in eval mode: YOLOv8n, YOLO26n, timm's MobileViT-XS with the
    flagship's neck, and the global and windowed flagships on the same converted weights."""
    from ultralytics import YOLO

    return {
        "yolov8n": YOLO("yolov8n.yaml").model.fuse().eval(),
        "yolo26n": YOLO("yolo26n.yaml").model.fuse().eval(),
        "timm MobileViT-XS + v8 neck": TimmWithNeck(timm_features, copy.deepcopy(converted[GLOBAL]).fuse()).eval(),
        "flagship (global)": copy.deepcopy(converted[GLOBAL]).fuse(),
        "flagship windowed": copy.deepcopy(converted[WINDOWED]).fuse(),
        "yolo26 flagship windowed": copy.deepcopy(converted[WINDOWED26]).fuse(),
    }


def add_timing_arguments(ap: argparse.ArgumentParser) -> None:
    """The options every CPU speed script here shares: input sizes, threads, timed and warm-up runs."""
    ap.add_argument("--sizes", nargs="+", type=int, default=[320, 640, 960, 1280])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_arguments(ap)
    ap.add_argument("--skip", nargs="*", default=[], choices=["eager", "openvino", "train"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "window_speed.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from ultralytics import YOLO

    folder = Path(tempfile.mkdtemp(prefix="window_speed_"))
    timm_features, converted = converted_models(folder)
    lines = [
        "# Windowed MobileViT attention: speed and outputs",
        "",
        f"`python benchmarks/window_speed.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        (
            f"torch {torch.__version__}, {args.threads} threads, fp32, batch 1 unless stated, "
            f"{args.warmup} warm-up then median of {args.repeats} runs, every model round-robin. "
            "Random weights (a seeded timm mobilevit_xs converted strictly into both flagships). "
            "The machine (2 cores) was shared with other sessions: read ratios between models of the same table."
        ),
        "",
        "## Windowed against global outputs (same weights), relative difference ||win - global|| / ||global||",
        "",
        *output_differences(converted, [256, 640, 1280]),
        "",
        (
            "Random weights say how far windows move the features, not what that does to accuracy: COCO-scale "
            "accuracy needs pretrained weights and a GPU training run."
        ),
    ]
    fused = fused_models(timm_features, converted)
    if "eager" not in args.skip:
        ms = eager_latency(fused, args.sizes, args.repeats, args.warmup)
        base, timm_name = ms["yolov8n"], "timm MobileViT-XS + v8 neck"
        lines += [
            "",
            f"## PyTorch eager, fused, ms (load average after: {os.getloadavg()[0]:.1f})",
            "",
            "| model | " + " | ".join(map(str, args.sizes)) + " |",
            "|---|" + "---|" * len(args.sizes),
            *(f"| {k} | " + " | ".join(f"{t:.0f}" for t in v) + " |" for k, v in ms.items()),
            "",
            "| ratio | " + " | ".join(map(str, args.sizes)) + " |",
            "|---|" + "---|" * len(args.sizes),
            *(
                f"| {k} / yolov8n | " + " | ".join(f"{t / b:.2f}x" for t, b in zip(v, base)) + " |"
                for k, v in ms.items()
                if k != "yolov8n"
            ),
            "| timm / flagship (global): speed-up | "
            + " | ".join(f"{t / g:.2f}x" for t, g in zip(ms[timm_name], ms["flagship (global)"]))
            + " |",
            "| timm / flagship windowed: speed-up | "
            + " | ".join(f"{t / g:.2f}x" for t, g in zip(ms[timm_name], ms["flagship windowed"]))
            + " |",
        ]
    if "train" not in args.skip:
        hybrid_detector = YOLO(str(folder / f"{GLOBAL}.pt")).model.float()
        plain = {
            "yolov8n": YOLO("yolov8n.yaml").model,
            "flagship (global)": YOLO(str(folder / f"{GLOBAL}.pt")).model.float(),
            "flagship windowed": YOLO(str(folder / f"{WINDOWED}.pt")).model.float(),
        }
        train = {k: (m, m) for k, m in plain.items()}
        train["timm MobileViT-XS + v8 neck"] = (
            TimmWithNeck(copy.deepcopy(timm_features), hybrid_detector),
            hybrid_detector,
        )
        ips = training_step(train, 8, 320, max(2, args.repeats // 2), 1)
        timm_ips = ips["timm MobileViT-XS + v8 neck"]
        lines += [
            "",
            "## Training step (forward, loss, backward), batch 8 at 320, fp32",
            "",
            "| model | img/s | / timm |",
            "|---|---|---|",
            *(f"| {k} | {v:.2f} | {v / timm_ips:.2f}x |" for k, v in ips.items()),
        ]
    if "openvino" not in args.skip:
        files = {"yolov8n": folder / "yolov8n.pt", "yolo26n": folder / "yolo26n.pt"}
        for name, path in files.items():
            YOLO(f"{name}.yaml").save(path)
        files |= {"flagship (global)": folder / f"{GLOBAL}.pt", "flagship windowed": folder / f"{WINDOWED}.pt"}
        ov = openvino_latency(files, 640, args.threads, args.repeats, args.warmup)
        lines += [
            "",
            "## OpenVINO fp32 at 640 (INFERENCE_PRECISION_HINT=f32), ms",
            "",
            "| model | ms | / yolov8n |",
            "|---|---|---|",
            *(f"| {k} | {v:.0f} | {v / ov['yolov8n']:.2f}x |" for k, v in ov.items()),
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
