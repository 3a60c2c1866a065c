"""The seeded tenant migrates whole, workloads included, on the real local OpenStack: the servers
(boot from volume with a data volume, image-booted, two NICs with fixed IPs) and a detached
volume, with their bytes, through the conversion hosts; the running server is blocked with its
reason, then migrated with ``workloads.stop_source_servers`` and started again at the source.

The tests build on each other in file order, from a destination wiped at the start.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest
from openstack.connection import Connection

from tenantshift.resources.marker import split_marker
from tests.integration.conftest import Devcloud, run_cli
from tests.integration.demo_manifest import manifest_text
from tests.integration.destination import wipe_destination

pytestmark = pytest.mark.devcloud

MiB = 1024 * 1024
MIGRATED = ("vm-bfv", "vm-image", "vm-multinic")


def sha256_file(path: Path, length: int | None = None) -> str:
    digest = hashlib.sha256()
    left = length if length is not None else path.stat().st_size
    with path.open("rb") as f:
        while left > 0 and (block := f.read(min(8 * MiB, left))):
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def volume_file(devcloud: Devcloud, volume_id: str) -> Path:
    return devcloud.state / "volumes" / f"volume-{volume_id}"


def source_of(resource: Any) -> str | None:
    marker = (resource.metadata or {}).get("tenantshift-src")
    return split_marker(str(marker))[1] if marker else None


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clouds(devcloud: Devcloud) -> Iterator[dict[str, Connection]]:
    pair = {side: openstack.connect(cloud=f"devcloud-{side}") for side in ("src", "dst")}
    wipe_destination(pair["dst"], devcloud.destination_host.server_id)
    yield pair


@pytest.fixture(scope="module")
def before(devcloud: Devcloud, clouds: dict[str, Connection]) -> dict[str, Any]:
    """The source as it was: what must be exactly the same after every migration."""
    seed = json.loads(devcloud.seed_json.read_text())
    src = clouds["src"]
    servers = {s.name: s for s in src.compute.servers()}
    return {
        "seed": seed,
        "status": {name: s.status for name, s in servers.items()},
        "attachments": {
            name: sorted((a.volume_id, a.device) for a in src.compute.volume_attachments(s.id))
            for name, s in servers.items()
        },
        "volumes": {v.id: v.status for v in src.block_storage.volumes()},
        "volume_sha": {
            v["id"]: sha256_file(volume_file(devcloud, v["id"])) for v in seed["volumes"].values()
        },
        "snapshots": {s.id for s in src.block_storage.snapshots()},
        "images": {i.id for i in src.image.images()},
        "root_disk": sha256_file(
            devcloud.state / "hosts" / seed["servers"]["vm-image"]["id"] / "root.disk"
        ),
    }


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory, devcloud: Devcloud) -> Path:
    directory = tmp_path_factory.mktemp("workloads")
    path = directory / "migration.yaml"
    path.write_text(manifest_text(devcloud, directory / "state"))
    return path


def assert_source_unchanged(devcloud: Devcloud, src: Connection, before: dict[str, Any]) -> None:
    servers = {s.name: s for s in src.compute.servers()}
    assert {n: s.status for n, s in servers.items()} == before["status"]
    for name, server in servers.items():
        attachments = sorted(
            (a.volume_id, a.device) for a in src.compute.volume_attachments(server.id)
        )
        assert attachments == before["attachments"][name], name
    assert {v.id: v.status for v in src.block_storage.volumes()} == before["volumes"]
    for volume_id, digest in before["volume_sha"].items():
        assert sha256_file(volume_file(devcloud, volume_id)) == digest
    assert {s.id for s in src.block_storage.snapshots()} == before["snapshots"]
    assert {i.id for i in src.image.images()} == before["images"]
    for volume in src.block_storage.volumes():
        assert not any(k.startswith("tenantshift") for k in volume.metadata or {})


# -- the tests -----------------------------------------------------------------------------------
def test_plan_shows_each_workload_and_the_running_server_blocked(
    devcloud: Devcloud, clouds: dict[str, Connection], tmp_path: Path
) -> None:
    path = tmp_path / "all.yaml"
    path.write_text(manifest_text(devcloud, tmp_path / "state", stop_source_servers=False))
    result = run_cli("plan", "-m", str(path), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    changes = {c["address"]: c for c in document["changes"]}
    for name in MIGRATED:
        assert changes[f"server.{name}"]["action"] == "migrate", changes[f"server.{name}"]
        assert "disk" in changes[f"server.{name}"]["detail"]
    active = changes["server.vm-active"]
    assert active["reason"] == "blocked_prerequisite" and "ACTIVE" in active["detail"]
    assert changes["volume.archive-vol"]["action"] == "migrate"
    assert "volume.boot-vol" not in changes and "volume.data-vol" not in changes
    assert any("boot-vol" in w and "migrates with its server" in w for w in document["warnings"])
    assert "server.conversion-host" not in changes


def test_the_tenant_migrates_with_its_bytes(
    devcloud: Devcloud, clouds: dict[str, Connection], before: dict[str, Any], manifest: Path
) -> None:
    started = time.monotonic()
    applied = run_cli("apply", "-m", str(manifest), "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Apply complete!" in applied.stdout
    print(f"migration applied in {time.monotonic() - started:.0f}s")

    src, dst = clouds["src"], clouds["dst"]
    seed = before["seed"]
    copies = {source_of(s): s for s in dst.compute.servers(details=True) if source_of(s)}
    for name in MIGRATED:
        source = seed["servers"][name]
        copy = copies[source["id"]]
        assert copy.name == name and copy.status == "SHUTOFF"
        assert copy.flavor["original_name"] == source["flavor"]
        assert copy.key_name == "seed-key"
        assert copy.metadata.get("role") and copy.metadata.get("tenantshift-migrated")
    # Fixed IPs kept, on both NICs, with their security groups.
    multinic = copies[seed["servers"]["vm-multinic"]["id"]]
    ips = sorted(
        ip["ip_address"]
        for port in dst.network.ports(device_id=multinic.id)
        for ip in port.fixed_ips
        if "." in ip["ip_address"]
    )
    assert ips == ["10.10.0.60", "10.20.0.60"]

    # Bytes: boot and data volume of vm-bfv; the root disk of vm-image; the detached volume.
    volumes = {source_of(v): v for v in dst.block_storage.volumes(details=True) if source_of(v)}
    for name in ("boot-vol", "data-vol", "archive-vol"):
        source_volume = seed["volumes"][name]
        copy = volumes[source_volume["id"]]
        path = volume_file(devcloud, copy.id)
        assert sha256_file(path) == source_volume["sha256"], name
        assert path.stat().st_blocks * 512 <= source_volume["allocated_bytes"] + 4 * MiB, name
    # Glance's properties of the image each boot disk came from (the disk bus, firmware, ...).
    boot_source = src.block_storage.get_volume(seed["volumes"]["boot-vol"]["id"])
    assert boot_source.volume_image_metadata
    boot_copy = volumes[seed["volumes"]["boot-vol"]["id"]]
    assert boot_copy.volume_image_metadata == boot_source.volume_image_metadata
    assert boot_copy.is_bootable
    bfv = copies[seed["servers"]["vm-bfv"]["id"]]
    attached = {a.volume_id for a in dst.compute.volume_attachments(bfv.id)}
    assert attached == {volumes[seed["volumes"][n]["id"]].id for n in ("boot-vol", "data-vol")}
    image_vm = copies[seed["servers"]["vm-image"]["id"]]
    (root,) = [a.volume_id for a in dst.compute.volume_attachments(image_vm.id)]
    root_size = (devcloud.state / "hosts" / seed["servers"]["vm-image"]["id"] / "root.disk").stat()
    assert sha256_file(volume_file(devcloud, root), root_size.st_size) == before["root_disk"]
    root_metadata = dst.block_storage.get_volume(root).volume_image_metadata or {}
    assert root_metadata.get("image_name") and root_metadata.get("disk_format")

    assert_source_unchanged(devcloud, src, before)
    # Nothing left on the conversion hosts.
    for conn, host in ((src, devcloud.source_host), (dst, devcloud.destination_host)):
        assert list(conn.compute.volume_attachments(host.server_id)) == []
    # And nothing left to do.
    again = run_cli("plan", "-m", str(manifest), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_running_server_migrates_when_allowed_and_runs_again_at_both_ends(
    devcloud: Devcloud,
    clouds: dict[str, Connection],
    before: dict[str, Any],
    manifest: Path,
) -> None:
    manifest.write_text(
        manifest_text(
            devcloud,
            manifest.parent / "state",
            stop_source_servers=True,
            start_destination_servers=True,
        )
    )
    applied = run_cli("apply", "-m", str(manifest), "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    active = before["seed"]["servers"]["vm-active"]
    copies = {source_of(s): s for s in clouds["dst"].compute.servers() if source_of(s)}
    assert copies[active["id"]].status == "ACTIVE"  # start_destination_servers
    assert_source_unchanged(devcloud, clouds["src"], before)  # vm-active ACTIVE again
    again = run_cli("plan", "-m", str(manifest), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout


def delete_copy_of(conn: Connection, source_id: str) -> None:
    """A migrated server gone from the destination again, with its disks."""
    for server in conn.compute.servers():
        if source_of(server) == source_id:
            disks = [a.volume_id for a in conn.compute.volume_attachments(server.id)]
            conn.compute.delete_server(server)
            conn.compute.wait_for_delete(server, wait=300)
            for disk in disks:
                volume = conn.block_storage.wait_for_status(
                    conn.block_storage.get_volume(disk), "available", wait=300
                )
                conn.block_storage.delete_volume(volume)


@pytest.mark.parametrize(
    ("name", "call"),
    [
        # First reproduction of the kill issue: between the root copy's create and its bootable
        # flag (a Cinder action after the create): the copy is found, checked and completed.
        ("vm-image", "block_storage.set_volume_bootable_status"),
        # After the boot request, before anything was journaled: the server is found by its
        # marker, not booted twice.
        ("vm-bfv", "compute.create_server:after"),
    ],
)
def test_a_kill_between_two_cloud_calls_of_a_server_resumes_without_duplicates(
    devcloud: Devcloud,
    clouds: dict[str, Connection],
    before: dict[str, Any],
    tmp_path: Path,
    name: str,
    call: str,
) -> None:
    src, dst = clouds["src"], clouds["dst"]
    seed = before["seed"]
    server_id = seed["servers"][name]["id"]
    delete_copy_of(dst, server_id)
    path = tmp_path / "one.yaml"
    only = {"server": {"include": [name]}, "volume": {"include": []}}
    path.write_text(manifest_text(devcloud, tmp_path / "state", select=only))

    killed = run_cli(
        "apply", "-m", str(path), "--auto-approve", env={"TENANTSHIFT_FAULT_KILL_AT_CALL": call}
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr
    status = run_cli("status", "-m", str(path)).stdout
    assert f"server.{name}: done up to" in status, status
    assert "unfinished copies in the destination" in status, status

    resumed = run_cli("apply", "-m", str(path), "--auto-approve")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    copies = [s for s in dst.compute.servers() if source_of(s) == server_id]
    assert len(copies) == 1 and copies[0].status == "SHUTOFF"
    disks = {a.volume_id for a in dst.compute.volume_attachments(copies[0].id)}
    marked = [v for v in dst.block_storage.volumes(details=True) if source_of(v)]
    assert {v.id for v in marked if v.attachments} >= disks
    assert not [
        v
        for v in marked
        if not v.attachments and source_of(v) != seed["volumes"]["archive-vol"]["id"]
    ], "a disk copy made twice"
    boot = [dst.block_storage.get_volume(d) for d in disks]
    assert any(v.is_bootable for v in boot), "no bootable disk"
    if name == "vm-bfv":
        for volume in ("boot-vol", "data-vol"):
            (copy,) = [v for v in marked if source_of(v) == seed["volumes"][volume]["id"]]
            assert sha256_file(volume_file(devcloud, copy.id)) == seed["volumes"][volume]["sha256"]
    assert_source_unchanged(devcloud, src, before)
    status = run_cli("status", "-m", str(path)).stdout
    assert "temporaries left" not in status and "unfinished copies" not in status, status
    again = run_cli("plan", "-m", str(path), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout
