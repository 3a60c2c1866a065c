"""Provenance markers name the migration and the source resource (security review M6)."""

from __future__ import annotations

from tenantshift.providers.openstack import records as rec
from tenantshift.resources import normalize
from tenantshift.resources.marker import (
    is_ours,
    make_marker,
    migration_id,
    same_source,
    split_marker,
)

UUID = "6f1c2b1e-95a4-4c1e-9a3e-0123456789ab"


def test_migration_id_follows_the_source_project() -> None:
    a = migration_id(normalize("cloud-a", {}, project="p1"))
    assert a == migration_id(normalize("renamed-label", {}, project="p1"))
    assert a != migration_id(normalize("cloud-a", {}, project="p2"))
    assert migration_id(normalize("x", {})) != migration_id(normalize("y", {}))


def test_a_marker_fits_in_a_neutron_tag_and_reads_back() -> None:
    """Neutron refuses tags longer than 60 characters; source ids are UUIDs (36)."""
    marker = make_marker(migration_id(normalize("src", {})), UUID)
    tag = rec.provenance_tag(marker)
    assert len(tag) <= 60
    assert rec.provenance_of(["other", tag]) == marker
    assert split_marker(marker) == (migration_id(normalize("src", {})), UUID)


def test_legacy_markers_match_their_source_but_belong_to_nobody() -> None:
    ours = make_marker("aaaaaaa", UUID)
    assert split_marker(UUID) == (None, UUID)
    assert same_source(UUID, ours) and same_source(ours, ours)
    assert not same_source(make_marker("bbbbbbb", UUID), ours)
    assert not same_source(None, ours)
    assert is_ours(ours, "aaaaaaa")
    assert not is_ours(make_marker("bbbbbbb", UUID), "aaaaaaa")
    assert not is_ours(UUID, "aaaaaaa")
    assert is_ours(UUID, None)  # no migration known: every marker counts, as before
