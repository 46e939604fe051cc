"""Our MobileViT backbone against timm's implementation of the same architecture, carrying identical weights, in one
process; plus the whole YOLOv8-MobileViT against YOLOv8n.

    python benchmarks/backbone_speed.py                      # CPU: fp32, batch 1, 640, 2 threads, eager + ONNX Runtime
    python benchmarks/backbone_speed.py --device cuda --batch 32 --half   # GPU: fp16, batch 32

timm's ``mobilevit_xs`` stem and stages (random init, BN statistics randomised) is converted with ``yolo_mobilevit.convert`` into
``cfg/yolov8n-mobilevit.yaml``; the P3/P4/P5 outputs of both are compared before timing. "ours (fused)" is the model
as ``yolo predict`` runs it (``model.fuse()`` folds every conv+BN); "ours (unfused)" isolates the implementation.
Latency: median of ``--repeats`` runs after ``--warmup`` runs, in milliseconds, the models timed round-robin.
"ATen ops per forward" counts the operators one forward dispatches on the timed device (views, detaches and bare
allocations excluded): on a GPU each launches at least one kernel, and at batch 1 launches rather than arithmetic set
eager latency. On a GPU the table adds our fused backbone in channels-last memory (weights and input), which the plugin
does not use there by default.
"""

from __future__ import annotations

import argparse
import copy
import functools
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from yolo_mobilevit.tools.timing import interleaved_latency, ort_feed, ort_session

ROOT = Path(__file__).resolve().parents[1]


class TimmFeatures(nn.Module):
    """timm MobileViT's stem and stages (its own modules, run in order), returning the last three stage outputs
    (P3, P4, P5): the paper's detector taps, before the classifier's final 1x1 conv."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.stem, self.stages = model.stem, model.stages

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x, out = self.stem(x), []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out[-3:]


class ChannelsLast(nn.Module):
    """Runs ``model`` on a channels-last copy of its input (what a user could do by hand with timm)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model(x.contiguous(memory_format=torch.channels_last))


class Backbone(nn.Module):
    """The plugin rows of an Ultralytics model up to P5, returning (P3, P4, P5)."""

    def __init__(self, model: nn.Module, taps: tuple[int, int, int]) -> None:
        super().__init__()
        self.layers = model.model[: taps[-1] + 1]
        self.taps = taps

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


