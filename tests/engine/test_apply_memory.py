"""The engine end to end on the memory provider: plan, apply, converge, fail, resume, refuse."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tenantshift.engine.apply import JOURNAL_FILE, apply_plan
from tenantshift.engine.planning import StalePlanError, check_fresh, make_plan
from tenantshift.engine.state.journal import Journal
from tenantshift.engine.state.lock import ApplyLock, LockedError
from tenantshift.engine.walk.walker import Status
from tenantshift.manifest import Manifest
from tenantshift.plans import Action
from tenantshift.providers import ProviderError
from tenantshift.providers.memory import MemoryProvider
from tests.engine.topology import build_source

MANIFEST = Manifest.model_validate(
    {"version": 1, "source": {"cloud": "src"}, "destination": {"cloud": "dst"}}
)


def names(cloud: MemoryProvider, kind: str) -> Counter[str]:
    return Counter(r.key for r in cloud.snapshot().of_kind(kind))


def test_topology_is_large_enough() -> None:
    assert len(build_source().snapshot().resources) >= 200


def test_apply_then_second_plan_has_no_changes(tmp_path: Path) -> None:
    source, destination = build_source(), MemoryProvider("destination")
    first = make_plan(MANIFEST, source, destination).plan
    created = [c for c in first.changes if c.action is Action.CREATE]
    assert len(created) >= 200

    result = apply_plan(first, destination, tmp_path, parallelism=10)

    assert result.ok, [o.message for o in result.outcomes.values() if o.status is not Status.DONE]
    second = make_plan(MANIFEST, source, destination).plan
    assert not second.has_changes, [c.address for c in second.changes if c.action.value != "no-op"]
    # Same resources on both sides, none twice.
    src_snap, dst_snap = source.snapshot(), destination.snapshot()
    assert set(src_snap.resources) == set(dst_snap.resources)
    for address, res in src_snap.resources.items():
        assert dst_snap.resources[address].params == res.params, address


def test_routes_are_set_after_the_interfaces(tmp_path: Path) -> None:
    source, destination = build_source(networks=5, groups=1), MemoryProvider("destination")
    order: list[str] = []

    def spy(operation: str, kind: str, params: Mapping[str, Any]) -> None:
        if kind in ("router", "router_interface"):
            order.append(f"{operation} {kind} {'routes' if 'routes' in params else ''}".strip())

    destination.fault = spy
    result = apply_plan(make_plan(MANIFEST, source, destination).plan, destination, tmp_path)

    assert result.ok
    assert order.index("update router routes") > max(
        i for i, op in enumerate(order) if op == "create router_interface"
    )
    assert "create router routes" not in order


def test_a_failure_skips_exactly_its_dependents_and_a_rerun_converges(tmp_path: Path) -> None:
    source, destination = build_source(), MemoryProvider("destination")

    def broken_network(operation: str, kind: str, params: Mapping[str, Any]) -> None:
        if operation == "create" and kind == "network" and params.get("name") == "net-03":
            raise ProviderError("503 Service Unavailable", call="POST /v2.0/networks")

    destination.fault = broken_network
    plan = make_plan(MANIFEST, source, destination).plan
    result = apply_plan(plan, destination, tmp_path)

    failed = {a for a, o in result.outcomes.items() if o.status is Status.FAILED}
    skipped = {a for a, o in result.outcomes.items() if o.status is Status.SKIPPED}
    assert failed == {"network.net-03"}
    # Its two subnets, their router interfaces and the late routes of router-0 (whose interfaces
    # it waits for); nothing else.
    assert skipped == {
        "subnet.net-03/sub-0",
        "subnet.net-03/sub-1",
        "router_interface.router-0/net-03/sub-0",
        "router_interface.router-0/net-03/sub-1",
        "router.router-0#late",
    }
    for address in skipped:
        assert result.outcomes[address].root_causes == ("network.net-03",)
    assert names(destination, "network")["net-04"] == 1  # independent branches went on

    destination.fault = None
    rerun = make_plan(MANIFEST, source, destination).plan
    todo = {c.address for c in rerun.changes if c.action is not Action.NOOP}
    assert todo == {
        "network.net-03",
        "subnet.net-03/sub-0",
        "subnet.net-03/sub-1",
        "router_interface.router-0/net-03/sub-0",
        "router_interface.router-0/net-03/sub-1",
        "router.router-0",
    }
    assert apply_plan(rerun, destination, tmp_path).ok
    assert not make_plan(MANIFEST, source, destination).plan.has_changes
    assert all(count == 1 for count in names(destination, "network").values())
    assert all(count == 1 for count in names(destination, "subnet").values())


def test_a_create_whose_answer_was_lost_is_adopted_not_duplicated(tmp_path: Path) -> None:
    """The cloud made the network but the reply never came (reset, crash): the re-run's node
    finds it by its provenance marker."""
    source, destination = build_source(networks=2, groups=1), MemoryProvider("destination")
    plan = make_plan(MANIFEST, source, destination).plan
    real_create = destination.create

    def create_then_lose_reply(kind: str, params: Mapping[str, Any], source_id: str | None):
        record = real_create(kind, params, source_id)
        if kind == "network" and params["name"] == "net-01":
            raise ProviderError("connection reset by peer", call="POST /v2.0/networks")
        return record

    destination.create = create_then_lose_reply  # type: ignore[method-assign]
    assert not apply_plan(plan, destination, tmp_path).ok
    destination.create = real_create  # type: ignore[method-assign]

    # Re-applying the *same* plan: the node re-reads, finds its marker, adopts.
    result = apply_plan(plan, destination, tmp_path)

    assert result.outcomes["network.net-01"].message.startswith("already there")
    assert names(destination, "network") == Counter({"net-00": 1, "net-01": 1})
    assert not make_plan(MANIFEST, source, destination).plan.has_changes


def test_an_interrupted_run_is_resumed_and_the_journal_says_so(tmp_path: Path) -> None:
    source, destination = build_source(networks=2, groups=1), MemoryProvider("destination")
    plan = make_plan(MANIFEST, source, destination).plan
    # What a SIGKILL leaves: a run still marked running, with a step begun and never finished.
    journal = Journal(tmp_path / JOURNAL_FILE)
    dead_run = journal.start_run("x")
    journal.record("network.net-00", "create", "begin")
    journal.close()

    result = apply_plan(plan, destination, tmp_path)

    assert result.ok
    assert result.resumed_from == dead_run
    assert result.in_doubt == {"network.net-00"}
    journal = Journal(tmp_path / JOURNAL_FILE)
    statuses = {run.run_id: run.status for run in journal.runs()}
    assert statuses == {dead_run: "interrupted", result.run_id: "succeeded"}
    journal.close()


def test_a_stale_saved_plan_is_refused(tmp_path: Path) -> None:
    source, destination = build_source(networks=2, groups=1), MemoryProvider("destination")
    plan = make_plan(MANIFEST, source, destination).plan
    check_fresh(plan, MANIFEST, source, destination)  # fresh: no error

    destination.create("network", {"name": "made-by-hand"}, None)

    with pytest.raises(StalePlanError, match=r"destination changed: added network\.made-by-hand"):
        check_fresh(plan, MANIFEST, source, destination)


def test_a_concurrent_apply_is_refused(tmp_path: Path) -> None:
    source, destination = build_source(networks=1, groups=1), MemoryProvider("destination")
    plan = make_plan(MANIFEST, source, destination).plan

    with ApplyLock(tmp_path), pytest.raises(LockedError, match="another apply"):
        apply_plan(plan, destination, tmp_path)

    assert destination.count("network") == 0
    assert apply_plan(plan, destination, tmp_path).ok  # the lock is free again


def test_parallelism_is_bounded(tmp_path: Path) -> None:
    import threading
    import time

    source, destination = build_source(networks=10, groups=1), MemoryProvider("destination")
    running, peak, lock = 0, 0, threading.Lock()
    real_create = destination.create

    def slow_create(kind: str, params: Mapping[str, Any], source_id: str | None):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.01)
        try:
            return real_create(kind, params, source_id)
        finally:
            with lock:
                running -= 1

    destination.create = slow_create  # type: ignore[method-assign]
    assert apply_plan(
        make_plan(MANIFEST, source, destination).plan, destination, tmp_path, parallelism=3
    ).ok
    assert 1 < peak <= 3


def test_a_caller_can_hold_the_lock_across_check_and_apply(tmp_path: Path) -> None:
    source, destination = build_source(networks=1, groups=1), MemoryProvider("destination")
    plan = make_plan(MANIFEST, source, destination).plan

    with ApplyLock(tmp_path) as held:
        result = apply_plan(plan, destination, tmp_path, lock=held)
        assert result.ok
        # Still held after apply_plan's own use: another apply is refused until we let go.
        with pytest.raises(LockedError), ApplyLock(tmp_path):
            pass
    with ApplyLock(tmp_path):
        pass  # released


def test_a_broken_progress_listener_does_not_abort_the_apply(tmp_path: Path) -> None:
    from tenantshift.engine.walk.walker import Listener

    class Broken(Listener):
        def finished(self, outcome: object) -> None:
            raise RuntimeError("terminal went away")

    source, destination = build_source(networks=2, groups=1), MemoryProvider("destination")
    result = apply_plan(
        make_plan(MANIFEST, source, destination).plan, destination, tmp_path, listener=Broken()
    )
    assert result.ok
    assert not make_plan(MANIFEST, source, destination).plan.has_changes


def test_updating_the_default_group_leaves_it_unmarked(tmp_path: Path) -> None:
    source, destination = MemoryProvider("source"), MemoryProvider("destination")
    group = next(r for r in source.snapshot().of_kind("security_group"))
    assert group.params["name"] == "default"
    source.update("security_group", str(group.id), {"description": "ours"})

    assert apply_plan(make_plan(MANIFEST, source, destination).plan, destination, tmp_path).ok

    copy = destination.snapshot().resources["security_group.default"]
    assert copy.params["description"] == "ours"
    assert copy.provenance is None
