"""Compare models on one dataset: size, compute, latency, memory, training throughput and accuracy.

``yolo-mobilevit compare MODEL ... [--data D] [KEY=VALUE ...]`` (argument parsing in ``cli.py``) runs every model in
its own fresh interpreter (:func:`run_job`), one after the other, so that no model's memory or threads leak into the
next one's numbers. Per model that process

1. counts parameters and GFLOPs twice: Ultralytics' figure (thop, what ``yolo`` prints) and with attention counted
   (:func:`yolo_mobilevit.tools.flops.count_macs`);
2. times forwards of the fused fp32 model (``model.fuse()``, as ``yolo predict`` runs it) on random input, for every
   batch size asked for: PyTorch eager on the CPU, PyTorch eager on the GPU when CUDA is available, and ONNX Runtime
   (CPU) on an ``Exporter`` ONNX export of the model, static shapes, one export per batch size; the median of the
   timed runs after warm-up ones. Model forward only: no letterboxing, no NMS;
3. records the peak memory of those runs above what was resident before them: on the CPU the process' peak resident
   set (``VmHWM``, reset through ``/proc/self/clear_refs`` after ``malloc_trim``; ``getrusage`` where that is not
   available), on the GPU ``torch.cuda.max_memory_allocated`` (weights and input excluded);
4. trains with ``YOLO(model).train(...)`` on one shared recipe into ``<output>/<model>/train``, timing the training
   epochs (validation excluded) for images per second, then validates ``best.pt`` with ``YOLO(best).val(...)`` into
   ``<output>/<model>/val`` for mAP50 and mAP50-95, and scores it under the COCO protocol (:mod:`.cocoeval`) into
   ``<output>/<model>/cocoeval`` for AP, AP50, AP75, APs, APm, APl and AR100. Without training (``--no-train``) a
   checkpoint (``.pt``) is validated as it is; a YAML is only measured.

The parent then writes ``results.md`` and ``results.csv`` (rows sorted by latency) and ``map_vs_latency.png`` (COCO AP
against latency, one marker per family) into the output folder. Without MODEL arguments: :data:`DEFAULT_MODELS`.
"""

from __future__ import annotations

import csv
import ctypes
import gc
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from . import task_metrics
from .cocoeval import METRICS as COCO_METRICS
from .pretraining import POLICIES as PRETRAINING_POLICIES
from .timing import measure_latency, ort_feed, ort_session


def __getattr__(name: str) -> Any:
    """``DEFAULT_MODELS`` (today's stock YOLO, then each family's flagships: the plugin's by bare name) and
    ``FAMILIES`` (``(group, marker)`` of the plot legend), read from the family registry when asked for."""
    from .. import families

    if name == "DEFAULT_MODELS":
        return tuple(families.flagships())
    if name == "FAMILIES":
        return tuple(families.compare_groups())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Keys the compare options own; as KEY=VALUE train arguments they would silently fork the shared recipe.
_OWN_KEYS = {
    "epochs": "--epochs",
    "imgsz": "--imgsz",
    "batch": "--batch",
    "seed": "--seed",
    "device": "--device",
    "data": "--data",
    "model": "the MODEL arguments",
    "project": "--project",
    "name": "--name",
    "exist_ok": "--exist-ok",
    "mode": "the compare command",
    "resume": "the compare command",
    "save_dir": "--project/--name",
    "pretrained": "--pretrained (one policy for every model)",
}
# Train arguments that also apply to the validation after training.
_VAL_KEYS = ("workers", "plots", "half", "single_cls", "classes")


class CompareError(ValueError):
    """A comparison that cannot start: a model or an argument is wrong. The message names it."""


# --------------------------------------------------------------------------------------------- shared helpers


def offline_dataset(name: str) -> Path | None:
    """The folder of dataset ``name`` in the offline datasets folder the user names in ``YOLO_MOBILEVIT_DATASETS``
    (it may not exist); None when the variable is unset."""
    root = os.environ.get("YOLO_MOBILEVIT_DATASETS")
    return Path(root) / name if root else None


