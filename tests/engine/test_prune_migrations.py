"""Prune deletes only what this migration made (security review M6)."""

from __future__ import annotations

from pathlib import Path

from tenantshift.engine.apply import apply_plan
from tenantshift.engine.planning import make_plan
from tenantshift.manifest import Manifest
from tenantshift.plans import Action
from tenantshift.providers.memory import MemoryProvider
from tenantshift.resources.marker import make_marker, migration_id, split_marker

PRUNING = Manifest.model_validate(
    {
        "version": 1,
        "source": {"cloud": "src"},
        "destination": {"cloud": "dst"},
        "options": {"prune": True},
    }
)


def _source(label: str, *networks: str) -> MemoryProvider:
    cloud = MemoryProvider(label)
    for name in networks:
        cloud.create("network", {"name": name}, None)
    return cloud


def _network_names(cloud: MemoryProvider) -> list[str]:
    return sorted(r.key for r in cloud.snapshot().of_kind("network"))


def test_prune_spares_what_another_migration_made(tmp_path: Path) -> None:
    team_a, team_b = _source("team-a", "a-web"), _source("team-b", "b-billing")
    destination = MemoryProvider("shared")
    for i, source in enumerate((team_b, team_a)):
        assert apply_plan(
            make_plan(PRUNING, source, destination).plan, destination, tmp_path / str(i)
        ).ok

    plan_a = make_plan(PRUNING, team_a, destination).plan

    assert not plan_a.has_changes, [(c.address, c.action.value) for c in plan_a.changes]
    assert _network_names(destination) == ["a-web", "b-billing"]


def test_prune_still_deletes_this_migrations_copies(tmp_path: Path) -> None:
    source, destination = _source("team-a", "a-web", "a-old"), MemoryProvider("shared")
    assert apply_plan(make_plan(PRUNING, source, destination).plan, destination, tmp_path).ok
    old = next(r for r in source.snapshot().of_kind("network") if r.key == "a-old")
    source.delete("network", str(old.id))

    deletes = [
        c for c in make_plan(PRUNING, source, destination).plan.changes if c.action is Action.DELETE
    ]

    assert [(c.address, c.reason and c.reason.value) for c in deletes] == [
        ("network.a-old", "prune")
    ]


def test_copies_are_stamped_with_this_migrations_id(tmp_path: Path) -> None:
    source, destination = _source("team-a", "a-web"), MemoryProvider("shared")
    assert apply_plan(make_plan(PRUNING, source, destination).plan, destination, tmp_path).ok
    copy = destination.snapshot().resources["network.a-web"]
    original = source.snapshot().resources["network.a-web"]
    assert copy.provenance == make_marker(migration_id(source.snapshot()), str(original.id))
    assert split_marker(str(copy.provenance)) == (migration_id(source.snapshot()), original.id)


def test_a_legacy_marker_is_still_ours_but_never_pruned() -> None:
    source, destination = _source("team-a", "a-web"), MemoryProvider("shared")
    original = source.snapshot().resources["network.a-web"]
    destination.create("network", {"name": "a-web"}, str(original.id))  # stamped the old way
    destination.create("network", {"name": "gone"}, "some-deleted-source-id")

    plan = make_plan(PRUNING, source, destination).plan

    assert not plan.has_changes, [(c.address, c.action.value) for c in plan.changes]
