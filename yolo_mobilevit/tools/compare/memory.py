"""Peak memory of timed runs: the process' resident set on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU."""

from __future__ import annotations

import ctypes
import gc
import resource
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from ..timing import measure_latency


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


def time_and_peak_cuda(fn: Callable[[], Any], gpu: str, repeats: int, warmup: int) -> tuple[float, float]:
    """(median ms, peak CUDA memory the runs allocated above what was allocated before them in MB) of ``fn`` on
    device ``gpu``; the weights and the input, allocated before, are excluded."""
    import torch

    sync = partial(torch.cuda.synchronize, gpu)
    sync()
    torch.cuda.reset_peak_memory_stats(gpu)
    base = torch.cuda.memory_allocated(gpu)  # weights and input
    ms = measure_latency(fn, warmup, repeats, sync=sync).median_ms
    return ms, (torch.cuda.max_memory_allocated(gpu) - base) / 1e6