def default_data() -> str:
    """coco128 from the offline datasets folder (:func:`offline_dataset`), else Ultralytics' ``coco128.yaml`` (which
    Ultralytics downloads)."""
    folder = offline_dataset("coco128")
    path = folder / "coco128.yaml" if folder else None
    return str(path) if path and path.is_file() else "coco128.yaml"


def model_stats(model: Any, imgsz: int) -> dict[str, float]:
    """Parameters (all, backbone rows) and GFLOPs (= 2 x MACs) at ``imgsz`` x ``imgsz`` of a built Ultralytics model:
    as ``yolo`` prints them (thop; blind to fused attention kernels) and with attention counted."""
    import torch
    from ultralytics.utils.torch_utils import get_flops

    from ..featuremap import backbone_length
    from .flops import count_macs

    n_backbone = backbone_length(model)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "backbone_params": sum(p.numel() for m in model.model[:n_backbone] for p in m.parameters()),
        "gflops_ultralytics": get_flops(model, imgsz),
        "gflops_attention": 2 * count_macs(model, torch.zeros(1, 3, imgsz, imgsz)) / 1e9,
    }


def markdown(rows: list[dict[str, str]]) -> str:
    """A markdown table of rows that share their keys (the keys are the header)."""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r[h] for h in header) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- inputs


def default_models() -> list[str]:
    """:data:`DEFAULT_MODELS` (bare names: they resolve from any folder, in every model's process)."""
    from ..families import flagships

    return flagships()


def family(name: str) -> tuple[str, str]:
    """(family, plot marker) of a model name: ``yolo26n-mobilevitv2`` -> ("MobileViTv2", "D")
    (:func:`yolo_mobilevit.families.group_of_name`)."""
    from ..families import group_of_name

    return group_of_name(name)


def check_model(spec: str) -> str:
    """Return the model argument in a form a process started elsewhere resolves the same way, or raise CompareError
    naming it: a checkpoint must exist; a YAML must exist, possibly with Ultralytics' scale letter added to its name
    (``cfg/yolov8n-mobilevit.yaml`` for ``cfg/yolov8-mobilevit.yaml``), or be a config Ultralytics or the plugin
    ships (``yolov8n.yaml``, ``yolov8n-mobilevit.yaml``)."""
    path = Path(spec)
    if path.suffix == ".pt":
        if not path.is_file():
            raise CompareError(f"model {spec!r}: checkpoint not found ({path.resolve()})")
        return str(path.resolve())
    if path.suffix not in {".yaml", ".yml"}:
        raise CompareError(f"model {spec!r}: expected a model YAML (.yaml) or a checkpoint (.pt)")
    from ultralytics.nn.tasks import yaml_model_load

    try:
        yaml_model_load(spec)
    except Exception as e:  # noqa: BLE001 (FileNotFoundError, YAML errors: all mean the same to the user)
        raise CompareError(
            f"model {spec!r}: not a readable model YAML (no such file here, with or without the scale letter, and "
            f"not a config Ultralytics or the plugin ships): {e}"
        ) from None
    # keep the name as given (it carries the scale letter); anchor a relative folder to this working directory
    return str(path.parent.resolve() / path.name) if path.parent != Path(".") or path.exists() else spec


def check_buildable(spec: str) -> None:
    """Build (or load) the model once here, so that a bad config row fails before any model trains."""
    from ultralytics import YOLO

    try:
        YOLO(spec, verbose=False)
    except Exception as e:  # noqa: BLE001 (any build error: name the model, keep the message)
        raise CompareError(f"model {spec!r}: {type(e).__name__}: {e}") from None


def parse_train_args(items: list[str]) -> dict[str, Any]:
    """``["lr0=0.01", "optimizer=SGD"]`` -> ``{"lr0": 0.01, "optimizer": "SGD"}``, typed as the ``yolo`` CLI types
    them; refuses unknown keys and the keys that the compare options set."""
    from ultralytics.cfg import DEFAULT_CFG_DICT, smart_value

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CompareError(f"train argument {item!r}: expected KEY=VALUE")
        if key in _OWN_KEYS:
            raise CompareError(f"train argument {item!r}: set {key} with {_OWN_KEYS[key]}")
        if key not in DEFAULT_CFG_DICT:
            raise CompareError(f"train argument {item!r}: {key!r} is not an Ultralytics setting")
        out[key] = smart_value(value.strip())
    return out


