"""Latency measurement and ONNX Runtime CPU sessions, shared by ``compare`` and the scripts in ``benchmarks/``.

Every latency the project reports comes from :func:`interleaved_latency` (or :func:`measure_latency`, its one-callable
case): wall-clock milliseconds per call after untimed warm-up calls, several callables timed round-robin (one call of
each in turn) so that drifting machine load falls on all of them alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Latency:
    """The timed calls of one callable, in milliseconds."""

    times_ms: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def min_ms(self) -> float:
        return min(self.times_ms)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.times_ms)


def interleaved_latency(
    runs: Mapping[str, Callable[[], Any]], warmup: int, repeats: int, sync: Callable[[], Any] | None = None
) -> dict[str, Latency]:
    """Time every callable of ``runs`` ``repeats`` times after ``warmup`` untimed calls, round-robin; ``sync`` (e.g.
    ``torch.cuda.synchronize``) runs before and after each call so that asynchronous work is inside its timing."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"expects repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    times: dict[str, list[float]] = {name: [] for name in runs}
    for step in range(warmup + repeats):
        for name, run in runs.items():
            if sync is not None:
                sync()
            start = time.perf_counter()
            run()
            if sync is not None:
                sync()
            if step >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: Latency(tuple(t)) for name, t in times.items()}


def measure_latency(fn: Callable[[], Any], warmup: int, repeats: int, sync: Callable[[], Any] | None = None) -> Latency:
    """:func:`interleaved_latency` of one callable."""
    return interleaved_latency({"fn": fn}, warmup, repeats, sync)["fn"]


def ort_session(path: str | Path, threads: int, profile_prefix: str | None = None) -> Any:
    """An ONNX Runtime ``InferenceSession`` on the CPU with ``threads`` intra-op threads (one inter-op thread),
    writing a profile under ``profile_prefix`` when given (``session.end_profiling()`` returns its file)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_feed(session: Any, x: Any) -> dict[str, Any]:
    """The input feed of a one-input session: ``{input name: x as a numpy array}`` (``x`` a tensor or an array)."""
    return {session.get_inputs()[0].name: x.numpy() if hasattr(x, "numpy") else x}


__all__ = ["Latency", "interleaved_latency", "measure_latency", "ort_feed", "ort_session"]
