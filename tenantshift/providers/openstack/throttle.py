"""How many requests to one cloud are in flight at once, when the cloud cannot keep up.

An apply sends up to ``parallelism`` requests at once. A cloud whose API workers are busy
queues them; once the queue is longer than the client waits (``api_timeout``), requests time
out, and sending as many again only makes the queue longer. So the first timeout bounds the
requests in flight to half of what was in flight when it was sent, and each answer lets the
bound grow back by a fraction (one more per bound's worth of answers): additive increase,
multiplicative decrease, TCP's answer to a congested link. Requests already in flight when the
bound was cut do not cut it again when they time out too (one cut per round).

Until a request times out there is no bound: a cloud that keeps up never waits here.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class Throttle:
    def __init__(self, label: str) -> None:
        self.label = label
        self.limit = math.inf
        self.in_flight = 0
        #: Rounds: a timeout cuts the bound only if its request was sent in the current round.
        self.round = 0
        self._cond = threading.Condition()
        self._holding = threading.local()

    @contextmanager
    def slot(self) -> Iterator[int]:
        """Hold one of the requests in flight; yields the round it was sent in. A call made
        while this thread already holds one (a lookup inside a retry) does not wait again:
        it would wait for itself."""
        if getattr(self._holding, "depth", 0):
            self._holding.depth += 1
            try:
                yield self.round
            finally:
                self._holding.depth -= 1
            return
        with self._cond:
            while self.in_flight >= self.limit:
                self._cond.wait()
            self.in_flight += 1
            sent_in = self.round
        self._holding.depth = 1
        try:
            yield sent_in
        finally:
            self._holding.depth = 0
            with self._cond:
                self.in_flight -= 1
                self._cond.notify()

    def answered(self) -> None:
        with self._cond:
            if self.limit != math.inf:
                before = int(self.limit)
                self.limit += 1 / self.limit
                if int(self.limit) > before:
                    self._cond.notify()

    def timed_out(self, sent_in: int) -> None:
        """A request sent in round ``sent_in`` timed out (it has left its slot)."""
        with self._cond:
            if sent_in != self.round:
                return
            self.round += 1
            was = self.in_flight + 1
            self.limit = float(max(1, was // 2))
        log.warning(
            "%s: a request timed out with %d in flight: the cloud is not keeping up; at most "
            "%d requests at once from now on, more as it answers",
            self.label,
            was,
            int(self.limit),
        )