def labels(specs: list[str]) -> list[str]:
    """Short unique names for the table and the per-model folders: the file stem (``yolov8n-mobilevit``), the run
    folder too for ``.../RUN/weights/best.pt`` (``RUN-best``), and the folder above it where runs share a name
    (``yolov8n-seed0-best``, ``yolo26n-seed0-best``); ``-2``, ``-3`` for what still repeats."""

    def run_name(path: Path, levels: int) -> str:
        return "-".join([p.name for p in reversed(path.parents[1 : 1 + levels]) if p.name] + [path.stem])

    paths = [Path(s) for s in specs]
    runs = [run_name(p, 1) if p.suffix == ".pt" and p.parent.name == "weights" else None for p in paths]
    out: list[str] = []
    for path, run in zip(paths, runs):
        name = path.stem if run is None else run_name(path, 2) if runs.count(run) > 1 else run
        base, n = name, 2
        while name in out:
            name, n = f"{base}-{n}", n + 1
        out.append(name)
    return out


# --------------------------------------------------------------------------------------------- measurement (child)


def _malloc_trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back, so the baseline is what is live
    except (OSError, AttributeError):
        pass


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _reset_peak_rss() -> tuple[int, str]:
    """Hand freed heap back, reset the peak resident set where the OS allows; (resident bytes now, method)."""
    _malloc_trim()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS
        method = "VmHWM after clear_refs"
    except OSError:
        method = "getrusage ru_maxrss (process lifetime peak; can under-read)"
    return _rss(), method


def _peak_rss(method: str) -> int:
    if method.startswith("VmHWM"):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def time_and_peak_rss(fn: Callable[[], Any], repeats: int, warmup: int) -> tuple[float, float | None, str]:
    """(median ms, peak resident set above the one before the runs in MB (1e6 bytes), how the peak was read).

    The peak is None when it cannot be told apart from earlier peaks: ``ru_maxrss`` is the process' lifetime peak, so
    a reading at or below the resident set before the runs says nothing about them. ``VmHWM`` is reset just before
    the runs and never reads below what was resident then."""
    base, method = _reset_peak_rss()
    ms = measure_latency(fn, warmup, repeats).median_ms
    peak = _peak_rss(method) - base
    return ms, (peak / 1e6 if method.startswith("VmHWM") or peak > 0 else None), method


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
    """Params, GFLOPs, latency and peak memory of one model (see the module docstring); ``progress(phase)`` is
    called as each phase starts."""
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
            sync = partial(torch.cuda.synchronize, gpu)
            with torch.inference_mode():
                for b in batches:
                    run = partial(on_gpu, torch.rand(b, 3, imgsz, imgsz, device=gpu))
                    sync()
                    torch.cuda.reset_peak_memory_stats(gpu)
                    base = torch.cuda.memory_allocated(gpu)  # weights and input
                    res[f"gpu_ms_b{b}"] = measure_latency(run, warmup, repeats, sync=sync).median_ms
                    res[f"gpu_mem_mb_b{b}"] = (torch.cuda.max_memory_allocated(gpu) - base) / 1e6
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


class EpochClock:
    """Ultralytics callbacks that time each training epoch (batches only; the validation after it is excluded)."""

    def __init__(self) -> None:
        self.epochs: list[tuple[int, float]] = []  # (images, seconds)

    def start(self, trainer: Any) -> None:
        self.t0 = time.perf_counter()

    def end(self, trainer: Any) -> None:
        if getattr(trainer.device, "type", "") == "cuda":
            import torch

            torch.cuda.synchronize(trainer.device)
        self.epochs.append((len(trainer.train_loader.dataset), time.perf_counter() - self.t0))

    def images_per_s(self) -> float | None:
        """Over every epoch but the first (data loader start-up, caches), or the first when it is the only one."""
        timed = self.epochs[1:] or self.epochs
        seconds = sum(s for _, s in timed)
        return sum(n for n, _ in timed) / seconds if seconds > 0 else None


def train_and_val(
    spec: str,
    out_dir: Path,
    data: str,
    train: dict[str, Any],
    pretrained: str = "none",
    progress: Callable[[str], None] = lambda phase: None,
) -> dict[str, Any]:
    """Train one model on the shared recipe under the pretraining policy (:mod:`.pretraining`), then validate its
    best.pt; throughput, what the model started from, and accuracy."""
    import torch
    from ultralytics import YOLO

    from .pretraining import train as train_with_policy

    progress("train")
    model = YOLO(spec)
    clock = EpochClock()
    model.add_callback("on_train_epoch_start", clock.start)
    model.add_callback("on_train_epoch_end", clock.end)
    start = train_with_policy(model, pretrained, data=data, project=str(out_dir), name="train", exist_ok=True, **train)
    train_threads = torch.get_num_threads()
    trainer = model.trainer
    best = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
    res: dict[str, Any] = {
        "train_img_s": clock.images_per_s(),
        "train_epochs_timed": max(1, len(clock.epochs) - 1) if clock.epochs else 0,
        "train_images": clock.epochs[0][0] if clock.epochs else None,
        "train_threads": train_threads,
        "weights": str(best),
        "pretrained": start.description,
        "pretrained_loaded": start.loaded,
        "pretrained_problem": start.problem,
    }
    return res | validate(best, out_dir, data, train, progress)


def validate(
    weights: Path,
    out_dir: Path,
    data: str,
    settings: dict[str, Any],
    progress: Callable[[str], None] = lambda phase: None,
) -> dict[str, Any]:
    """mAP50 and mAP50-95 of ``YOLO(weights).val()`` and the COCO metrics (:func:`coco_metrics`) on ``data``'s val
    split, at the recipe's ``imgsz`` and device (and its ``single_cls``, ``classes``, ... where given)."""
    from ultralytics import YOLO

    progress("val")
    val = {k: settings[k] for k in _VAL_KEYS if k in settings}
    metrics = YOLO(weights).val(
        data=data,
        imgsz=settings["imgsz"],
        device=settings.get("device"),
        project=str(out_dir),
        name="val",
        exist_ok=True,
        **val,
    )
    box = getattr(metrics, "box", None)
    if box is None:
        return task_metrics.from_val(metrics)  # semantic / depth: mIoU, delta1, ...
    progress("COCO eval")
    return {"map50": float(box.map50), "map50_95": float(box.map), **coco_metrics(weights, out_dir, data, settings)}


def coco_metrics(weights: Path, out_dir: Path, data: str, train: dict[str, Any]) -> dict[str, Any]:
    """COCO-standard AP, AP50, AP75, APs, APm, APl, AR100 of ``weights`` (:mod:`.cocoeval`), keys ``coco_<metric>``."""
    from .cocoeval import run

    settings = {"imgsz": train["imgsz"], "single_cls": bool(train.get("single_cls", False))}
    settings |= {"device": train["device"]} if train.get("device") else {}
    report = run(str(weights), data, project=str(out_dir), name="cocoeval", exist_ok=True, **settings)
    return {f"coco_{k}": v for k, v in report["metrics"].items()}


@dataclass
class Job:
    """What one model's process does; written as JSON to ``<output>/<model>/job.json``."""

    spec: str
    label: str
    out_dir: str
    data: str
    imgsz: int
    batches: list[int]
    repeats: int
    warmup: int
    threads: int
    onnx: bool
    simplify: bool
    gpu: str | None
    train: dict[str, Any] | None = field(default=None)
    validate: dict[str, Any] | None = field(default=None)  # --no-train on a checkpoint: val + COCO metrics as it is
    pretrained: str = "none"  # the pretraining policy (.pretraining.POLICIES)
    index: int = 1  # this model's place in the comparison, for the progress lines
    total: int = 1
    started: float = field(default_factory=time.time)  # when the comparison started (time.time())


