"""Compare models on one dataset: size, compute, latency, memory, training throughput and accuracy.

``yolo-mobilevit compare MODEL ... [--data D] [KEY=VALUE ...]`` (argument parsing in ``cli.py``) checks every input
first (:mod:`.inputs`), then runs every model in its own fresh interpreter (:mod:`.jobs`), one after the other, so
that no model's memory or threads leak into the next one's numbers. Per model that process

1. counts parameters and GFLOPs twice (:mod:`.measure`): Ultralytics' figure (thop, what ``yolo`` prints) and with
   attention counted (:func:`yolo_mobilevit.tools.flops.count_macs`);
2. times forwards of the fused fp32 model (``model.fuse()``, as ``yolo predict`` runs it) on random input, for every
   batch size asked for: PyTorch eager on the CPU, PyTorch eager on the GPU when CUDA is available, and ONNX Runtime
   (CPU) on an ``Exporter`` ONNX export of the model, static shapes, one export per batch size; the median of the
   timed runs after warm-up ones. Model forward only: no letterboxing, no NMS;
3. records the peak memory of those runs above what was resident before them (:mod:`.memory`): on the CPU the
   process' peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs`` after ``malloc_trim``;
   ``getrusage`` where that is not available), on the GPU ``torch.cuda.max_memory_allocated`` (weights and input
   excluded);
4. trains with ``YOLO(model).train(...)`` on one shared recipe into ``<output>/<model>/train`` (:mod:`.train_val`),
   timing the training epochs (validation excluded) for images per second, then validates ``best.pt`` with
   ``YOLO(best).val(...)`` into ``<output>/<model>/val`` for mAP50 and mAP50-95, and scores it under the COCO protocol
   (:mod:`yolo_mobilevit.tools.cocoeval`) into ``<output>/<model>/cocoeval`` for AP, AP50, AP75, APs, APm, APl and
   AR100. Without training (``--no-train``) a checkpoint (``.pt``) is validated as it is; a YAML is only measured.

The parent then writes ``results.md`` and ``results.csv`` (rows sorted by latency) and ``map_vs_latency.png`` (COCO AP
against latency, one marker per family) into the output folder (:mod:`.report`). Without MODEL arguments:
:data:`DEFAULT_MODELS`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import task_metrics
from ..pretraining import POLICIES as PRETRAINING_POLICIES
from .inputs import (
    CompareError,
    check_buildable,
    check_model,
    default_data,
    default_models,
    family,
    labels,
    offline_dataset,
    parse_train_args,
)
from .jobs import Job, launch, run_job
from .measure import default_threads, gpu_device, measure, model_stats
from .memory import time_and_peak_cuda, time_and_peak_rss
from .report import (
    Report,
    Settings,
    accuracy_key,
    columns,
    cpu_name,
    latency_key,
    markdown,
    plot,
    pretraining_policy_note,
    write,
)
from .train_val import VAL_KEYS, EpochClock, coco_metrics, train_and_val, validate


def __getattr__(name: str) -> Any:
    """``DEFAULT_MODELS`` and ``FAMILIES`` from the family registry, as :mod:`.inputs` reads them."""
    from . import inputs

    return getattr(inputs, name)


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
    shared = Job(
        spec="",
        label="",
        out_dir="",
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
        pretrained=pretrained,
        total=len(specs),
        started=time.time(),
    )  # what every model's job holds; each adds its own model, folder and place
    results, failed = [], []
    for index, (spec, label) in enumerate(zip(specs, labels(specs)), 1):
        out_dir = save_dir / label
        out_dir.mkdir(exist_ok=True)
        validate = dict(recipe) if not train and spec.endswith(".pt") else None
        job = replace(shared, spec=spec, label=label, out_dir=str(out_dir), validate=validate, index=index)
        print(f"\ncompare: model {index} of {len(specs)}: {label} ({spec}) -> {out_dir}", flush=True)
        code, res = launch(job)
        evaluated = train or spec.endswith(".pt")
        unscored = evaluated and not task_metrics.has_accuracy(res)  # no mAP (or mIoU, delta1: dense tasks)
        if code != 0 or (train and "train_img_s" not in res) or unscored:
            failed.append(label)
        results.append(res)

    accuracy = train or any(spec.endswith(".pt") for spec in specs)
    settings = Settings(epochs=epochs, batch=batch, seed=seed, recipe=recipe, train=train, accuracy=accuracy)
    return write(save_dir, results, failed, shared, settings)


__all__ = [
    "DEFAULT_MODELS",
    "FAMILIES",
    "VAL_KEYS",
    "CompareError",
    "EpochClock",
    "Job",
    "Report",
    "Settings",
    "accuracy_key",
    "check_buildable",
    "check_model",
    "coco_metrics",
    "columns",
    "compare",
    "cpu_name",
    "default_data",
    "default_models",
    "default_threads",
    "family",
    "gpu_device",
    "labels",
    "latency_key",
    "launch",
    "markdown",
    "measure",
    "model_stats",
    "offline_dataset",
    "parse_train_args",
    "plot",
    "pretraining_policy_note",
    "run_job",
    "time_and_peak_cuda",
    "time_and_peak_rss",
    "train_and_val",
    "validate",
    "write",
]
