"""Every workload kind migrated on the memory cloud, in-process: the phases, the end state,
failures that leave a journal a re-run resumes from (the devcloud tests prove the real APIs)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from tenantshift.engine import commands
from tenantshift.engine.state.journal import JOURNAL_FILE, Journal
from tenantshift.engine.state.temporary import Temporary
from tenantshift.engine.walk.context import ApplyContext, ApplySettings
from tenantshift.engine.walk.executor import IdMap
from tenantshift.engine.walk.walker import Listener
from tenantshift.engine.workloads import MIGRATIONS, UNDO, clean_up
from tenantshift.plans import Action
from tenantshift.providers import ProviderError
from tenantshift.resources import REGISTRY
from tenantshift.transfer import TransferError, VolumeCopy
from tenantshift.views.status import render_status
from tests.engine.workload_world import Killed, check_converged, kill_at, servers_of, world

KINDS = {
    "volume": {"volume": True, "image_server": False, "volume_server": False},
    "image-booted server": {"volume": False, "image_server": True, "volume_server": False},
    "volume-booted server": {"volume": False, "image_server": False, "volume_server": True},
}


def test_every_workload_kind_has_a_migration_and_every_temporary_an_undo() -> None:
    assert set(MIGRATIONS) == {k.name for k in REGISTRY if k.workload}
    assert set(UNDO) == set(Temporary)


@pytest.mark.parametrize("kinds", KINDS.values(), ids=KINDS.keys())
def test_a_migration_converges_in_one_apply(tmp_path: Path, kinds: dict[str, bool]) -> None:
    w = world(tmp_path, **kinds)
    plan = w.plan()
    migrating = [c.address for c in plan.changes if c.action is Action.MIGRATE]
    assert migrating and not any(c.blocked for c in plan.changes), plan.changes
    result = w.apply(plan)
    assert result.ok, {k: o.message for k, o in result.outcomes.items()}
    check_converged(w)


def test_the_source_server_is_stopped_for_the_copy_and_started_again(tmp_path: Path) -> None:
    w = world(tmp_path, volume=False, image_server=True, volume_server=False)
    seen: list[str] = []
    vm = next(s for s in w.source.records_of("server").values() if s["name"] == "vm-image")

    def observe(copy: VolumeCopy) -> None:
        seen.append(vm["status"])

    w.copier.before_copy = observe
    assert w.apply().ok
    assert seen == ["SHUTOFF"]
    assert vm["status"] == "ACTIVE"


def test_a_failed_copy_rewinds_the_journal_and_the_next_apply_copies_again(tmp_path: Path) -> None:
    """Third reproduction of the kill issue: the cleanup after a failed copy detaches the
    volumes; the journal must not say "attached" any more, and a re-run must converge."""
    w = world(tmp_path, volume=True, image_server=False, volume_server=False)
    links = w.copier

    def stream_ended(copy: VolumeCopy) -> None:
        raise TransferError("the stream from the source host ended at offset 29360128")

    links.before_copy = stream_ended
    first = w.apply()
    assert not first.ok
    journal = Journal(w.state_dir / JOURNAL_FILE)
    try:
        assert journal.pending_temporaries() == []  # the cleanup node detached both
        phase, _ = journal.node_states()["volume.archive"]
        assert phase == "destination_volume", f"the journal still trusts phase {phase!r}"
    finally:
        journal.close()
    links.before_copy = None
    assert w.apply().ok
    check_converged(w)


def test_a_pair_lost_mid_copy_moves_the_workload_to_another_pair(tmp_path: Path) -> None:
    w = world(tmp_path, volume=True, image_server=False, volume_server=True, pairs=2)
    plan = w.plan()
    planned = {c.address: c.conversion_pair for c in plan.changes if c.conversion_pair}
    assert sorted(planned.values()) == ["p1", "p2"]  # the plan balanced the two workloads
    lost = planned["volume.archive"]
    w.copier.down.add(lost)
    result = w.apply(plan)
    assert result.ok, {k: o.message for k, o in result.outcomes.items()}
    assert lost not in w.copier.pairs_used
    # Nothing stayed attached to the lost pair's hosts, and the end state is whole.
    for cloud in (w.source, w.destination):
        hosts = {s["id"] for s in cloud.records_of("server").values() if lost in s["name"]}
        assert not [k for k in cloud.data.devices if k[0] in hosts]
    w.copier.down.clear()
    check_converged(w)


def test_with_one_pair_lost_the_workload_fails_cleanly_and_resumes_when_it_is_back(
    tmp_path: Path,
) -> None:
    w = world(tmp_path, volume=True, image_server=False, volume_server=False)
    plan = w.plan()
    w.copier.down.add("default")  # gone after the plan checked it
    first = w.apply(plan)
    outcome = first.outcomes["volume.archive"]
    assert not first.ok and "no other pair is left" in str(outcome.message)
    journal = Journal(w.state_dir / JOURNAL_FILE)
    try:
        assert journal.pending_temporaries() == []  # detached again, from both hosts
    finally:
        journal.close()
    w.copier.down.clear()
    assert w.apply().ok
    check_converged(w)


def test_cleanup_undoes_an_abandoned_migration_and_the_source_ends_as_it_began(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed mid-copy leaves the source server stopped, its data volume detached, a
    snapshot-made temporary and attachments: ``tenantshift cleanup`` puts all of it back."""
    w = world(tmp_path, volume=False, image_server=False, volume_server=True)
    w.source.records_of("server")
    vm = next(s for s in w.source.records_of("server").values() if s["name"] == "vm-vol")
    vm["status"] = "ACTIVE"
    w.servers_before = servers_of(w.source)

    def killed(copy: VolumeCopy) -> None:
        raise Killed("mid-copy")

    w.copier.before_copy = killed
    with kill_at(monkeypatch, None), contextlib.suppress(Killed):
        w.apply()
    assert vm["status"] == "SHUTOFF" and w.source.data.snapshots  # left as the kill left it
    journal = Journal(w.state_dir / JOURNAL_FILE)
    ctx = ApplyContext(
        destination=w.destination,
        source=w.source,
        settings=ApplySettings.from_manifest(w.manifest),
        journal=journal,
        ids=IdMap(w.plan()),
        listener=Listener(),
        links=w.links,
    )
    try:
        message = asyncio.run(clean_up(ctx, owner=None))
        assert message.startswith("cleaned up")
        assert journal.pending_temporaries() == []
    finally:
        ctx.shutdown()
        journal.close()
    assert servers_of(w.source) == w.servers_before
    assert not w.source.data.snapshots
    assert not [v for v in w.source.records_of("volume").values() if v.get("temporary")]


