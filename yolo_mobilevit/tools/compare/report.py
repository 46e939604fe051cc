"""The comparison's output: ``results.md`` (policy note, table, notes), ``results.csv`` and the accuracy-vs-latency
plot."""

from __future__ import annotations

import csv
import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...families import compare_groups
from .. import task_metrics
from ..cocoeval import METRICS as COCO_METRICS
from .inputs import family
from .jobs import Job
from .train_val import VAL_KEYS


def markdown(rows: list[dict[str, str]]) -> str:
    """A markdown table of rows that share their keys (the keys are the header)."""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r[h] for h in header) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def columns(
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


def table_values(res: dict[str, Any]) -> dict[str, Any]:
    """A model's results with the values the table shows under their own names (params in millions, mAP)."""
    out = dict(res)
    if "params" in res:
        out["params_M"] = res["params"] / 1e6
    out["mAP50"], out["mAP50-95"] = res.get("map50"), res.get("map50_95")
    return out


def latency_key(batches: list[int], onnx: bool, gpu: bool) -> tuple[str, str]:
    """(results key, axis label) of the latency the rows are sorted by and plotted against: the smallest batch, on
    the GPU when timed there, else ONNX Runtime when timed, else PyTorch eager on the CPU."""
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


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
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
    """What :func:`yolo_mobilevit.tools.compare.compare` wrote, the markdown table, and the models that failed."""

    save_dir: Path
    markdown_file: Path
    csv_file: Path
    plot_file: Path | None
    table: str
    failed: list[str]


@dataclass(frozen=True)
class Settings:
    """The shared recipe's figures the report states, beside what every model's :class:`~.jobs.Job` holds."""

    epochs: int
    batch: int
    seed: int
    recipe: dict[str, Any]  # every train argument: epochs, imgsz, batch, seed, device when given, KEY=VALUE ones
    train: bool
    accuracy: bool  # whether models were validated (trained, or checkpoints under --no-train)


def write(save_dir: Path, results: list[dict[str, Any]], failed: list[str], job: Job, settings: Settings) -> Report:
    """Write ``results.md``, ``results.csv`` and (when any model has an accuracy) ``map_vs_latency.png`` into
    ``save_dir`` from each model's ``results.json`` (``results``), rows sorted by latency; ``job``: what every
    model's job shared (dataset, sizes, timing, pretraining policy)."""
    rows = [table_values(res) for res in results]
    x_key, x_label = latency_key(job.batches, job.onnx, job.gpu is not None)
    rows.sort(key=lambda r: (r.get(x_key) is None, r.get(x_key) or 0.0))  # fastest first; unmeasured last
    cols = columns(
        job.imgsz,
        job.batches,
        job.onnx,
        job.gpu is not None,
        settings.train,
        settings.accuracy,
        task_metrics.columns(rows),
    )
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
    head = [pretraining_policy_note(job.pretrained, settings.train, rows)]
    notes = _notes(rows, failed, save_dir, job, settings)
    (save_dir / "results.md").write_text("\n\n".join(head) + "\n\n" + table + "\n" + "\n\n".join(notes) + "\n")

    plot_file = save_dir / "map_vs_latency.png"
    title = f"{Path(job.data).stem}: " + (f"epochs {settings.epochs}, " if settings.train else "checkpoints as given, ")
    title += f"imgsz {job.imgsz}" + (f", batch {settings.batch}, seed {settings.seed}" if settings.train else "")
    if not (settings.accuracy and plot(rows, x_key, x_label, title, plot_file)):
        plot_file = None
    return Report(save_dir, save_dir / "results.md", save_dir / "results.csv", plot_file, table, failed)


def _notes(rows: list[dict[str, Any]], failed: list[str], save_dir: Path, job: Job, settings: Settings) -> list[str]:
    """The paragraphs below the table: the environment, how each figure was measured, noise and failures."""
    import torch
    import ultralytics

    rss_method = next((r["rss_method"] for r in rows if "rss_method" in r), "-")
    gpu_name = next((r["gpu_name"] for r in rows if "gpu_name" in r), None)
    ort_version = next((r["ort_version"] for r in rows if "ort_version" in r), None)
    env = f"data {job.data}; torch {torch.__version__}, ultralytics {ultralytics.__version__}"
    env += f", onnxruntime {ort_version}" if ort_version else ""
    env += f"; CPU {cpu_name()}, {job.threads} threads for latency" + (f"; GPU {gpu_name}" if gpu_name else "")
    latency = (
        f"Latency: model forward only (no pre-processing or NMS), fp32, fused as `yolo predict` runs it, random "
        f"{job.imgsz}x{job.imgsz} input, median of {job.repeats} runs after {job.warmup} warm-up runs"
    )
    if job.onnx:
        latency += "; ONNX Runtime on a static Ultralytics ONNX export per batch size"
        latency += "" if job.simplify else " (not simplified)"
    memory = f"Peak memory: above what was resident before the runs; CPU: process RSS ({rss_method})"
    memory += "; GPU: torch.cuda.max_memory_allocated" if job.gpu else ""
    gflops = (
        f"GFLOPs at {job.imgsz}x{job.imgsz} = 2 x MACs: Ultralytics' figure (thop) and torch's FLOP counter with "
        "attention counted (yolo_mobilevit.tools.flops.count_macs)."
    )
    notes = [env, gflops, latency + ".", memory + "."]
    if job.repeats < 5:
        notes.append(f"Timing noise: {job.repeats} timed run(s) per latency figure; medians of so few runs are noisy.")
    if settings.train:
        extra = ", ".join(
            f"{k}={v}" for k, v in settings.recipe.items() if k not in {"epochs", "imgsz", "batch", "seed"}
        )
        train_threads = ", ".join(sorted({str(r["train_threads"]) for r in rows if "train_threads" in r})) or "-"
        timed = (
            "train img/s over the training epochs after the first (the first pays data loader start-up and caches)"
            if settings.epochs > 1
            else "train img/s over the one training epoch, warm-up included (data loader start-up, caches, first "
            "iterations): warm-up-bound, it under-reads steady-state throughput"
        )
        notes.append(
            f"Training: same recipe for every model, YOLO(model).train(epochs={settings.epochs}, imgsz={job.imgsz}, "
            f"batch={settings.batch}, seed={settings.seed}{', ' + extra if extra else ''}, pretrained=False, then the pretraining "
            f"policy at the top); {timed} "
            f"(validation excluded; torch threads as Ultralytics sets them: {train_threads}); "
            + (
                task_metrics.note(rows)
                or "mAP: YOLO(best.pt).val() on the dataset's val split; COCO metrics: `yolo-mobilevit cocoeval` "
                "(pycocotools, conf 0.001, 100 detections per image) on the same split."
            )
            + " Rows sorted by latency."
        )
        images = min((r["train_images"] for r in rows if r.get("train_images")), default=None)
        if images is not None and images < 4 * settings.batch:
            notes.append(
                f"Timing noise: {images} training images, fewer than 4 batches of {settings.batch}: train img/s mostly "
                "measures start-up and per-batch overhead; do not rank models on it."
            )
    elif settings.accuracy:
        notes.append(
            "No training (--no-train): checkpoints validated as they are, YOLO(model.pt).val() and "
            f"`yolo-mobilevit cocoeval` on the dataset's val split at imgsz {job.imgsz}"
            + "".join(f", {k}={v}" for k, v in settings.recipe.items() if k in VAL_KEYS)
            + "; model YAMLs (untrained) are not validated. Rows sorted by latency."
        )
    if failed:
        notes.append(f"FAILED (see the output above and {save_dir}/<model>/): {', '.join(failed)}")
    return notes
