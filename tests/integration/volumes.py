"""Cinder volumes on the devcloud as the volume tests handle them: made with known bytes,
found at the destination, checked, and the volume-only manifest that migrates them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tenantshift.resources.marker import split_marker
from tests.integration.conftest import Devcloud, run_cli

MiB = 1024 * 1024


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def volume_file(devcloud: Devcloud, volume_id: str) -> Path:
    return devcloud.state / "volumes" / f"volume-{volume_id}"


def content_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 * MiB):
            digest.update(block)
    return digest.hexdigest()


def write_regions(path: Path, seed: str) -> None:
    """Random, text and explicit-zero regions with holes between them, and the last MiB."""
    size = path.stat().st_size
    randomish = b"".join(
        hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(3 * MiB // 32)
    )
    with path.open("r+b") as f:
        f.seek(0)
        f.write(randomish)
        f.seek(200 * MiB)
        f.write((f"{seed} text region\n" * 80_000)[: 2 * MiB].encode())
        f.seek(500 * MiB)
        f.write(b"\0" * MiB)  # allocated, but zeros
        f.seek(size - MiB)
        f.write(randomish[:MiB])
        f.flush()
        os.fsync(f.fileno())


def wait_status(conn: Any, volume_id: str, status: str, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        volume = conn.block_storage.get_volume(volume_id)
        if volume.status == status:
            return volume
        assert volume.status != "error", f"volume {volume_id} went to error"
        assert time.monotonic() < deadline, f"volume {volume_id} stuck in {volume.status}"
        time.sleep(1)


def manifest(tmp_path: Path, devcloud: Devcloud, names: list[str], **options: Any) -> Path:
    hosts = yaml.safe_load(devcloud.conversion_hosts_yaml.read_text())
    nothing: dict[str, Any] = {"include": []}
    body = {
        "version": 1,
        "source": {"cloud": "devcloud-src"},
        "destination": {"cloud": "devcloud-dst"},
        "select": {
            **{
                kind: nothing
                for kind in (
                    "network",
                    "subnet",
                    "router",
                    "router_interface",
                    "security_group",
                    "security_group_rule",
                    "keypair",
                    "server",
                )
            },
            "volume": {"include": names},
        },
        "conversion_hosts": hosts,
        "options": {"state_dir": str(tmp_path / "state"), **options},
    }
    path = tmp_path / "migration.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def plan_changes(path: Path) -> dict[str, dict[str, Any]]:
    document = json.loads(ok(run_cli("plan", "-m", str(path), "--json")).stdout)
    return {c["address"]: c for c in document["changes"] if c["action"] != "no-op"}


def destination_copy(conn: Any, source_id: str) -> Any:
    found = [
        v
        for v in conn.block_storage.volumes(details=True)
        if split_marker(str((v.metadata or {}).get("tenantshift-src")))[1] == source_id
    ]
    assert len(found) <= 1, f"{len(found)} destination copies of {source_id}"
    return found[0] if found else None


def host_attachments(conn: Any, server_id: str) -> list[str]:
    return [a.volume_id for a in conn.compute.volume_attachments(server_id)]


def make_source_volumes(
    devcloud: Devcloud, description: str, sizes: dict[str, int]
) -> Iterator[list[Any]]:
    """Detached source volumes (``name suffix -> GiB``), deleted afterwards with their
    destination copies and whatever attachment a killed run left."""
    src, dst = devcloud.connect("devcloud-src"), devcloud.connect("devcloud-dst")
    tag = uuid.uuid4().hex[:6]
    volumes = []
    for suffix, size in sizes.items():
        volume = src.block_storage.create_volume(
            name=f"ts-{tag}-{suffix}", size=size, description=description, metadata={"app": tag}
        )
        volumes.append(wait_status(src, volume.id, "available"))
    yield volumes
    for volume in volumes:
        copy = destination_copy(dst, volume.id)
        for conn, vol in ((dst, copy), (src, volume)):
            if vol is None:
                continue
            for attachment in conn.block_storage.get_volume(vol.id).attachments or []:
                conn.compute.delete_volume_attachment(attachment["server_id"], vol.id)
            wait_status(conn, vol.id, "available")
            conn.block_storage.delete_volume(vol.id)


def write_incompressible(path: Path, gib: int) -> None:
    """``gib`` GiB of random data, rotated 64 MiB blocks: beyond any codec's window, so nothing
    compresses and a copy takes its time."""
    block = os.urandom(64 * MiB)
    with path.open("r+b") as f:
        for index in range(16 * gib):
            f.write(block[index:] + block[:index])
        os.fsync(f.fileno())
