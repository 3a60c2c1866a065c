"""Provenance markers with duplicate names: find never takes another source's copy, and a
resource that two sources claim is a conflict, not a silent pick (the memory provider)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantshift.engine.apply import apply_plan
from tenantshift.engine.planning import make_plan
from tenantshift.manifest import Manifest
from tenantshift.providers import ProviderError
from tenantshift.providers.base import MARKERS_KEY
from tenantshift.providers.memory import MemoryProvider
from tenantshift.resources.marker import split_marker

MANIFEST = Manifest.model_validate(
    {"version": 1, "source": {"cloud": "src"}, "destination": {"cloud": "dst"}}
)


def test_find_does_not_adopt_another_sources_copy_of_the_same_name() -> None:
    cloud = MemoryProvider()
    mine = cloud.create("network", {"name": "X"}, "src-a")
    assert mine["provenance"] == "src-a"
    assert cloud.find("network", "src-b", {"name": "X"}) is None
    assert cloud.find("network", None, {"name": "X"}) is None
    found = cloud.find("network", "src-a", {"name": "renamed"})  # by marker, whatever the name
    assert found is not None and found["id"] == mine["id"]


def test_an_unmarked_resource_of_the_same_name_is_still_adopted() -> None:
    cloud = MemoryProvider()
    plain = cloud.create("network", {"name": "X"}, None)
    found = cloud.find("network", "src-b", {"name": "X"})
    assert found is not None and found["id"] == plain["id"]


def test_a_resource_with_two_markers_is_a_conflict_for_both_sources() -> None:
    cloud = MemoryProvider()
    net = cloud.create("network", {"name": "X"}, "src-a")
    cloud.add_marker("network", net["id"], "src-b")
    for source in ("src-a", "src-b"):
        with pytest.raises(ProviderError, match=r"markers of 2 source resources \(src-a, src-b\)"):
            cloud.find("network", source, {"name": "X"})
    # Not claimed by a third source: that one just does not match it.
    assert cloud.find("network", "src-c", {"name": "X"}) is None


def test_restamping_replaces_every_marker() -> None:
    cloud = MemoryProvider()
    net = cloud.create("network", {"name": "X"}, "src-a")
    cloud.add_marker("network", net["id"], "src-b")
    cloud.update("network", net["id"], {"provenance": "src-a"})
    found = cloud.find("network", "src-a", {"name": "X"})
    assert found is not None and MARKERS_KEY not in found


def source_of(marker: str | None) -> str:
    return split_marker(str(marker))[1]


def test_duplicate_names_at_high_parallelism_keep_their_own_copies(tmp_path: Path) -> None:
    """Issue 8: ``network.X~2`` adopted the network just created for ``network.X``."""
    source = MemoryProvider("src")
    expected: dict[str, str] = {}  # source subnet id -> source network id
    for i in range(12):
        for copy in range(2):
            net = source.create("network", {"name": f"net{i}"}, None)
            sub = source.create(
                "subnet",
                {
                    "network": net["id"],
                    "name": "sub",
                    "cidr": f"10.{i}.{copy}.0/24",
                    "ip_version": 4,
                },
                None,
            )
            expected[sub["id"]] = net["id"]
    destination = MemoryProvider("dst")

    result = apply_plan(
        make_plan(MANIFEST, source, destination).plan, destination, tmp_path, parallelism=50
    )

    assert result.ok
    dst = destination.snapshot()
    nets = dst.of_kind("network")
    # Markers name the migration and the source resource: compare the source ids.
    assert sorted(source_of(r.provenance) for r in nets) == sorted(set(expected.values()))
    marker_of = {r.address: source_of(r.provenance) for r in nets}
    for sub in dst.of_kind("subnet"):
        assert marker_of[sub.params["network"]] == expected[source_of(sub.provenance)], sub.address
    assert not make_plan(MANIFEST, source, destination).plan.has_changes
