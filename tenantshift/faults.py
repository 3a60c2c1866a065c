"""Fault injection for the kill-and-resume tests: a crash exactly where a test asks for one.

Every hook kills the process the way ``kill -9`` or a power cut would: nothing after it runs,
no ``finally``, no journal write. The points are named by environment variables, so a test
can start ``tenantshift apply`` as a subprocess and kill it anywhere:

- ``TENANTSHIFT_FAULT_KILL_AFTER=<phase>``: right after a workload phase is journaled;
- ``TENANTSHIFT_FAULT_KILL_AT_BYTES=<n>``: as soon as a copy reports ``n`` bytes done;
- ``TENANTSHIFT_FAULT_KILL_AT_CALL=<n>`` (or ``<n>:after``): right before (or right after) the
  ``n``-th cloud call of the process, whatever the phase or the kind: the one hook that reaches
  the moments *inside* a phase, between two calls of one step. ``<name>`` or ``<name>#<k>``
  instead of ``<n>``: the first (``k``-th) call of that name (``network.set_tags(network)``,
  ``block_storage.set_volume_bootable_status``), for a real cloud, where parallel nodes make
  the index of one call vary from run to run.

Cloud calls are counted by whoever makes them (the OpenStack provider's ``Caller``, the memory
provider's every method) through ``cloud_call``. In-process tests replace the killer with one
that raises ``Killed`` and then keeps the process "dead" (every later call raises too): see
``tests/engine/killpoints.py``.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

KILL_AFTER_PHASE = "TENANTSHIFT_FAULT_KILL_AFTER"
KILL_AT_BYTES = "TENANTSHIFT_FAULT_KILL_AT_BYTES"
KILL_AT_CALL = "TENANTSHIFT_FAULT_KILL_AT_CALL"


def _sigkill(where: str) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


#: What a fault point does: SIGKILL this process (tests swap in an exception).
killer: Callable[[str], None] = _sigkill

_calls = itertools.count(1)
_calls_lock = threading.Lock()
#: Where the process was killed (only ever seen by an in-process killer, which returns by
#: raising): a dead process makes no further call.
_killed_at: str | None = None


def reset() -> None:
    """A new process, as far as faults go: cloud calls count from 1, nothing was killed."""
    global _calls, _killed_at
    with _calls_lock:
        _calls = itertools.count(1)
        _named.clear()
        _killed_at = None


def _kill(where: str) -> None:
    global _killed_at
    _killed_at = where
    killer(where)


#: Calls so far by name (for a ``<name>#<k>`` target).
_named: dict[str, int] = {}


def _target() -> tuple[str, int, bool] | None:
    """(call name, or "" for any call; its ordinal; after) from the environment."""
    raw = os.environ.get(KILL_AT_CALL)
    if not raw:
        return None
    what, after = raw, False
    for suffix in (":after", ":before"):
        if raw.endswith(suffix):
            what, after = raw.removesuffix(suffix), suffix == ":after"
    if what.isdigit():
        return "", int(what), after
    name, _, ordinal = what.partition("#")
    return name, int(ordinal or 1), after


@contextmanager
def cloud_call(name: str) -> Iterator[int]:
    """Around one cloud call: counts it, and kills before or after it when asked to."""
    if _killed_at is not None:
        killer(_killed_at)
    with _calls_lock:
        index = next(_calls)
        _named[name] = nth = _named.get(name, 0) + 1
    target = _target()
    hit = target is not None and target[:2] in (("", index), (name, nth))
    if hit and target is not None and not target[2]:
        _kill(f"before cloud call {index} ({name})")
    yield index
    if hit and target is not None and target[2]:
        _kill(f"after cloud call {index} ({name})")


def after_phase(phase: str) -> None:
    if os.environ.get(KILL_AFTER_PHASE) == phase:
        _kill(f"after phase {phase}")


def at_bytes(done: int) -> None:
    limit = os.environ.get(KILL_AT_BYTES)
    if limit and done >= int(limit):
        _kill(f"at byte {done}")


def killed() -> bool:
    """Whether an in-process killer has fired (the test's process is "dead")."""
    return _killed_at is not None