def run_job(job_file: str) -> int:
    """Entry point of a model's own process: measure, train, validate; results to ``results.json`` beside the job
    (rewritten after each step, so a failed step keeps the earlier numbers)."""
    import yolo_mobilevit

    yolo_mobilevit.register()
    job = Job(**json.loads(Path(job_file).read_text()))
    out_dir = Path(job.out_dir)
    results_file = out_dir / "results.json"
    res: dict[str, Any] = {"model": job.label, "source": job.spec}

    def progress(phase: str) -> None:
        elapsed = time.time() - job.started
        print(f"compare: model {job.index} of {job.total} ({job.label}): {phase}, {elapsed:.0f} s elapsed", flush=True)

    res.update(
        measure(
            job.spec,
            out_dir,
            job.imgsz,
            job.batches,
            job.repeats,
            job.warmup,
            job.threads,
            job.onnx,
            job.simplify,
            job.gpu,
            progress,
        )
    )
    results_file.write_text(json.dumps(res, indent=1))
    if job.train is not None:
        res.update(train_and_val(job.spec, out_dir, job.data, job.train, job.pretrained, progress))
    elif job.validate is not None:
        res["pretrained"] = "checkpoint as given"
        res.update(validate(Path(job.spec), out_dir, job.data, job.validate, progress))
    results_file.write_text(json.dumps(res, indent=1))
    return 0


# --------------------------------------------------------------------------------------------- report (parent)


def _columns(
    imgsz: int,
    batches: list[int],
    onnx: bool,
    gpu: bool,
    train: bool,
    accuracy: bool,
    dense: list[tuple[str, str, str]] | None = None,
) -> list[tuple[str, str, str]]:
    """(results key / CSV column, markdown header, format) of each column shown."""
    cols = [
        ("params_M", "params (M)", ".2f"),
        ("gflops_ultralytics", f"GFLOPs@{imgsz} (Ultralytics)", "g3"),
        ("gflops_attention", f"GFLOPs@{imgsz} (attention counted)", "g3"),
    ]
    for b in batches:
        cols += [(f"cpu_ms_b{b}", f"CPU eager ms b{b}", ".1f"), (f"cpu_rss_mb_b{b}", f"CPU peak RSS MB b{b}", ".1f")]
        if onnx:
            cols += [(f"ort_ms_b{b}", f"ORT CPU ms b{b}", ".1f"), (f"ort_rss_mb_b{b}", f"ORT peak RSS MB b{b}", ".1f")]
        if gpu:
            cols += [(f"gpu_ms_b{b}", f"GPU ms b{b}", ".2f"), (f"gpu_mem_mb_b{b}", f"GPU peak MB b{b}", ".1f")]
    if train:
        cols += [("train_img_s", "train img/s", ".1f")]
    if accuracy and dense:
        cols += dense
    elif accuracy:
        cols += [("mAP50", "mAP50", ".3f"), ("mAP50-95", "mAP50-95", ".3f")]
        cols += [(f"coco_{k}", f"COCO {k}", ".3f") for k in COCO_METRICS]
    return cols


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if spec == "g3":  # 3 significant digits, never in exponent form
        digits = max(0, 2 - math.floor(math.log10(abs(value)))) if value else 1
        return f"{value:.{digits}f}"
    return format(value, spec)


def _table_values(res: dict[str, Any]) -> dict[str, Any]:
    out = dict(res)
    if "params" in res:
        out["params_M"] = res["params"] / 1e6
    out["mAP50"], out["mAP50-95"] = res.get("map50"), res.get("map50_95")
    return out


def _plot_latency_key(batches: list[int], onnx: bool, gpu: bool) -> tuple[str, str]:
    b = min(batches)
    if gpu:
        return f"gpu_ms_b{b}", f"GPU latency, batch {b} (ms, PyTorch eager fp32)"
    if onnx:
        return f"ort_ms_b{b}", f"CPU latency, batch {b} (ms, ONNX Runtime fp32)"
    return f"cpu_ms_b{b}", f"CPU latency, batch {b} (ms, PyTorch eager fp32)"


