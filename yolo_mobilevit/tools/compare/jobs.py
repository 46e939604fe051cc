"""The job protocol: each model runs in its own fresh interpreter, told what to do by ``<output>/<model>/job.json``
and answering in ``results.json`` beside it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .measure import measure
from .train_val import train_and_val, validate


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
    pretrained: str = "none"  # the pretraining policy (yolo_mobilevit.tools.pretraining.POLICIES)
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


def launch(job: Job) -> tuple[int, dict[str, Any]]:
    """Run ``job`` in a fresh interpreter (:func:`run_job`); (its exit status, its ``results.json``, or the model's
    name and source alone when it wrote none)."""
    out_dir = Path(job.out_dir)
    job_file = out_dir / "job.json"
    job_file.write_text(json.dumps(asdict(job), indent=1))
    results_file = out_dir / "results.json"
    results_file.unlink(missing_ok=True)
    code = "import sys; from yolo_mobilevit.tools.compare.jobs import run_job; sys.exit(run_job(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, str(job_file)], check=False)
    res = json.loads(results_file.read_text()) if results_file.is_file() else {"model": job.label, "source": job.spec}
    return proc.returncode, res
