"""Medians of per-call times for the benchmarks and the reproduction, on the CPU or a GPU, and
interleaved comparisons whose ratios a busy machine cannot flip."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

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
    once = _timer(fn, device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times: list[float] = []
    start_all = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start_all < min_time:
        times.append(once())
    return statistics.median(times)


def _sync(device: str | torch.device) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timer(fn: Callable[[], object], device: str | torch.device) -> Callable[[], float]:
    """A function that calls ``fn`` once and returns the seconds it took (see
    :func:`median_seconds`)."""
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
    return once


@dataclass(frozen=True)
class Comparison:
    """Times of a baseline and a candidate taken alternately: ``speedups[i]`` is the
    baseline's time over the candidate's in round ``i``, two calls taken back to back."""

    baseline_s: list[float]
    candidate_s: list[float]

    @property
    def speedups(self) -> list[float]:
        return [b / c for b, c in zip(self.baseline_s, self.candidate_s, strict=True)]

    @property
    def speedup(self) -> float:
        """Median of the per-round speedups."""
        return statistics.median(self.speedups)

    @property
    def spread(self) -> tuple[float, float]:
        """Lowest and highest per-round speedup."""
        return min(self.speedups), max(self.speedups)

    @property
    def decided(self) -> bool:
        """Whether every round agrees on which is faster (the spread does not contain 1)."""
        low, high = self.spread
        return low > 1 or high < 1


def compare_seconds(baseline: Callable[[], object], candidate: Callable[[], object],
                    rounds: int = 5, warmup: int = 1, settle: int = 0,
                    device: str | torch.device = "cpu") -> Comparison:
    """Times ``baseline()`` and ``candidate()`` alternately, ``rounds`` calls each.

    Each round times both back to back, and the order alternates (AB, BA, AB, ...), so that a
    slow spell of a shared machine hits both sides of a round and drift favours neither; a
    ratio is taken within each round. ``warmup`` untimed calls of each come first. ``settle``
    untimed calls of a side precede each of its timed calls: its timed call then finds the
    caches as its own repeated use leaves them (the steady state of a model serving requests),
    not as the other side left them (with 0, a model whose weights fit in cache is timed cold
    after one whose weights do not).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if settle < 0:
        raise ValueError(f"settle must be >= 0, got {settle}")
    fns = baseline, candidate
    timers = _timer(baseline, device), _timer(candidate, device)
    for _ in range(warmup):
        baseline()
        candidate()
    _sync(device)
    times: tuple[list[float], list[float]] = ([], [])
    for r in range(rounds):
        for side in ((0, 1) if r % 2 == 0 else (1, 0)):
            for _ in range(settle):
                fns[side]()
            _sync(device)
            times[side].append(timers[side]())
    return Comparison(*times)
