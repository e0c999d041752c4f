"""Repeated wall-clock timings for the stage benchmarks (bench_isr, bench_detection, bench_simulate).

The sample is summarised by `_common.stats`; the keys carry the unit: ``median_s``, ``min_s``, ``max_s``,
``iqr_s`` (seconds) and ``n``.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Sequence

from _common import stats


def seconds(times: Sequence[float]) -> dict[str, float | int]:
    """`_common.stats` of timings in seconds, with ``_s`` on the keys of the timings."""
    return {(key if key == "n" else f"{key}_s"): value for key, value in stats(times).items()}


def time_calls(func: Callable[[int], object], repeat: int) -> dict[str, float | int]:
    """Time ``func(i)`` for i = 0..repeat-1 after one untimed warm-up call ``func(-1)`` (caches)."""
    func(-1)
    times = []
    for i in range(repeat):
        t0 = time.perf_counter()
        func(i)
        times.append(time.perf_counter() - t0)
    return seconds(times)


def peak_mb(func: Callable[[], object]) -> float:
    """Peak memory allocated while ``func()`` runs (``tracemalloc``, which numpy reports to), MB."""
    tracemalloc.start()
    try:
        func()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return round(peak / 2**20, 1)