def accuracy_key(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """(results key, axis label) of the accuracy to plot: a dense task's metric, COCO AP when measured, else
    Ultralytics' mAP50-95."""
    dense = task_metrics.plot_key(rows)
    if dense:
        return dense
    if any(r.get("coco_AP") is not None for r in rows):
        return "coco_AP", "COCO AP (pycocotools, IoU 0.50:0.95)"
    return "mAP50-95", "mAP50-95 (Ultralytics val)"


def plot(rows: list[dict[str, Any]], x_key: str, x_label: str, title: str, path: Path) -> bool:
    """Accuracy (:func:`accuracy_key`) against latency, one marker per family and a label per model; False (no file)
    when no model has both."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..families import compare_groups

    y_key, y_label = accuracy_key(rows)
    points = sorted((r[x_key], r[y_key], r["model"]) for r in rows if r.get(x_key) and r.get(y_key) is not None)
    if not points:
        return False
    fig = Figure(figsize=(9, 6), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    seen: set[str] = set()
    for i, (x, y, name) in enumerate(points):
        label, marker = family(name)
        ax.plot(
            x,
            y,
            marker,
            color=f"C{[group for group, _ in compare_groups()].index(label)}",
            markersize=8,
            linestyle="none",
            label=None if label in seen else label,
        )
        seen.add(label)
        # alternate above / below so that neighbours in latency do not print over each other
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 8 if i % 2 == 0 else -12), fontsize=8)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(0.2)
    ax.legend(title="family", fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return True


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pretraining_policy_note(policy: str, train: bool, rows: list[dict[str, Any]]) -> str:
    """The first lines of ``results.md``: the pretraining policy, and the models it could not be applied to."""
    if not train:
        return "Pretraining: no training (--no-train); checkpoints are validated with the weights they hold."
    if policy == "none":
        return (
            "Pretraining policy: none (--pretrained none): every model trains from scratch, plugin configs too "
            "(their `backbone_weights` are not loaded). Column `pretrained`: what each model loaded."
        )
    text = (
        "Pretraining policy: imagenet (--pretrained imagenet): every backbone starts from ImageNet; plugin configs "
        "from their `backbone_weights`, stock YOLOv8/YOLO11/YOLO26 from Ultralytics' classifier of the same model "
        "(yolov8n-cls.pt, ...), its backbone layers transferred where module, names and shapes match. Column "
        "`pretrained`: what each model actually loaded."
    )
    missing = [r for r in rows if r.get("pretrained_loaded") is False]
    if missing:
        names = ", ".join(f"{r['model']} ({r['pretrained']})" for r in missing)
        text += (
            f"\n\n**NOT COMPARABLE: {len(missing)} of {len(rows)} models loaded no ImageNet weights and trained from "
            f"scratch: {names}.** Rank them only against each other, or provide the weights and run again:"
        )
        text += "".join(f"\n- {r['model']}: {r['pretrained_problem']}" for r in missing if r.get("pretrained_problem"))
    return text


@dataclass
class Report:
    save_dir: Path
    markdown_file: Path
    csv_file: Path
    plot_file: Path | None
    table: str
    failed: list[str]


def compare(
    models: list[str],
    data: str | None = None,
    *,
    epochs: int = 100,
    imgsz: int = 640,
    batch: int = 16,
    seed: int = 0,
    device: str | None = None,
    train_args: dict[str, Any] | None = None,
    batches: tuple[int, ...] | list[int] = (1, 32),
    repeats: int = 10,
    warmup: int = 3,
    threads: int | None = None,
    train: bool = True,
    onnx: bool = True,
    simplify: bool = True,
    project: str | Path | None = None,
    name: str | None = None,
    exist_ok: bool = False,
    pretrained: str = "none",
) -> Report:
    """Run the comparison (see the module docstring) and write the table, CSV and plot; CompareError on bad input
    before anything runs. A model whose process fails keeps the numbers it got, '-' elsewhere, and is listed in
    ``Report.failed``."""
    import torch
    import ultralytics
    from ultralytics.utils import RUNS_DIR
    from ultralytics.utils.files import increment_path

    if not models:
        raise CompareError("no models given")
    batches = sorted(set(batches))
    if any(b < 1 for b in batches) or repeats < 1 or warmup < 0 or imgsz < 1 or epochs < 1:
        raise CompareError("--batches, --repeats, --imgsz and --epochs must be positive, --warmup not negative")
    if pretrained not in PRETRAINING_POLICIES:
        raise CompareError(f"--pretrained {pretrained!r}: expected one of {', '.join(PRETRAINING_POLICIES)}")
    specs = [check_model(m) for m in models]
    for spec in specs:
        check_buildable(spec)
    data = data or default_data()
    threads = threads or default_threads()
    gpu = gpu_device(device)
    recipe = {"epochs": epochs, "imgsz": imgsz, "batch": batch, "seed": seed, **({"device": device} if device else {})}
    recipe.update(train_args or {})

    save_dir = increment_path(Path(project or RUNS_DIR / "compare") / (name or Path(data).stem), exist_ok=exist_ok)
    save_dir = save_dir.resolve()
    save_dir.mkdir(parents=True, exist_ok=True)
    rows, failed = [], []
    started = time.time()
    for index, (spec, label) in enumerate(zip(specs, labels(specs)), 1):
        out_dir = save_dir / label
        out_dir.mkdir(exist_ok=True)
        job = Job(
            spec=spec,
            label=label,
            out_dir=str(out_dir),
            data=data,
            imgsz=imgsz,
            batches=batches,
            repeats=repeats,
            warmup=warmup,
            threads=threads,
            onnx=onnx,
            simplify=simplify,
            gpu=gpu,
            train=dict(recipe) if train else None,
            validate=dict(recipe) if not train and spec.endswith(".pt") else None,
            pretrained=pretrained,
            index=index,
            total=len(specs),
            started=started,
        )
        job_file = out_dir / "job.json"
        job_file.write_text(json.dumps(asdict(job), indent=1))
        results_file = out_dir / "results.json"
        results_file.unlink(missing_ok=True)
        print(f"\ncompare: model {index} of {len(specs)}: {label} ({spec}) -> {out_dir}", flush=True)
        code = "import sys; from yolo_mobilevit.tools.compare import run_job; sys.exit(run_job(sys.argv[1]))"
        proc = subprocess.run([sys.executable, "-c", code, str(job_file)], check=False)
        res = json.loads(results_file.read_text()) if results_file.is_file() else {"model": label, "source": spec}
        evaluated = train or spec.endswith(".pt")
        unscored = evaluated and not task_metrics.has_accuracy(res)  # no mAP (or mIoU, delta1: dense tasks)
        if proc.returncode != 0 or (train and "train_img_s" not in res) or unscored:
            failed.append(label)
        rows.append(_table_values(res))

    x_key, x_label = _plot_latency_key(batches, onnx, gpu is not None)
    rows.sort(key=lambda r: (r.get(x_key) is None, r.get(x_key) or 0.0))  # fastest first; unmeasured last
    accuracy = train or any(spec.endswith(".pt") for spec in specs)
    cols = _columns(imgsz, batches, onnx, gpu is not None, train, accuracy, task_metrics.columns(rows))
    for r in rows:
        r.setdefault("pretrained", "-")  # not trained (--no-train on a YAML), or its process failed before training
    with (save_dir / "results.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "source", "pretrained", *(k for k, _, _ in cols)])
        for r in rows:
            values = ("" if r.get(k) is None else f"{r[k]:.6g}" for k, _, _ in cols)
            writer.writerow([r["model"], r["source"], r["pretrained"], *values])
    table = markdown(
        [
            {"model": r["model"], "pretrained": r["pretrained"], **{h: _fmt(r.get(k), s) for k, h, s in cols}}
            for r in rows
        ]
    )

    rss_method = next((r["rss_method"] for r in rows if "rss_method" in r), "-")
    gpu_name = next((r["gpu_name"] for r in rows if "gpu_name" in r), None)
    ort_version = next((r["ort_version"] for r in rows if "ort_version" in r), None)
    env = f"data {data}; torch {torch.__version__}, ultralytics {ultralytics.__version__}"
    env += f", onnxruntime {ort_version}" if ort_version else ""
    env += f"; CPU {_cpu_name()}, {threads} threads for latency" + (f"; GPU {gpu_name}" if gpu_name else "")
    latency = (
        f"Latency: model forward only (no pre-processing or NMS), fp32, fused as `yolo predict` runs it, random "
        f"{imgsz}x{imgsz} input, median of {repeats} runs after {warmup} warm-up runs"
    )
    if onnx:
        latency += "; ONNX Runtime on a static Ultralytics ONNX export per batch size"
        latency += "" if simplify else " (not simplified)"
    memory = f"Peak memory: above what was resident before the runs; CPU: process RSS ({rss_method})"
    memory += "; GPU: torch.cuda.max_memory_allocated" if gpu else ""
    gflops = (
        f"GFLOPs at {imgsz}x{imgsz} = 2 x MACs: Ultralytics' figure (thop) and torch's FLOP counter with attention "
        "counted (yolo_mobilevit.tools.flops.count_macs)."
    )
    notes = [env, gflops, latency + ".", memory + "."]
    if repeats < 5:
        notes.append(f"Timing noise: {repeats} timed run(s) per latency figure; medians of so few runs are noisy.")
    if train:
        extra = ", ".join(f"{k}={v}" for k, v in recipe.items() if k not in {"epochs", "imgsz", "batch", "seed"})
        train_threads = ", ".join(sorted({str(r["train_threads"]) for r in rows if "train_threads" in r})) or "-"
        timed = (
            "train img/s over the training epochs after the first (the first pays data loader start-up and caches)"
            if epochs > 1
            else "train img/s over the one training epoch, warm-up included (data loader start-up, caches, first "
            "iterations): warm-up-bound, it under-reads steady-state throughput"
        )
        notes.append(
            f"Training: same recipe for every model, YOLO(model).train(epochs={epochs}, imgsz={imgsz}, batch={batch}, "
            f"seed={seed}{', ' + extra if extra else ''}, pretrained=False, then the pretraining policy at the top); "
            f"{timed} "
            f"(validation excluded; torch threads as Ultralytics sets them: {train_threads}); "
            + (
                task_metrics.note(rows)
                or "mAP: YOLO(best.pt).val() on the dataset's val split; COCO metrics: `yolo-mobilevit cocoeval` "
                "(pycocotools, conf 0.001, 100 detections per image) on the same split."
            )
            + " Rows sorted by latency."
        )
        images = min((r["train_images"] for r in rows if r.get("train_images")), default=None)
        if images is not None and images < 4 * batch:
            notes.append(
                f"Timing noise: {images} training images, fewer than 4 batches of {batch}: train img/s mostly measures "
                "start-up and per-batch overhead; do not rank models on it."
            )
    elif accuracy:
        notes.append(
            "No training (--no-train): checkpoints validated as they are, YOLO(model.pt).val() and "
            f"`yolo-mobilevit cocoeval` on the dataset's val split at imgsz {imgsz}"
            + "".join(f", {k}={v}" for k, v in recipe.items() if k in _VAL_KEYS)
            + "; model YAMLs (untrained) are not validated. Rows sorted by latency."
        )
    if failed:
        notes.append(f"FAILED (see the output above and {save_dir}/<model>/): {', '.join(failed)}")
    head = [pretraining_policy_note(pretrained, train, rows)]
    (save_dir / "results.md").write_text("\n\n".join(head) + "\n\n" + table + "\n" + "\n\n".join(notes) + "\n")

    plot_file = save_dir / "map_vs_latency.png"
    title = f"{Path(data).stem}: " + (f"epochs {epochs}, " if train else "checkpoints as given, ")
    title += f"imgsz {imgsz}" + (f", batch {batch}, seed {seed}" if train else "")
    if not (accuracy and plot(rows, x_key, x_label, title, plot_file)):
        plot_file = None
    return Report(save_dir, save_dir / "results.md", save_dir / "results.csv", plot_file, table, failed)
