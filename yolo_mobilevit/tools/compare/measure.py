"""Per-model measurements in the model's own process: parameters, GFLOPs, latency (PyTorch eager on the CPU and GPU,
ONNX Runtime on the CPU) and the peak memory of those runs."""

from __future__ import annotations

import os
from collections.abc import Callable
from copy import deepcopy
from functools import partial
from pathlib import Path
from typing import Any

from ..timing import ort_feed, ort_session
from .memory import time_and_peak_cuda, time_and_peak_rss


def model_stats(model: Any, imgsz: int) -> dict[str, float]:
    """Parameters (all, backbone rows) and GFLOPs (= 2 x MACs) at ``imgsz`` x ``imgsz`` of a built Ultralytics model:
    as ``yolo`` prints them (thop; blind to fused attention kernels) and with attention counted."""
    import torch
    from ultralytics.utils.torch_utils import get_flops

    from ...layer_info import backbone_length
    from ..flops import count_macs

    n_backbone = backbone_length(model)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "backbone_params": sum(p.numel() for m in model.model[:n_backbone] for p in m.parameters()),
        "gflops_ultralytics": get_flops(model, imgsz),
        "gflops_attention": 2 * count_macs(model, torch.zeros(1, 3, imgsz, imgsz)) / 1e9,
    }


def default_threads() -> int:
    """Physical cores this process may use: torch's own default, which importing Ultralytics overrides (it sets
    OMP_NUM_THREADS=1 when unset)."""
    import psutil

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(psutil.cpu_count(logical=False) or usable, usable))


def gpu_device(device: str | None) -> str | None:
    """The CUDA device to time on: the first one ``--device`` names, cuda:0 when it names none; None without CUDA or
    with ``--device cpu``/``mps``."""
    import torch

    if not torch.cuda.is_available() or (device or "").strip().lower() in {"cpu", "mps"}:
        return None
    first = (device or "").replace("cuda:", "").split(",")[0].strip()
    return f"cuda:{int(first) if first.isdigit() else 0}"


def measure(
    spec: str,
    out_dir: Path,
    imgsz: int,
    batches: list[int],
    repeats: int,
    warmup: int,
    threads: int,
    onnx: bool,
    simplify: bool,
    gpu: str | None,
    progress: Callable[[str], None] = lambda phase: None,
) -> dict[str, Any]:
    """Params, GFLOPs, latency and peak memory of one model (steps 1 to 3 of :mod:`yolo_mobilevit.tools.compare`);
    ``progress(phase)`` is called as each phase starts."""
    import torch
    from ultralytics import YOLO

    progress("latency")
    res: dict[str, Any] = {}
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yolo = YOLO(spec, verbose=False)
        model = yolo.model.float().eval()
        res.update(model_stats(deepcopy(model), imgsz))
        fused = deepcopy(model).fuse(verbose=False).eval()  # what AutoBackend hands `yolo predict`
        for p in fused.parameters():
            p.requires_grad = False

        with torch.inference_mode():
            for b in batches:
                run = partial(fused, torch.rand(b, 3, imgsz, imgsz))
                res[f"cpu_ms_b{b}"], res[f"cpu_rss_mb_b{b}"], res["rss_method"] = time_and_peak_rss(
                    run, repeats, warmup
                )
                del run
        if gpu:
            on_gpu = deepcopy(fused).to(gpu)
            res["gpu_name"] = torch.cuda.get_device_name(gpu)
            with torch.inference_mode():
                for b in batches:
                    run = partial(on_gpu, torch.rand(b, 3, imgsz, imgsz, device=gpu))
                    res[f"gpu_ms_b{b}"], res[f"gpu_mem_mb_b{b}"] = time_and_peak_cuda(run, gpu, repeats, warmup)
                    del run
            del on_gpu
            torch.cuda.empty_cache()
        del fused

        if onnx:
            import onnxruntime as ort

            progress("ONNX")
            res["ort_version"] = ort.__version__
            for b in batches:
                yolo.model.pt_path = str(out_dir / f"{out_dir.name}_b{b}.pt")  # the Exporter writes beside this
                path = yolo.export(format="onnx", imgsz=imgsz, batch=b, device="cpu", simplify=simplify)
                session = ort_session(path, threads)
                run = partial(session.run, None, ort_feed(session, torch.rand(b, 3, imgsz, imgsz)))
                res[f"ort_ms_b{b}"], res[f"ort_rss_mb_b{b}"], _ = time_and_peak_rss(run, repeats, warmup)
                del session, run
    finally:
        torch.set_num_threads(threads_before)
    return res