def test_status_lists_and_cleanup_removes_a_copy_half_made_by_a_kill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """First reproduction of the kill issue: killed between the root copy's create and its
    bootable flag (Cinder's action after the create). ``status`` shows the half-made copy,
    ``cleanup`` removes it (and says so), and the next apply converges."""
    w = world(tmp_path, volume=False, image_server=True, volume_server=False)
    clouds = {"source": w.source, "destination": w.destination}
    monkeypatch.setattr(commands, "open_provider", lambda ref, label, **_: clouds[label])
    with kill_at(monkeypatch, "destination update volume"), contextlib.suppress(Killed):
        w.apply()
    half = [v for v in w.destination.records_of("volume").values()]
    assert [(v["name"], v["is_bootable"]) for v in half] == [("vm-image-root", False)]

    found = commands.status(w.manifest)
    assert found is not None and found.unfinished is not None
    assert [c.name for c in found.unfinished] == ["vm-image-root"]
    assert any("unfinished copies" in line for line in render_status(found))

    swept = commands.cleanup(w.manifest)
    assert any(
        line.startswith("removed the unfinished copy volume vm-image-root") for line in swept
    )
    assert not w.destination.records_of("volume")
    assert servers_of(w.source) == w.servers_before  # the stopped source runs again
    assert w.apply().ok
    check_converged(w)


def test_status_without_a_reachable_cloud_still_shows_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world(tmp_path, volume=True, image_server=False, volume_server=False)
    assert w.apply().ok

    def unreachable(ref: object, label: str, **_: object) -> None:
        raise ProviderError(f"{label}: cannot connect", call="identity.authenticate")

    monkeypatch.setattr(commands, "open_provider", unreachable)
    found = commands.status(w.manifest)
    assert found is not None and found.runs and found.unfinished is None
    lines = render_status(found)
    assert lines[-1] == "the clouds could not be read for unfinished copies: source: cannot connect"
