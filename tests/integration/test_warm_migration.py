"""Warm migration on the real local OpenStack: the boot-from-volume server runs while two
applies sync its volumes (snapshots of in-use volumes, delta copies between the real sshd
conversion hosts), its guest "writes" in between (through the volume files), and a third
apply with ``cutover`` stops it, moves the last changes and boots it in the destination."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest
from openstack.connection import Connection

from tenantshift.engine.state.journal import JOURNAL_FILE, Journal
from tenantshift.engine.workloads.base import WARM_CHUNK
from tests.integration.conftest import Devcloud, run_cli
from tests.integration.demo_manifest import manifest_text
from tests.integration.destination import wipe_destination

pytestmark = pytest.mark.devcloud

MiB = 1024 * 1024


def volume_file(devcloud: Devcloud, volume_id: str) -> Path:
    return devcloud.state / "volumes" / f"volume-{volume_id}"


def content(path: Path, length: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        left = length
        while left > 0 and (block := f.read(min(8 * MiB, left))):
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


class Guest:
    """Writes into a source volume as a running server's guest would, and puts back what it
    overwrote afterwards (holes punched again), so the seed is as it was for other tests."""

    def __init__(self) -> None:
        self.undo: list[tuple[Path, int, bytes]] = []

    def scribble(self, path: Path, seed: int, count: int) -> int:
        """``count`` scattered 4-64 KiB writes; returns the bytes written."""
        rng = random.Random(seed)
        size = path.stat().st_size
        written = 0
        with path.open("r+b") as f:
            for _ in range(count):
                length = rng.choice((4096, 16384, 65536))
                offset = rng.randrange(0, size - length, 4096)
                f.seek(offset)
                self.undo.append((path, offset, f.read(length)))
                f.seek(offset)
                f.write(os.urandom(length))
                written += length
            os.fsync(f.fileno())
        return written

    def restore(self) -> None:
        for path, offset, old in reversed(self.undo):
            if old.count(0) == len(old):
                subprocess.run(
                    ["fallocate", "--punch-hole", "-o", str(offset), "-l", str(len(old)), path],
                    check=True,
                )
            else:
                with path.open("r+b") as f:
                    f.seek(offset)
                    f.write(old)


@pytest.fixture
def running_bfv(devcloud: Devcloud) -> Iterator[dict[str, Any]]:
    """vm-bfv started (the seed has it stopped) and stopped again afterwards, with a guest
    that writes into its volume files."""
    seed = json.loads(devcloud.seed_json.read_text())
    src = openstack.connect(cloud="devcloud-src")
    server = src.compute.get_server(seed["servers"]["vm-bfv"]["id"])
    volumes = {name: seed["volumes"][name]["id"] for name in ("boot-vol", "data-vol")}
    guest = Guest()
    if server.status != "ACTIVE":
        src.compute.start_server(server)
        src.compute.wait_for_server(server, status="ACTIVE", wait=300)
    try:
        yield {"server": server.id, "volumes": volumes, "src": src, "guest": guest}
    finally:
        server = src.compute.get_server(server.id)
        if server.status != "SHUTOFF":
            src.compute.stop_server(server)
            src.compute.wait_for_server(server, status="SHUTOFF", wait=300)
        guest.restore()
        for name, vid in volumes.items():
            path = volume_file(devcloud, vid)
            assert content(path, path.stat().st_size) == seed["volumes"][name]["sha256"]


def empty_destination(devcloud: Devcloud) -> Connection:
    dst = openstack.connect(cloud="devcloud-dst")
    wipe_destination(dst, devcloud.destination_host.server_id)
    return dst


def warm_manifest(devcloud: Devcloud, tmp_path: Path, **workloads: Any) -> Path:
    """vm-bfv alone (its volumes go with it), warm; state in ``tmp_path / "state"``."""
    only = {"server": {"include": ["vm-bfv"]}, "volume": {"include": []}}
    path = tmp_path / "warm.yaml"
    text = manifest_text(devcloud, tmp_path / "state", select=only, mode="warm", **workloads)
    path.write_text(text)
    return path


def syncs(state: Path) -> list[dict[str, Any]]:
    journal = Journal(state / JOURNAL_FILE)
    try:
        return journal.syncs("server.vm-bfv")
    finally:
        journal.close()


def test_a_running_server_syncs_twice_then_cuts_over_with_the_last_changes(
    devcloud: Devcloud, running_bfv: dict[str, Any], tmp_path: Path
) -> None:
    dst = empty_destination(devcloud)
    src: Connection = running_bfv["src"]
    state = tmp_path / "state"
    path = warm_manifest(devcloud, tmp_path)
    data_file = volume_file(devcloud, running_bfv["volumes"]["data-vol"])

    plan = run_cli("plan", "-m", str(path))
    assert plan.returncode == 0 and "first sync" in plan.stdout, plan.stdout + plan.stderr
    first = run_cli("apply", "-m", str(path), "--auto-approve")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "synced (generation 1)" in first.stdout, first.stdout
    assert src.compute.get_server(running_bfv["server"]).status == "ACTIVE"
    assert not [s for s in dst.compute.servers() if s.name == "vm-bfv"]
    marks = [v.metadata.get("tenantshift-synced") for v in dst.block_storage.volumes()]
    assert sorted(str(m).split(" ")[0] for m in marks if m) == ["1", "1"], marks
    assert not list(src.block_storage.snapshots()), "the sync's snapshots are gone"

    written = running_bfv["guest"].scribble(data_file, 1, 20)
    second = run_cli("apply", "-m", str(path), "--auto-approve")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "synced (generation 2)" in second.stdout, second.stdout
    full, delta = syncs(state)
    # Only the chunks the writes touched move: a warm copy's grid is 64 KiB, so each write
    # moves its own bytes and at most one chunk more.
    assert 0 < delta["data_bytes"] <= written + 20 * WARM_CHUNK, (written, delta)
    assert delta["data_bytes"] < full["data_bytes"], (full, delta)
    assert written <= delta["data_bytes"]

    running_bfv["guest"].scribble(data_file, 2, 5)
    warm_manifest(devcloud, tmp_path, cutover=True)
    plan = run_cli("plan", "-m", str(path))
    assert "estimated downtime" in plan.stdout, plan.stdout
    cut = run_cli("apply", "-m", str(path), "--auto-approve")
    assert cut.returncode == 0, cut.stdout + cut.stderr
    assert "downtime" in cut.stdout, cut.stdout

    # The destination server boots from copies equal to the stopped source's volumes.
    (server,) = [s for s in dst.compute.servers() if s.name == "vm-bfv"]
    attached = {a.volume_id for a in dst.compute.volume_attachments(server.id)}
    assert len(attached) == 2
    source_digests = {
        content(volume_file(devcloud, vid), src.block_storage.get_volume(vid).size * 1024**3)
        for vid in running_bfv["volumes"].values()
    }
    copies = {
        content(volume_file(devcloud, vid), dst.block_storage.get_volume(vid).size * 1024**3)
        for vid in attached
    }
    assert copies == source_digests
    assert src.compute.get_server(running_bfv["server"]).status == "SHUTOFF"
    history = syncs(state)
    assert [h["phase"] for h in history] == ["sync", "sync", "cutover"]
    assert history[-1]["downtime"] > 0
    status = run_cli("status", "-m", str(path)).stdout
    assert "cutover 3 at" in status, status
    again = run_cli("plan", "-m", str(path), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout


def test_a_cutover_killed_after_its_boot_request_resumes_with_one_server(
    devcloud: Devcloud, running_bfv: dict[str, Any], tmp_path: Path
) -> None:
    """A kill between the destination server's create and anything journaled: the source is
    stopped (its stop still a pending temporary), the server may exist; the re-run finds it
    by its marker, boots nothing twice, and leaves the source stopped."""
    dst = empty_destination(devcloud)
    src: Connection = running_bfv["src"]
    state = tmp_path / "state"
    path = warm_manifest(devcloud, tmp_path)
    synced = run_cli("apply", "-m", str(path), "--auto-approve")
    assert synced.returncode == 0, synced.stdout + synced.stderr

    warm_manifest(devcloud, tmp_path, cutover=True)
    killed = run_cli(
        "apply",
        "-m",
        str(path),
        "--auto-approve",
        env={"TENANTSHIFT_FAULT_KILL_AT_CALL": "compute.create_server:after"},
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert src.compute.get_server(running_bfv["server"]).status == "SHUTOFF"
    status = run_cli("status", "-m", str(path)).stdout
    assert "server.vm-bfv: done up to" in status and "stopped" in status, status

    resumed = run_cli("apply", "-m", str(path), "--auto-approve")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len([s for s in dst.compute.servers() if s.name == "vm-bfv"]) == 1
    assert src.compute.get_server(running_bfv["server"]).status == "SHUTOFF"
    assert [h["phase"] for h in syncs(state)] == ["sync", "cutover"]
    again = run_cli("plan", "-m", str(path), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout
    assert "temporaries left" not in run_cli("status", "-m", str(path)).stdout
