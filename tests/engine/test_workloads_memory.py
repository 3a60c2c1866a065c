"""Every workload kind migrated on the memory cloud, in-process: the phases, the end state,
failures that leave a journal a re-run resumes from (the devcloud tests prove the real APIs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantshift.engine.state.journal import JOURNAL_FILE, Journal
from tenantshift.engine.state.temporary import Temporary
from tenantshift.engine.workloads import MIGRATIONS, UNDO
from tenantshift.plans import Action
from tenantshift.resources import REGISTRY
from tenantshift.transfer import TransferError, VolumeCopy
from tests.engine.workload_world import check_converged, world

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
