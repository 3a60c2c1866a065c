"""Where an apply is: resources done of planned, bytes copied of planned, rates and times left.

One tally feeds every progress view (the terminal bars, the plain lines, the JSON events), so
they all say the same. Bytes are counted per workload: a workload copies its disks one after
the other and the listener reports each copy from zero, so a report that goes backwards (or
changes its total) means the previous disk finished.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

#: Rates are measured over this many seconds of recent progress (a moving window).
RATE_WINDOW = 30.0


@dataclass
class _Rate:
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=512))

    def add(self, now: float, done: int) -> None:
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > RATE_WINDOW:
            self.samples.popleft()

    def per_second(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else None


@dataclass
class Workload:
    """One workload's bytes: disks finished, the current copy, and the plan's estimate."""

    planned: int | None
    finished: int = 0
    current: int = 0
    current_total: int = 0
    rate: _Rate = field(default_factory=_Rate)

    @property
    def done(self) -> int:
        return self.finished + self.current

    @property
    def total(self) -> int:
        seen = self.finished + self.current_total
        return max(self.planned or 0, seen)

    def eta(self) -> float | None:
        return _eta(self.total - self.done, self.rate.per_second())


def _eta(left: int, rate: float | None) -> float | None:
    if rate is None or rate <= 0:
        return None
    return max(left, 0) / rate


class Tally:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.nodes_total = 0
        self.nodes_done = 0
        self.bytes_planned = 0
        self.workloads: dict[str, Workload] = {}
        self.finished_bytes = 0  # of workloads that finished (counted at their done bytes)
        self._rate = _Rate()

    def planned(self, total: int, bytes_total: int = 0) -> None:
        self.nodes_total = total
        self.bytes_planned = bytes_total

    def progress(self, node: str, planned: int | None, done: int, total: int) -> Workload:
        work = self.workloads.get(node)
        if work is None:
            work = self.workloads[node] = Workload(planned=planned)
        if done < work.current or (work.current_total and total != work.current_total):
            work.finished += work.current_total  # the previous disk's copy completed
        work.current, work.current_total = done, total
        now = self.clock()
        work.rate.add(now, work.done)
        self._rate.add(now, self.bytes_done)
        return work

    def finished(self, node: str) -> Workload | None:
        self.nodes_done += 1
        work = self.workloads.pop(node, None)
        if work is not None:
            self.finished_bytes += work.done
        return work

    @property
    def bytes_done(self) -> int:
        return self.finished_bytes + sum(w.done for w in self.workloads.values())

    @property
    def bytes_total(self) -> int:
        seen = self.finished_bytes + sum(w.total for w in self.workloads.values())
        return max(self.bytes_planned, seen)

    def rate(self) -> float | None:
        return self._rate.per_second()

    def eta(self) -> float | None:
        return _eta(self.bytes_total - self.bytes_done, self.rate())
