import time

import pytest

from emokernels.experiments.progress import Progress, duration
from emokernels.timing import Comparison, compare_seconds


def test_comparison_statistics():
    c = Comparison(baseline_s=[2.0, 4.0, 3.0], candidate_s=[1.0, 1.0, 3.0])
    assert c.speedups == [2.0, 4.0, 1.0]
    assert c.speedup == 2.0 and c.spread == (1.0, 4.0)
    assert not c.decided  # one round found them equal
    assert Comparison([2.0, 2.2], [1.0, 1.0]).decided
    assert Comparison([1.0, 1.0], [2.0, 1.1]).decided  # slower in every round


def test_compare_seconds_alternates_and_times_each_side():
    calls = []

    def slow():
        calls.append("b")
        time.sleep(0.05)

    def fast():
        calls.append("c")
        time.sleep(0.002)

    c = compare_seconds(slow, fast, rounds=4, warmup=1)
    assert calls == ["b", "c", "b", "c", "c", "b", "b", "c", "c", "b"]  # warm-up, AB BA AB BA
    assert len(c.baseline_s) == len(c.candidate_s) == 4
    assert min(c.baseline_s) >= 0.05 and min(c.candidate_s) >= 0.002
    assert c.speedup > 1.5 and c.decided
    with pytest.raises(ValueError, match="rounds"):
        compare_seconds(slow, fast, rounds=0)


def test_compare_seconds_settles_each_side_before_its_timed_call():
    calls = []

    def side(tag: str, first: float, later: float):
        def fn():
            # slow on a call that follows the other side's (cold), fast on a repeat (warm)
            cold = not calls or calls[-1] != tag
            calls.append(tag)
            time.sleep(first if cold else later)
        return fn

    c = compare_seconds(side("b", 0.03, 0.02), side("c", 0.03, 0.001), rounds=2, warmup=0,
                        settle=1)
    assert calls == ["b", "b", "c", "c", "c", "c", "b", "b"]  # each timed call is a repeat
    assert max(c.candidate_s) < 0.015 and min(c.baseline_s) >= 0.02
    calls.clear()
    c = compare_seconds(side("b", 0.03, 0.02), side("c", 0.03, 0.001), rounds=2, warmup=0)
    assert c.candidate_s[0] >= 0.03  # right after the baseline's call: cold
    with pytest.raises(ValueError, match="settle"):
        compare_seconds(side("b", 0, 0), side("c", 0, 0), settle=-1)


def test_duration_text():
    assert [duration(s) for s in (0, 42.4, 185, 3725)] == ["0s", "42s", "3m05s", "1h02m"]


def test_progress_scales_what_is_left_by_the_pace_so_far():
    now = [100.0]
    lines = []
    progress = Progress({"a": 10.0, "b": 30.0}, lines.append, bar=False, clock=lambda: now[0])
    assert progress.remaining() == 40.0  # nothing done: the plan
    now[0] += 10.0
    progress.update("a", 0.5, "half of a")  # 5 planned seconds took 10: twice as slow
    assert progress.remaining() == pytest.approx(2 * 35.0)
    assert lines == ["half of a | 10s elapsed, about 1m10s left"]
    now[0] += 10.0
    progress.update("a", 1.0)  # no message, no line
    assert progress.remaining() == pytest.approx(30.0 * 20 / 10) and len(lines) == 1
    progress.update("a", 0.2)  # done stays done
    assert progress.done["a"] == 1.0
    with pytest.raises(KeyError, match="not planned"):
        progress.update("c", 1.0)
    with pytest.raises(ValueError, match=">= 0"):
        Progress({"a": -1.0}, lines.append, bar=False)
    progress.close()
