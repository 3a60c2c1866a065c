"""Typed nodes, resource classes and tolerant cleanup nodes in the walker; the sized pool."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import networkx as nx
import pytest

from tenantshift.engine.apply import apply_plan
from tenantshift.engine.planning import make_plan
from tenantshift.engine.state.journal import Journal
from tenantshift.engine.walk.limits import Limits
from tenantshift.engine.walk.nodes import (
    CleanupNode,
    Node,
    ResourceClass,
    Step,
    WorkloadNode,
    nodes_for,
)
from tenantshift.engine.walk.walker import Status, walk
from tenantshift.manifest import Manifest
from tenantshift.plans import Action, Change
from tenantshift.providers.memory import MemoryProvider

MANIFEST = Manifest.model_validate(
    {"version": 1, "source": {"cloud": "src"}, "destination": {"cloud": "dst"}}
)


def change(address: str, action: Action = Action.CREATE) -> Change:
    return Change(address=address, kind=address.partition(".")[0], action=action, after={})


@pytest.mark.parametrize("action", list(Action))
def test_every_action_maps_to_nodes(action: Action) -> None:
    nodes = nodes_for(change("network.a", action))
    if action is Action.NOOP:
        assert nodes == []
    else:
        assert nodes, f"{action} maps to no node: apply would silently do nothing"


def test_migrate_is_a_copy_class_workload_with_a_tolerant_cleanup() -> None:
    work, cleanup = nodes_for(change("volume.data", Action.MIGRATE))
    assert isinstance(work, WorkloadNode) and work.resource_class is ResourceClass.COPY
    assert isinstance(cleanup, CleanupNode) and cleanup.always_run
    assert cleanup.id == "volume.data#cleanup"


def test_an_unknown_action_raises() -> None:
    bogus = change("network.a").model_copy(update={"action": "teleport"})
    with pytest.raises(ValueError, match="no apply node"):
        nodes_for(bogus)


@dataclass(frozen=True)
class _Probe(Node):
    """A node whose execute is supplied by the test."""

    behaviour: Any = None
    resource_class: ClassVar[ResourceClass] = ResourceClass.API


@dataclass(frozen=True)
class _CopyProbe(_Probe):
    resource_class: ClassVar[ResourceClass] = ResourceClass.COPY


@dataclass(frozen=True)
class _TolerantProbe(_Probe):
    always_run: ClassVar[bool] = True


def _graph(*nodes: Node, edges: tuple[tuple[str, str], ...] = ()) -> nx.DiGraph:
    graph = nx.DiGraph()
    for node in nodes:
        graph.add_node(node.id, node=node)
    graph.add_edges_from(edges)
    return graph


async def _run(node: Node) -> str:
    return str(await node.behaviour())  # type: ignore[attr-defined]


def test_long_copies_never_take_the_slots_of_api_work() -> None:
    """Two copies that only finish once every API node has run: with one shared bound of 2
    this deadlocks (the copies hold both slots); with a bound per class it completes."""
    api_done = asyncio.Event()
    api_left = [6]

    async def copy() -> str:
        await api_done.wait()
        return "copied"

    async def api() -> str:
        await asyncio.sleep(0.01)
        api_left[0] -= 1
        if not api_left[0]:
            api_done.set()
        return "ok"

    nodes: list[Node] = [
        _CopyProbe(change(f"volume.v{i}", Action.MIGRATE), Step.MIGRATE, copy) for i in range(2)
    ]
    nodes += [_Probe(change(f"network.n{i}"), Step.CREATE, api) for i in range(6)]

    async def main() -> dict[str, Any]:
        return await asyncio.wait_for(
            walk(_graph(*nodes), _run, limits=Limits.of(2, 2)), timeout=10
        )

    outcomes = asyncio.run(main())
    assert {o.status for o in outcomes.values()} == {Status.DONE}


def test_a_cleanup_node_runs_after_its_workload_failed() -> None:
    ran: list[str] = []

    async def fail() -> str:
        raise RuntimeError("copy broke")

    async def clean() -> str:
        ran.append("cleanup")
        return "cleaned"

    async def after() -> str:
        ran.append("dependent")
        return "ok"

    work = _CopyProbe(change("volume.v", Action.MIGRATE), Step.MIGRATE, fail)
    cleanup = _TolerantProbe(change("volume.w", Action.MIGRATE), Step.CLEANUP, clean)
    dependent = _Probe(change("network.x"), Step.CREATE, after)
    skipped: list[str] = []
    outcomes = asyncio.run(
        walk(
            _graph(
                work, cleanup, dependent, edges=((work.id, cleanup.id), (work.id, dependent.id))
            ),
            _run,
            limits=Limits.of(2, 2),
            on_skip=lambda o: skipped.append(o.node.id),
        )
    )
    assert ran == ["cleanup"]
    assert outcomes[work.id].status is Status.FAILED
    assert outcomes[cleanup.id].status is Status.DONE
    assert outcomes[dependent.id].status is Status.SKIPPED
    assert skipped == [dependent.id]  # reported as it was decided


@pytest.mark.parametrize("parallelism", [1, 10, 50])
def test_observed_peak_reaches_the_requested_parallelism(tmp_path: Path, parallelism: int) -> None:
    """The pool is sized to ``parallelism``: the default one capped 50 at 6 on 2 cores."""
    source = MemoryProvider("source")
    for i in range(2 * parallelism + 5):
        source.create("network", {"name": f"net-{i:03d}"}, None)
    lock = threading.Lock()
    running = [0, 0]  # now, peak

    def slow(operation: str, kind: str, params: Mapping[str, Any]) -> None:
        if operation != "create":
            return
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1

    destination = MemoryProvider("destination", fault=slow)
    plan = make_plan(MANIFEST, source, destination).plan
    assert apply_plan(plan, destination, tmp_path, parallelism=parallelism).ok
    assert running[1] == parallelism


def test_node_state_advances_and_clears(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.start_run("d")
    assert journal.state_of("volume.v") is None
    journal.advance("volume.v", "attached", {"dst_volume": "d1"})
    journal.advance("volume.v", "copied", {"dst_volume": "d1", "digest": "x"})
    assert journal.state_of("volume.v") == ("copied", {"dst_volume": "d1", "digest": "x"})
    journal.close()
    reopened = Journal(tmp_path / "j.sqlite")  # state survives the process
    assert reopened.state_of("volume.v") == ("copied", {"dst_volume": "d1", "digest": "x"})
    reopened.clear_state("volume.v")
    assert reopened.state_of("volume.v") is None


def test_temporaries_are_undone_newest_first_with_their_data(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.start_run("d")
    first = journal.intend_temporary("volume.v", "source", "attachment", "a", {"server_id": "s"})
    journal.temporary_created(first, "v1")
    second = journal.intend_temporary("volume.v", "destination", "attachment", "b")
    journal.intend_temporary("volume.w", "source", "volume", "c")
    rows = journal.pending_temporaries("volume.v")
    assert [r["seq"] for r in rows] == [second, first]
    assert rows[1]["data"] == {"server_id": "s"} and rows[1]["state"] == "created"
    journal.temporary_cleaned(second)
    assert [r["seq"] for r in journal.pending_temporaries("volume.v")] == [first]


def test_a_journal_from_before_temporary_data_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE temporaries (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, "
        "owner TEXT NOT NULL, cloud TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, "
        "resource_id TEXT, state TEXT NOT NULL, at TEXT NOT NULL)"
    )
    db.execute(
        "INSERT INTO temporaries (run_id, owner, cloud, kind, name, state, at) "
        "VALUES ('r', 'volume.v', 'source', 'volume', 'tmp', 'intended', 'now')"
    )
    db.commit()
    db.close()
    journal = Journal(path)
    assert journal.pending_temporaries()[0]["data"] == {}


def test_a_corrupt_journal_is_a_clear_error_and_the_journal_private(tmp_path: Path) -> None:
    """Security review L9 and L11."""
    from tenantshift.engine.state.journal import JournalError

    good = Journal(tmp_path / "state" / "journal.sqlite")
    good.close()
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "state" / "journal.sqlite").stat().st_mode & 0o777 == 0o600
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database, just bytes" * 100)
    with pytest.raises(JournalError, match=r"bad\.sqlite.*move .* aside"):
        Journal(bad)
