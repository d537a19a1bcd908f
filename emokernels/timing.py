"""Medians of per-call times for the benchmarks and the reproduction, on the CPU or a GPU."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def median_seconds(fn: Callable[[], object], repeats: int = 10, warmup: int = 2,
                   min_time: float = 0.0, device: str | torch.device = "cpu") -> float:
    """Median time of one ``fn()`` call over ``repeats`` calls (more until ``min_time`` passed).

    CPU: the wall time of each call. CUDA (``device`` "cuda" or "cuda:N"): the time between
    CUDA events recorded on the device's current stream before and after each call, waiting
    for the second one, so it covers the GPU work ``fn`` queued (and any host gaps between
    its launches), not just the asynchronous launches. The device is synchronized first so
    that work queued before the call is not counted.
    """
    device = torch.device(device)
    if device.type == "cuda":
        stream = torch.cuda.current_stream(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def once() -> float:
            start.record(stream)
            fn()
            end.record(stream)
            end.synchronize()
            return start.elapsed_time(end) / 1e3  # elapsed_time is in milliseconds
    else:
        def once() -> float:
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0

    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    times: list[float] = []
    start_all = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start_all < min_time:
        times.append(once())
    return statistics.median(times)