def build_pair(name: str, cfg: Path) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(timm features, our backbone, our whole detector) with the same backbone weights."""
    import timm
    from ultralytics import YOLO

    from yolo_mobilevit.convert import convert_checkpoint

    torch.manual_seed(0)
    ref = timm.create_model(name, pretrained=False)
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(ref.state_dict(), Path(tmp) / "ref.pth")
        convert_checkpoint(Path(tmp) / "ref.pth", cfg, Path(tmp) / "ours.pt", verbose=False)
        detector = YOLO(str(Path(tmp) / "ours.pt")).model.float().eval()
    return TimmFeatures(ref).eval(), Backbone(detector, (3, 4, 5)).eval(), detector


def median_ms(runs: dict[str, Callable[[], object]], repeats: int, warmup: int, cuda: bool) -> dict[str, float]:
    """Median milliseconds per callable, timed round-robin (:func:`yolo_mobilevit.tools.timing.interleaved_latency`)
    under ``torch.no_grad``, synchronising the GPU around each run when ``cuda``."""
    with torch.no_grad():
        latency = interleaved_latency(runs, warmup, repeats, sync=torch.cuda.synchronize if cuda else None)
    return {name: t.median_ms for name, t in latency.items()}


def onnx_session(model: nn.Module, x: torch.Tensor, threads: int, folder: Path) -> Callable[[], object]:
    """An ONNX Runtime CPU session of ``model`` traced at ``x`` (opset 17), as a no-argument callable."""
    path = folder / f"m{len(list(folder.iterdir()))}.onnx"
    torch.onnx.export(model, (x,), str(path), opset_version=17, dynamo=False)
    session = ort_session(path, threads)
    feed = ort_feed(session, x)
    return lambda: session.run(None, feed)


class OpCounter(TorchDispatchMode):
    """Counts the ATen operators a forward dispatches that do work: views, detaches and bare allocations excluded.
    On a GPU each counted one launches at least one kernel, which is what batch-1 eager latency pays for."""

    NO_KERNEL = ("detach", "empty", "empty_like", "empty_strided", "lift_fresh")

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        self.count += not (func.is_view or func.overloadpacket.__name__ in self.NO_KERNEL)
        return func(*args, **(kwargs or {}))


def ops_per_forward(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), OpCounter() as counter:
        model(x)
    return counter.count


def max_relative_error(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(((p.float() - q.float()).abs().max() / q.float().abs().max()).item() for p, q in zip(a, b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timm", default="mobilevit_xs")
    parser.add_argument("--cfg", type=Path, default=ROOT / "cfg" / "yolov8n-mobilevit.yaml")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--half", action="store_true", help="fp16 (GPU)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-onnx", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    from ultralytics import YOLO

    device, cuda = torch.device(args.device), args.device.startswith("cuda")
    dtype = torch.float16 if args.half else torch.float32
    timm_model, ours, detector = build_pair(args.timm, args.cfg)
    yolov8n = YOLO("yolov8n.yaml").model.float().eval().fuse()
    x = torch.rand(args.batch, 3, args.imgsz, args.imgsz)

    with torch.no_grad():
        error = max_relative_error(ours(x), timm_model(x))
    detector = copy.deepcopy(detector).fuse()  # ``ours`` keeps the unfused layers
    ours_fused = Backbone(detector, (3, 4, 5)).eval()
    with torch.no_grad():
        error_fused = max_relative_error(ours_fused(x), timm_model(x))

    models = {
        f"timm {args.timm} (stem + stages)": timm_model,
        f"timm {args.timm}, channels-last input": ChannelsLast(timm_model),
        "ours (unfused)": ours,
        "ours (fused, as yolo predict)": ours_fused,
        f"YOLOv8-MobileViT ({args.cfg.name}, fused)": detector,
        "YOLOv8n (fused)": yolov8n,
    }
    on_device = None
    if cuda or args.half:  # the same check where the timing runs: each model in its timed precision vs timm in fp32
        with torch.no_grad():
            ref = [t.float() for t in timm_model.to(device)(x.to(device))]
    xd = x.to(device, dtype)
    models = {name: model.to(device, dtype) for name, model in models.items()}
    if cuda or args.half:
        with torch.no_grad():
            on_device = (max_relative_error(timm_model(xd), ref), max_relative_error(ours_fused(xd), ref))
    if cuda:  # on the CPU our rows already run channels-last in eval; on the GPU it is an option, measured here
        channels_last = copy.deepcopy(ours_fused).to(memory_format=torch.channels_last)
        models["ours (fused), channels-last weights and input"] = ChannelsLast(channels_last)
    eager = median_ms(
        {name: functools.partial(model, xd) for name, model in models.items()}, args.repeats, args.warmup, cuda
    )
    onnx = {}
    if not args.no_onnx and not cuda:
        with tempfile.TemporaryDirectory() as tmp:
            sessions = {name: onnx_session(model.float(), x, args.threads, Path(tmp)) for name, model in models.items()}
            onnx = median_ms(sessions, args.repeats, args.warmup, cuda=False)
    ops = {name: ops_per_forward(model, xd) for name, model in models.items()}
    rows = [(name, f"{eager[name]:.1f}", f"{onnx[name]:.1f}" if onnx else "-", str(ops[name])) for name in models]

    device_name = torch.cuda.get_device_name(device) if cuda else f"CPU, {args.threads} threads"
    print(f"\n{device_name}; batch {args.batch}, {args.imgsz}x{args.imgsz}, {'fp16' if args.half else 'fp32'}; "
          f"torch {torch.__version__}; `{' '.join(['python', *sys.argv])}`")  # fmt: skip
    print(f"P3/P4/P5 vs timm: max relative error {error:.1e} (unfused), {error_fused:.1e} (fused)")
    if on_device:
        print(f"on {args.device} in {'fp16' if args.half else 'fp32'}, vs timm in fp32 there: max relative error "
              f"{on_device[0]:.1e} (timm), {on_device[1]:.1e} (ours, fused)")  # fmt: skip
    print()
    print("| model | PyTorch eager ms | ONNX Runtime ms | ATen ops per forward |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    names = list(models)
    timm_ms, timm_cl_ms, unfused_ms, fused_ms = (float(rows[k][1]) for k in range(4))
    print(f"\nbackbone speed-up over timm: {timm_ms / unfused_ms:.2f}x unfused, {timm_ms / fused_ms:.2f}x fused; "
          f"over timm with channels-last input: {timm_cl_ms / fused_ms:.2f}x fused")  # fmt: skip
    if onnx:
        print(f"ONNX Runtime: {onnx[names[0]] / onnx[names[3]]:.2f}x (fused vs timm)")
    if len(rows) > 6:
        print(f"over timm, ours fused and channels-last: {timm_ms / float(rows[6][1]):.2f}x")
    print(f"YOLOv8-MobileViT / YOLOv8n: {float(rows[4][1]) / float(rows[5][1]):.2f}x")


if __name__ == "__main__":
    main()
