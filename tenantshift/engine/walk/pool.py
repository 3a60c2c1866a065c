"""The pool of conversion host pairs: which pair a workload's copies use.

Two halves share one rule, largest first:

- ``plan_pairs`` (plan time, pure): every workload that copies through the hosts gets the pair
  with the fewest bytes so far, taken in order of ``bytes_to_move``, largest first (the LPT
  rule: the big copies start first and the small ones fill in behind, so the pairs finish
  close together). The plan shows the result on each change (``conversion_pair``).
- ``PairPool`` (apply time): ``copy_parallelism`` slots per pair. A workload asks for a slot
  with the pairs it prefers, in order (the one its journal names, so a resumed copy finds its
  checkpoints on that destination host; then the planned one) and gets the first of them that
  has a free slot. When those are busy, only an idle pair (no copy running, no workload planned
  on it still to start) takes the workload over: the plan already balanced the bytes, and a
  pair still copying shares its link with whatever it takes, so taking more would make it
  finish later. A workload with no preference (a fail-over) gets the pair with the most free
  slots. Waiting workloads are served largest first. A pair found dead is ``mark_down``:
  nothing new goes to it, and a workload that preferred it moves to another pair.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tenantshift.errors import TenantshiftError


def plan_pairs(sizes: Iterable[tuple[str, int]], pairs: Sequence[str]) -> dict[str, str]:
    """``{workload: pair}`` for ``(workload, bytes)``: largest first, each to the pair with
    the fewest bytes so far (ties: the earlier pair in the manifest)."""
    if not pairs:
        return {}
    load = {pair: 0 for pair in pairs}
    order = {pair: index for index, pair in enumerate(pairs)}
    out: dict[str, str] = {}
    for workload, size in sorted(sizes, key=lambda item: (-item[1], item[0])):
        pair = min(pairs, key=lambda p: (load[p], order[p]))
        out[workload] = pair
        load[pair] += size
    return out


class NoPairError(TenantshiftError):
    """Every pair of the pool is down: nothing can copy."""


@dataclass(order=True)
class _Waiter:
    sort_key: tuple[int, int]
    workload: str = field(compare=False)
    prefer: tuple[str, ...] = field(compare=False)
    sticky: str | None = field(compare=False)
    future: asyncio.Future[str] = field(compare=False)


class PairPool:
    """``copy_parallelism`` copy slots per pair, handed out largest workload first."""

    def __init__(self, pairs: Sequence[str], per_pair: int) -> None:
        if not pairs:
            raise ValueError("a pool needs at least one pair")
        if per_pair < 1:
            raise ValueError("per_pair must be at least 1")
        self.pairs = tuple(pairs)
        self.per_pair = per_pair
        self.busy: dict[str, int] = {pair: 0 for pair in self.pairs}
        #: pair -> why it was taken out of the pool
        self.down: dict[str, str] = {}
        #: Every grant in order, ``(workload, pair)``: what the scheduler tests read.
        self.grants: list[tuple[str, str]] = []
        self._waiting: list[_Waiter] = []
        self._tick = itertools.count()
        #: workload -> its planned pair, for the workloads not yet given a slot (``expect``)
        self._expected: dict[str, str] = {}

    @property
    def healthy(self) -> tuple[str, ...]:
        return tuple(p for p in self.pairs if p not in self.down)

    def expect(self, planned: Mapping[str, str]) -> None:
        """The plan's pairs, ``{workload: pair}``, before any asks: an idle pair keeps itself
        for the workloads planned on it until they have had their slot or ``settle``."""
        self._expected = {w: p for w, p in planned.items() if p in self.busy}

    def settle(self, workload: str) -> None:
        """``workload`` will not ask (any more): it ended, or was skipped."""
        if self._expected.pop(workload, None) is not None:
            self._dispatch()

    async def acquire(
        self, workload: str, size: int, prefer: Sequence[str] = (), *, sticky: str | None = None
    ) -> str:
        """A slot for ``workload`` (its bytes to move: larger ones are served first); returns
        the pair. With ``sticky`` (the pair a resumed copy has its checkpoints on), only that
        pair while it is up. Raises ``NoPairError`` when every pair is down."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        if sticky is not None and sticky not in self.busy:
            sticky = None  # a pair the manifest no longer names
        waiter = _Waiter((-size, next(self._tick)), workload, tuple(prefer), sticky, future)
        self._waiting.append(waiter)
        self._dispatch()
        return await future

    def release(self, pair: str) -> None:
        self.busy[pair] -= 1
        self._dispatch()

    def mark_down(self, pair: str, reason: str) -> None:
        """Take ``pair`` out of the pool (its slots in use are released by their holders)."""
        self.down.setdefault(pair, reason)
        self._dispatch()

    def _free(self, pair: str) -> int:
        return 0 if pair in self.down else self.per_pair - self.busy[pair]

    def _choose(self, prefer: Sequence[str], sticky: str | None) -> str | None:
        if sticky is not None and sticky not in self.down:
            return sticky if self._free(sticky) > 0 else None
        planned = [p for p in prefer if p in self.busy and p not in self.down]
        for pair in planned:
            if self._free(pair) > 0:
                return pair
        if planned:
            # Its pair is busy. The plan balanced the bytes across the pairs, and a pair's
            # link is shared by the copies on it: another pair that is still copying would
            # finish later for taking this one. Only a pair with nothing to do takes it over.
            idle = [p for p in self.healthy if self.busy[p] == 0 and not self._awaited(p)]
            return idle[0] if idle else None
        best = max(self.pairs, key=lambda p: (self._free(p), -self.pairs.index(p)))
        return best if self._free(best) > 0 else None

    def _awaited(self, pair: str) -> bool:
        """Whether a workload planned on ``pair`` has not had its slot yet, or a waiting one
        has ``pair`` as its first choice."""
        if pair in self._expected.values():
            return True
        for waiter in self._waiting:
            if waiter.future.done():
                continue
            first = waiter.sticky or next(
                (p for p in waiter.prefer if p in self.busy and p not in self.down), None
            )
            if first == pair:
                return True
        return False

    def _dispatch(self) -> None:
        if not self.healthy:
            reasons = "; ".join(f"pair {p!r}: {why}" for p, why in self.down.items())
            for waiter in self._waiting:
                if not waiter.future.done():
                    waiter.future.set_exception(
                        NoPairError(f"no conversion host pair is left ({reasons})")
                    )
            self._waiting = []
            return
        # Largest first; a waiter held to its busy pair (sticky) lets smaller ones pass.
        still: list[_Waiter] = []
        for waiter in sorted(self._waiting):
            if waiter.future.done():  # cancelled while waiting
                continue
            pair = self._choose(waiter.prefer, waiter.sticky)
            if pair is None:
                still.append(waiter)
                continue
            self.busy[pair] += 1
            self._expected.pop(waiter.workload, None)
            self.grants.append((waiter.workload, pair))
            waiter.future.set_result(pair)
        self._waiting = still
