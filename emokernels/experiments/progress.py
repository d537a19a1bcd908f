"""Progress of a long reproduction: the work planned (seconds estimated per task), one overall
bar on a terminal, and otherwise a log line per step with the time spent and the time left."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from tqdm import tqdm


def duration(seconds: float) -> str:
    """``seconds`` as ``1h02m``, ``3m05s`` or ``42s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Tracks planned tasks, each with an estimated cost in seconds.

    The time left is the planned cost of what remains, scaled by how the finished part ran
    against its plan (a machine twice as slow as estimated gets twice the estimate).
    ``bar``: None shows an overall bar only when stderr is a terminal (tqdm's rule).
    """

    def __init__(self, plan: dict[str, float], log: Callable[[str], None] = print,
                 bar: bool | None = None, clock: Callable[[], float] = time.perf_counter
                 ) -> None:
        if any(not cost >= 0 for cost in plan.values()):
            raise ValueError(f"planned costs must be >= 0 seconds, got {plan}")
        self.plan = dict(plan)
        self.done: dict[str, float] = dict.fromkeys(plan, 0.0)  # fraction of each task
        self.log, self.clock = log, clock
        self.start = clock()
        total = sum(self.plan.values())
        self._bar = tqdm(total=round(total), desc="total", unit="s", position=0,
                         disable=None if bar is None else not bar, file=sys.stderr,
                         bar_format="{l_bar}{bar}| {elapsed}<{remaining}")

    @property
    def elapsed(self) -> float:
        return self.clock() - self.start

    def remaining(self) -> float:
        """Estimated seconds left."""
        planned_done = sum(self.plan[k] * f for k, f in self.done.items())
        left = sum(self.plan[k] * (1 - f) for k, f in self.done.items())
        pace = self.elapsed / planned_done if planned_done > 0 else 1.0
        return left * pace

    def update(self, task: str, fraction: float, message: str = "") -> None:
        """Marks ``fraction`` (0..1) of ``task`` done; logs ``message`` with the times."""
        if task not in self.plan:
            raise KeyError(f"task {task!r} is not planned")
        self.done[task] = min(1.0, max(self.done[task], fraction))
        # The bar counts planned seconds: its rate-based estimate is then remaining()'s.
        self._bar.n = round(sum(self.plan[k] * f for k, f in self.done.items()))
        self._bar.refresh()
        if message:
            line = (f"{message} | {duration(self.elapsed)} elapsed, about "
                    f"{duration(self.remaining())} left")
            if self._bar.disable:
                self.log(line)
            else:
                self._bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()
