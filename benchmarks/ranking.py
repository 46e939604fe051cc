"""A small real-data protocol that ranks detectors on CPU: several seeds per model, the spread, and which pairs separate.

Usage: python benchmarks/ranking.py [--models M ...] [--seeds 0 1 2] [--epochs 40] [--imgsz 160] [--jobs 2]
       [--data coco128 folder] [--out DIR] [--pretrained none|imagenet] [--report-only] [--keep-trained]
       [KEY=VALUE train arguments ...]

Protocol (defaults): coco128 from ``../shared/datasets`` (copied into ``DIR/data`` first, so no cache is written
there), one class (``single_cls=True``: objects against background), ``imgsz`` 160, batch 16, ``epochs`` per run,
one pretraining policy for every model, the switch ``yolo-mobilevit compare`` takes (``--pretrained``,
:mod:`yolo_mobilevit.tools.pretraining`): ``none`` (the default: every model from scratch, plugin configs too; no
ImageNet weights can be reached from the machines this was made on) or ``imagenet`` (every backbone from ImageNet;
``runs.csv`` says what each run loaded), Ultralytics' default recipe (``optimizer=auto``) unless KEY=VALUE arguments
say otherwise. Each run is its own training process (``python -m yolo_mobilevit.tools.pretraining POLICY`` with
``yolo train``'s arguments); ``--jobs`` of them run at once (Ultralytics trains on one CPU thread each).

Three scores per run, of ``best.pt`` (one class):
- ``fit``: Ultralytics' mAP50-95 on the 128 training images themselves: how fast a model fits;
- ``holdout``: Ultralytics' mAP50-95 on coco128's 128 val2017 images: generalisation;
- ``holdout coco AP``: pycocotools' AP on those val2017 images (``yolo-mobilevit cocoeval``).

Writes ``DIR/runs.jsonl`` as runs end, ``DIR/runs.csv`` (one row per run) and ``DIR/ranking.md`` (mean and standard deviation over seeds, ranks, and
for every pair whether all seeds of one model beat all seeds of the other).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = ["yolov8n.yaml", "yolo26n.yaml", "cfg/yolo26n-mobilevit-xxs.yaml", "cfg/yolo26n-mobilevitv2-050.yaml"]
YOLO_BIN = Path(sys.executable).with_name("yolo")


def prepare_data(source: Path, work: Path) -> tuple[Path, Path]:
    """Copy the dataset into ``work`` and write two data YAMLs: val on the train split (fit), val on val2017."""
    data = work / "data"
    if not data.is_dir():
        shutil.copytree(source, data, ignore=shutil.ignore_patterns("*.cache"))
    names = (source / "coco128.yaml").read_text().split("names:", 1)[1]
    fit, holdout = work / "fit.yaml", work / "holdout.yaml"
    fit.write_text(f"path: {data}\ntrain: images/train2017\nval: images/train2017\nnames:{names}")
    holdout.write_text(f"path: {data}\ntrain: images/train2017\nval: images/val2017\nnames:{names}")
    return fit, holdout


def val_map(best: Path, data: Path, imgsz: int, project: Path, name: str) -> dict[str, float]:
    """mAP50 and mAP50-95 of ``best`` on ``data`` (one class), from a fresh process."""
    code = (
        "import json, sys; from ultralytics import YOLO; "
        f"m = YOLO({str(best)!r}).val(data={str(data)!r}, imgsz={imgsz}, batch=16, single_cls=True, device='cpu', "
        f"workers=0, plots=False, project={str(project)!r}, name={name!r}, exist_ok=True, verbose=False); "
        "print('RESULT ' + json.dumps({'map50': m.box.map50, 'map': m.box.map}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[7:])


def coco_ap(best: Path, data: Path, imgsz: int, project: Path, name: str) -> dict[str, float]:
    """COCO AP and AP50 (pycocotools, ``yolo-mobilevit cocoeval``, one class) of ``best`` on ``data``."""
    cmd = [str(YOLO_BIN.with_name("yolo-mobilevit")), "cocoeval", f"model={best}", f"data={data}", f"imgsz={imgsz}"]
    cmd += ["single_cls=True", "device=cpu", f"project={project}", f"name={name}", "exist_ok=True"]
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    metrics = json.loads((project / name / "metrics.json").read_text())["metrics"]
    return {"coco AP": metrics["AP"], "coco AP50": metrics["AP50"]}


def run_one(model: str, seed: int, args: argparse.Namespace, fit: Path, holdout: Path) -> dict[str, object]:
    """Train ``model`` with ``seed`` (unless ``--keep-trained`` finds the run trained), then validate ``best.pt`` on
    both splits."""
    label = Path(model).stem
    project, name = args.out / "runs" / label, f"seed{seed}"
    cmd = [sys.executable, "-m", "yolo_mobilevit.tools.pretraining", args.pretrained]
    cmd += [f"model={model}", f"data={fit}", f"epochs={args.epochs}", f"imgsz={args.imgsz}"]
    cmd += ["batch=16", "single_cls=True", "device=cpu", "workers=0", "plots=False"]
    cmd += [f"seed={seed}", "deterministic=True", f"project={project}", f"name={name}", "exist_ok=True", *args.extra]
    best, results = project / name / "weights" / "best.pt", project / name / "results.csv"
    if not (args.keep_trained and best.is_file() and results.is_file()):
        with open(args.out / "logs" / f"{label}-seed{seed}.log", "w") as log:
            subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True, env={**os.environ})
    # the training time Ultralytics recorded: its last epoch's cumulative "time" (seconds)
    minutes = float(list(csv.DictReader(results.open()))[-1]["time"]) / 60
    scores = {"fit": val_map(best, fit, args.imgsz, project, f"{name}-fit")}
    scores["holdout"] = val_map(best, holdout, args.imgsz, project, f"{name}-holdout")
    scores["holdout"] |= coco_ap(best, holdout, args.imgsz, project, f"{name}-cocoeval")
    pretrained = (project / name / "pretrained.txt").read_text().strip()
    shown = os.path.relpath(best, REPO) if best.is_relative_to(REPO) else str(best)
    row = {"model": label, "seed": seed, "minutes": round(minutes, 1), "best": shown, "pretrained": pretrained}
    row |= {f"{split} {key}": round(v, 4) for split, s in scores.items() for key, v in s.items()}
    with open(args.out / "runs.jsonl", "a") as f:  # kept as each run ends, so a failed later run loses nothing
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return row


def summary(rows: list[dict[str, object]], score: str) -> tuple[list[str], list[str]]:
    """Markdown lines: per model mean / sd / min / max of ``score`` over seeds, ranked; and the separated pairs."""
    by_model: dict[str, list[float]] = {}
    for r in rows:
        by_model.setdefault(str(r["model"]), []).append(float(r[score]))
    ranked = sorted(by_model, key=lambda m: -statistics.mean(by_model[m]))
    table = [f"| rank | model | seeds | {score} mean | sd | min | max |", "|---|---|---|---|---|---|---|"]
    for i, m in enumerate(ranked, 1):
        v = by_model[m]
        sd = statistics.stdev(v) if len(v) > 1 else float("nan")
        table.append(f"| {i} | {m} | {len(v)} | {statistics.mean(v):.4f} | {sd:.4f} | {min(v):.4f} | {max(v):.4f} |")
    pairs = []
    for a, b in itertools.combinations(ranked, 2):
        verdict = "separated (every seed of the first above every seed of the second)"
        if min(by_model[a]) <= max(by_model[b]):
            verdict = "not separated (seed ranges overlap)"
        pairs.append(f"- {a} > {b}: {verdict}")
    return table, pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "coco128")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "ranking")
    parser.add_argument(
        "--pretrained",
        choices=("none", "imagenet"),
        default="none",
        help="one pretraining policy for every model, as `yolo-mobilevit compare --pretrained` (default none)",
    )
    parser.add_argument("--report-only", action="store_true", help="no training: tabulate DIR/runs.jsonl")
    parser.add_argument(
        "--keep-trained",
        action="store_true",
        help="score runs already trained under DIR/runs (best.pt and results.csv) without training them again, "
        "to finish an interrupted ranking; minutes are always the training time Ultralytics recorded",
    )
    args, extra = parser.parse_known_args()
    if any("=" not in e for e in extra):
        parser.error(f"expected KEY=VALUE train arguments, got {extra}")
    args.extra = extra
    args.out = args.out.resolve()  # Ultralytics puts a relative project under its runs_dir/<task>
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    fit, holdout = prepare_data(args.data, args.out)
    if args.report_only:  # the runs of runs.jsonl; COCO AP added where a run predates it
        rows = [json.loads(line) for line in (args.out / "runs.jsonl").read_text().splitlines()]
        for r in rows:
            if "holdout coco AP" not in r:
                best = REPO / str(r["best"])
                coco = coco_ap(best, holdout, args.imgsz, best.parents[1].parent, f"{best.parents[1].name}-cocoeval")
                r |= {f"holdout {k}": round(v, 4) for k, v in coco.items()}
    else:
        jobs = [(m, s) for s in args.seeds for m in args.models]  # seed-major: a partial run still covers every model
        with ThreadPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(lambda job: run_one(*job, args, fit, holdout), jobs))
    with open(args.out / "runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    loaded = sorted({f"{r['model']}: {r.get('pretrained', 'none (before the policy was recorded)')}" for r in rows})
    lines = [f"# Ranking: {args.epochs} epochs at {args.imgsz}, seeds {args.seeds}, extra {extra or 'none'}", ""]
    lines += [f"Pretraining policy: {args.pretrained} (--pretrained). Loaded: {'; '.join(loaded)}.", ""]
    titles = {
        "fit map": "Ultralytics mAP50-95 on the training images (fit)",
        "holdout map": "Ultralytics mAP50-95 on val2017 (holdout)",
        "holdout coco AP": "COCO AP (pycocotools) on val2017 (holdout)",
    }
    for score, title in titles.items():
        table, pairs = summary(rows, score)
        lines += [f"## {title}, one class", "", *table, "", *pairs, ""]
    (args.out / "ranking.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
