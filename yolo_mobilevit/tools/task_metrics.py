"""The accuracy ``compare`` reports for the dense tasks, keyed by task: semantic segmentation (mIoU, pixel accuracy)
and depth (delta1, AbsRel), read from Ultralytics' own validation (``YOLO(best).val().results_dict``). Detection-like
tasks keep compare's mAP and COCO columns; a table of one dense task shows its metrics instead, and its plot puts the
first of them against latency."""

from __future__ import annotations

from typing import Any

#: task -> [(results key, Ultralytics ``results_dict`` key, column header, format)]; the first is plotted
DENSE_METRICS: dict[str, list[tuple[str, str, str, str]]] = {
    "semantic": [
        ("miou", "metrics/mIoU", "mIoU", ".3f"),
        ("pixel_acc", "metrics/pixel_acc", "pixel acc", ".3f"),
    ],
    "depth": [
        ("delta1", "metrics/delta1", "delta1", ".3f"),
        ("abs_rel", "metrics/abs_rel", "AbsRel", ".3f"),
        ("rmse", "metrics/rmse", "RMSE (m)", ".3f"),
    ],
}
_KEYS = {key for rows in DENSE_METRICS.values() for key, *_ in rows}


def from_val(metrics: Any) -> dict[str, Any]:
    """The dense-task metrics of a validation result (empty for other tasks), with ``task`` set."""
    found = getattr(metrics, "results_dict", None) or {}
    for task, rows in DENSE_METRICS.items():
        if rows[0][1] in found:
            return {"task": task, **{key: float(found[name]) for key, name, _, _ in rows if name in found}}
    return {}


def has_accuracy(res: dict[str, Any]) -> bool:
    """Whether a model's results hold an accuracy: detection-like mAP or a dense task's metrics."""
    return "map50_95" in res or any(key in res for key in _KEYS)


def _dense_task(rows: list[dict[str, Any]]) -> str | None:
    return next((r["task"] for r in rows if r.get("task") in DENSE_METRICS), None)


def columns(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]] | None:
    """(results key, header, format) of the accuracy columns when the rows are of a dense task, else None."""
    task = _dense_task(rows)
    return None if task is None else [(key, header, spec) for key, _, header, spec in DENSE_METRICS[task]]


def plot_key(rows: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(results key, axis label) of the accuracy to plot when the rows are of a dense task, else None."""
    task = _dense_task(rows)
    if task is None:
        return None
    key, name, header, _ = DENSE_METRICS[task][0]
    return key, f"{header} (Ultralytics val, {name})"


def note(rows: list[dict[str, Any]]) -> str | None:
    task = _dense_task(rows)
    if task is None:
        return None
    names = ", ".join(name for _, name, _, _ in DENSE_METRICS[task])
    return f"accuracy (task={task}): YOLO(best.pt).val() on the dataset's val split, Ultralytics' {names}."
