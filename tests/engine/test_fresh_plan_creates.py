"""A create of a fresh plan sends its request without looking first, unless a run began it.

The look-up before a create (by marker, then by key: two listings on a cloud) is there for
what an earlier run of the same journal made and never recorded. With a plan made or checked
under the apply lock (``fresh_plan``), a node no run ever began has nothing of its own to
find; one a run began (and lost the answer of, or was killed in) still looks, and adopts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tenantshift.engine.apply import apply_plan
from tenantshift.engine.planning import make_plan
from tenantshift.engine.walk.context import ApplySettings
from tenantshift.manifest import Manifest
from tenantshift.plans import Action
from tenantshift.providers import ProviderError
from tenantshift.providers.memory import MemoryProvider
from tests.engine.topology import build_source

MANIFEST = Manifest.model_validate(
    {"version": 1, "source": {"cloud": "src"}, "destination": {"cloud": "dst"}}
)
FRESH = ApplySettings(fresh_plan=True)


def test_a_fresh_plan_creates_without_looking_first(tmp_path: Path) -> None:
    source, destination = build_source(networks=4, groups=2), MemoryProvider("destination")
    plan = make_plan(MANIFEST, source, destination).plan
    creates = sum(1 for c in plan.changes if c.action is Action.CREATE)
    destination.calls.clear()

    assert apply_plan(plan, destination, tmp_path, settings=FRESH).ok

    calls = Counter(op for op, _ in destination.calls)
    assert calls["create"] == creates and calls["find"] == 0
    assert not make_plan(MANIFEST, source, destination).plan.has_changes


def test_a_plan_not_known_to_be_fresh_still_looks_first(tmp_path: Path) -> None:
    source, destination = build_source(networks=2, groups=1), MemoryProvider("destination")
    plan = make_plan(MANIFEST, source, destination).plan
    destination.calls.clear()
    assert apply_plan(plan, destination, tmp_path).ok
    calls = Counter(op for op, _ in destination.calls)
    assert calls["find"] == calls["create"] > 0


def test_a_create_an_earlier_run_began_looks_first_and_adopts(tmp_path: Path) -> None:
    """The POST of net-01 went through but its answer was lost, and the run gave up: the next
    run of the same fresh plan must find that copy, not make a second one."""
    source, destination = build_source(networks=2, groups=1), MemoryProvider("destination")
    plan = make_plan(MANIFEST, source, destination).plan
    real_create = destination.create

    def create_then_lose_reply(kind: str, params: Mapping[str, Any], source_id: str | None):
        record = real_create(kind, params, source_id)
        if kind == "network" and params["name"] == "net-01":
            raise ProviderError("connection reset by peer", call="POST /v2.0/networks")
        return record

    destination.create = create_then_lose_reply  # type: ignore[method-assign]
    assert not apply_plan(plan, destination, tmp_path, settings=FRESH).ok
    destination.create = real_create  # type: ignore[method-assign]
    destination.calls.clear()

    result = apply_plan(plan, destination, tmp_path, settings=FRESH)

    assert result.outcomes["network.net-01"].message.startswith("already there")
    assert ("find", "network") in destination.calls
    networks = Counter(r.key for r in destination.snapshot().of_kind("network"))
    assert networks == Counter({"net-00": 1, "net-01": 1})
    assert not make_plan(MANIFEST, source, destination).plan.has_changes
