"""What a migration costs in quota, from the source snapshot alone."""

from __future__ import annotations

from typing import Any

from tenantshift.engine.workloads import MIGRATIONS
from tenantshift.engine.workloads.registry import Needs
from tenantshift.plans import Action, Change


def _needs(change: Change, info: dict[str, Any], sizes: dict[str | None, int]) -> Needs:
    """What the kind's registered migration says it consumes."""
    return MIGRATIONS[change.kind].needs(change, info, sizes)


def migrate(address: str, **kw: object) -> Change:
    return Change(
        address=address,
        kind=address.partition(".")[0],
        action=Action.MIGRATE,
        after={"size": 2},
        **kw,  # type: ignore[arg-type]
    )


def test_a_boot_from_volume_server_needs_its_disks_and_a_snapshot_at_the_source() -> None:
    info = {"vcpus": 2, "ram": 4096, "volumes": ["boot", "data"], "image_id": None}
    need = _needs(migrate("server.vm"), info, {"boot": 1, "data": 5})
    assert need == {
        ("destination", "instances"): 1,
        ("destination", "cores"): 2,
        ("destination", "ram"): 4096,
        ("destination", "volumes"): 2,
        ("destination", "gigabytes"): 6,
        ("source", "snapshots"): 1,
        ("source", "volumes"): 1,
        ("source", "gigabytes"): 1,
    }


def test_an_image_booted_server_needs_a_root_volume_of_its_flavor_disk() -> None:
    info = {"vcpus": 1, "ram": 512, "volumes": [], "image_id": "img", "root_gb": 1}
    need = _needs(migrate("server.vm"), info, {})
    assert need[("destination", "volumes")] == 1 and need[("destination", "gigabytes")] == 1
    assert ("source", "snapshots") not in need and need[("source", "volumes")] == 1


def test_a_resumed_migration_needs_nothing_new() -> None:
    assert _needs(migrate("volume.v", target_id="d1", before={"size": 2}), {}, {}) == {}
    assert _needs(migrate("volume.v"), {}, {}) == {
        ("destination", "volumes"): 1,
        ("destination", "gigabytes"): 2,
    }
