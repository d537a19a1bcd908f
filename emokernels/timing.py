"""Wall-clock medians for the benchmarks and the reproduction."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int = 10, warmup: int = 2,
                   min_time: float = 0.0) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls (more if ``min_time`` not reached)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
