"""Detached volumes migrate end to end on the real local OpenStack: Cinder volumes with real
bytes, attached through Nova to the conversion hosts (real sshd processes), copied by
``tenantshift.transfer`` and verified; the source left exactly as it was.

Each test makes its own source volumes (named after the test) and selects only them, so the
module does not depend on, or disturb, the seeded tenant.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import Devcloud, run_cli
from tests.integration.hosts import devcloud_up, kill_sshd
from tests.integration.volumes import (
    MiB,
    content_sha256,
    destination_copy,
    host_attachments,
    make_source_volumes,
    manifest,
    ok,
    plan_changes,
    volume_file,
    write_incompressible,
    write_regions,
)

pytestmark = pytest.mark.devcloud

GiB = 1024 * MiB


# -- helpers -----------------------------------------------------------------------------------


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


@pytest.fixture
def source_volumes(devcloud: Devcloud, request: pytest.FixtureRequest) -> Iterator[list[Any]]:
    """Two detached source volumes with known bytes (1 GiB and 2 GiB)."""
    made = make_source_volumes(devcloud, f"for {request.node.name}", {"a": 1, "b": 2})
    volumes = next(made)
    for volume in volumes:
        write_regions(volume_file(devcloud, volume.id), volume.name)
    yield volumes
    next(made, None)


# -- tests -------------------------------------------------------------------------------------
def test_detached_volumes_migrate_with_their_bytes(
    tmp_path: Path, devcloud: Devcloud, source_volumes: list[Any]
) -> None:
    src, dst = devcloud.connect("devcloud-src"), devcloud.connect("devcloud-dst")
    before = {
        v.id: (content_sha256(volume_file(devcloud, v.id)), allocated(volume_file(devcloud, v.id)))
        for v in source_volumes
    }
    path = manifest(tmp_path, devcloud, [v.name for v in source_volumes])

    planned = plan_changes(path)
    assert {a: c["action"] for a, c in planned.items()} == {
        f"volume.{v.name}": "migrate" for v in source_volumes
    }

    applied = ok(run_cli("apply", "-m", str(path), "--auto-approve"))
    assert "Apply complete!" in applied.stdout, applied.stdout

    for volume in source_volumes:
        copy = destination_copy(dst, volume.id)
        assert copy is not None, f"{volume.name} has no destination copy"
        assert copy.status == "available" and not copy.attachments
        assert copy.name == volume.name and copy.size == volume.size
        assert copy.description == volume.description
        assert copy.metadata["app"] == volume.metadata["app"]
        assert copy.metadata.get("tenantshift-migrated")
        source_sha, source_allocated = before[volume.id]
        copied = volume_file(devcloud, copy.id)
        assert content_sha256(copied) == source_sha, f"{volume.name}: bytes differ"
        # Sparse stays sparse: nothing beyond the source's allocation (plus a chunk of slack).
        assert allocated(copied) <= source_allocated + 4 * MiB
        # The source exactly as before: detached, same bytes, no marker.
        now = src.block_storage.get_volume(volume.id)
        assert now.status == "available" and not now.attachments
        assert content_sha256(volume_file(devcloud, volume.id)) == source_sha
        assert not any(k.startswith("tenantshift") for k in now.metadata or {})

    # Nothing left attached to either conversion host.
    on_host = set(host_attachments(src, devcloud.source_host.server_id))
    assert volume_ids_of(source_volumes) & on_host == set()
    assert host_attachments(dst, devcloud.destination_host.server_id) == []

    again = run_cli("plan", "-m", str(path), "--detailed-exitcode")
    assert again.returncode == 0, f"a second plan still has changes:\n{again.stdout}"


def test_a_sudo_login_user_on_both_hosts_migrates_the_same_bytes(
    tmp_path: Path, devcloud: Devcloud, source_volumes: list[Any]
) -> None:
    """``cloud-user`` (not root, passwordless sudo) on both conversion hosts: its own
    authorized_keys gets and loses the run's keys, devices are read and written through sudo."""
    dst = devcloud.connect("devcloud-dst")
    path = manifest(tmp_path, devcloud, [v.name for v in source_volumes])
    body = yaml.safe_load(path.read_text())
    for side in ("source", "destination"):
        body["conversion_hosts"][side]["user"] = "cloud-user"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    keys = devcloud.state / "ssh" / "users" / "cloud-user" / "authorized_keys"
    logs = {side: devcloud.state / "logs" / f"sshd-{side}.log" for side in ("src", "dst")}
    logins_before = {s: log.read_text().count("for cloud-user") for s, log in logs.items()}
    sha = {v.id: content_sha256(volume_file(devcloud, v.id)) for v in source_volumes}

    applied = ok(run_cli("apply", "-m", str(path), "--auto-approve"))
    assert "Apply complete!" in applied.stdout, applied.stdout

    for volume in source_volumes:
        copy = destination_copy(dst, volume.id)
        assert copy is not None and copy.status == "available"
        assert content_sha256(volume_file(devcloud, copy.id)) == sha[volume.id], volume.name
    # Both hosts were reached as cloud-user (sshd logs each accepted key), and its
    # authorized_keys is back to the devcloud's own key: no run or copy key left.
    for side, log in logs.items():
        assert log.read_text().count("for cloud-user") > logins_before[side], side
    assert "tenantshift-transfer-" not in keys.read_text()
    assert keys.stat().st_uid == pwd.getpwnam("cloud-user").pw_uid
    left = [
        p
        for p in Path("/tmp").glob("tenantshift-transfer-*")
        if p.stat().st_uid == keys.stat().st_uid
    ]
    assert left == []


def test_a_kill_in_the_middle_of_a_copy_resumes_from_its_last_checkpoint(
    tmp_path: Path, devcloud: Devcloud
) -> None:
    """Killed halfway through 2 GiB of incompressible data, the re-run sends only what was
    not checkpointed (every 256 MiB or 10 s) and the result is byte-identical."""
    made = make_source_volumes(devcloud, "killed mid-copy", {"big": 2})
    (volume,) = next(made)
    try:
        path = volume_file(devcloud, volume.id)
        write_incompressible(path, 2)
        source_sha = content_sha256(path)
        migration = manifest(tmp_path, devcloud, [volume.name])

        killed = run_cli(
            "apply", "-m", str(migration), "--auto-approve",
            env={"TENANTSHIFT_FAULT_KILL_AT_BYTES": str(GiB)},
        )  # fmt: skip
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr

        rerun = ok(run_cli("apply", "-m", str(migration), "--auto-approve"))
        found = re.search(r"([0-9.]+) MiB of data, .* resumed at ([0-9]+) MiB", rerun.stdout)
        assert found, rerun.stdout
        sent, resumed = float(found[1]), int(found[2])
        assert 0 < resumed < 2048, resumed
        assert sent == 2048 - resumed, (sent, resumed)  # the rest, and only the rest
        copy = destination_copy(devcloud.connect("devcloud-dst"), volume.id)
        assert copy is not None
        assert content_sha256(volume_file(devcloud, copy.id)) == source_sha
    finally:
        next(made, None)


def volume_ids_of(volumes: list[Any]) -> set[str]:
    return {v.id for v in volumes}


@pytest.mark.parametrize(
    "call",
    [
        # Between the two attachments of one phase: the source on its host, not the copy.
        "compute.create_volume_attachment#2",
        # Inside the last phase: the source detached again, the copy still attached.
        "compute.delete_volume_attachment:after",
    ],
)
def test_a_kill_between_two_cloud_calls_resumes_without_duplicates(
    tmp_path: Path, devcloud: Devcloud, source_volumes: list[Any], call: str
) -> None:
    """A sample of the kill points ``tests/engine/test_kill_points.py`` enumerates on the
    memory cloud, here on the real one: a kill inside a phase, between two of its calls."""
    src, dst = devcloud.connect("devcloud-src"), devcloud.connect("devcloud-dst")
    volume = source_volumes[0]
    source_sha = content_sha256(volume_file(devcloud, volume.id))
    path = manifest(tmp_path, devcloud, [volume.name])

    killed = run_cli(
        "apply", "-m", str(path), "--auto-approve", env={"TENANTSHIFT_FAULT_KILL_AT_CALL": call}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr

    status = ok(run_cli("status", "-m", str(path))).stdout
    assert f"volume.{volume.name}: done up to" in status, status
    assert "temporaries left" in status, status

    planned = plan_changes(path)
    assert planned[f"volume.{volume.name}"]["action"] == "migrate"

    resumed = ok(run_cli("apply", "-m", str(path), "--auto-approve"))
    assert "Apply complete!" in resumed.stdout, resumed.stdout

    copy = destination_copy(dst, volume.id)  # asserts there is exactly one
    assert copy is not None and copy.status == "available" and not copy.attachments
    assert content_sha256(volume_file(devcloud, copy.id)) == source_sha
    now = src.block_storage.get_volume(volume.id)
    assert now.status == "available" and not now.attachments
    assert host_attachments(dst, devcloud.destination_host.server_id) == []
    assert volume.id not in host_attachments(src, devcloud.source_host.server_id)
    status = ok(run_cli("status", "-m", str(path))).stdout
    assert "temporaries left" not in status and "unfinished copies" not in status, status
    again = run_cli("plan", "-m", str(path), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout


def test_a_host_lost_mid_copy_fails_cleanly_and_the_next_apply_resumes_from_the_checkpoint(
    tmp_path: Path, devcloud: Devcloud
) -> None:
    """Third reproduction of the kill issue: with one pair, the source host's sshd is killed
    a few seconds into a copy. The run fails with the reason and detaches both volumes; the
    journal moves back to before the attachments (it does not say "attached" any more); with
    the host back, the next apply attaches again and resumes from the last verified chunk."""
    made = make_source_volumes(devcloud, "host lost mid-copy", {"big": 2})
    (volume,) = next(made)
    try:
        path = volume_file(devcloud, volume.id)
        write_incompressible(path, 2)
        source_sha = content_sha256(path)
        migration = manifest(tmp_path, devcloud, [volume.name])
        src, dst = devcloud.connect("devcloud-src"), devcloud.connect("devcloud-dst")

        apply = subprocess.Popen(
            [sys.executable, "-m", "tenantshift", "apply", "-m", str(migration), "--auto-approve"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            # Past the first checkpoint (every 256 MiB): the copy has bytes to resume from.
            deadline = time.monotonic() + 300
            while True:
                copy = destination_copy(dst, volume.id)
                written = volume_file(devcloud, copy.id) if copy is not None else None
                # (Cinder lists the copy while it is still ``creating``, before its file.)
                if written is not None and written.exists() and allocated(written) > 600 * MiB:
                    break
                assert apply.poll() is None, apply.communicate()[0]
                assert time.monotonic() < deadline, "the copy never got going"
                time.sleep(0.2)
            kill_sshd(devcloud, "src")
            output, _ = apply.communicate(timeout=900)
        finally:
            if apply.poll() is None:
                apply.kill()
        assert apply.returncode == 1, output
        assert "went away" in output and "run apply again when a pair is back" in output, output

        status = ok(run_cli("status", "-m", str(migration))).stdout
        assert f"volume.{volume.name}: done up to destination_volume" in status, status
        # Both volumes detached; only the session's key line and run directories stay on the
        # unreachable host, journaled for the next sweep.
        assert " attachment " not in status, status
        assert host_attachments(dst, devcloud.destination_host.server_id) == []
        assert volume.id not in host_attachments(src, devcloud.source_host.server_id)

        devcloud_up(devcloud, 1)  # the host back, as an operator would restart it
        rerun = ok(run_cli("apply", "-m", str(migration), "--auto-approve"))
        found = re.search(r"resumed at ([0-9]+) MiB", rerun.stdout)
        assert found and int(found[1]) > 0, rerun.stdout
        copy = destination_copy(dst, volume.id)
        assert copy is not None and not copy.attachments
        assert content_sha256(volume_file(devcloud, copy.id)) == source_sha
        assert src.block_storage.get_volume(volume.id).attachments == []
        status = ok(run_cli("status", "-m", str(migration))).stdout
        assert "temporaries left" not in status, status  # the sweep took the host's leftovers
    finally:
        devcloud_up(devcloud, 1)  # never leave the next test without its host
        next(made, None)


def test_cleanup_after_a_kill_restores_the_source(
    tmp_path: Path, devcloud: Devcloud, source_volumes: list[Any]
) -> None:
    src, dst = devcloud.connect("devcloud-src"), devcloud.connect("devcloud-dst")
    volume = source_volumes[0]
    path = manifest(tmp_path, devcloud, [volume.name])
    killed = run_cli(
        "apply", "-m", str(path), "--auto-approve", env={"TENANTSHIFT_FAULT_KILL_AFTER": "attached"}
    )
    assert killed.returncode == -signal.SIGKILL
    assert volume.id in host_attachments(src, devcloud.source_host.server_id)

    cleaned = ok(run_cli("cleanup", "-m", str(path)))
    assert "Cleanup complete." in cleaned.stdout, cleaned.stdout

    assert volume.id not in host_attachments(src, devcloud.source_host.server_id)
    assert host_attachments(dst, devcloud.destination_host.server_id) == []
    assert src.block_storage.get_volume(volume.id).status == "available"
    status = ok(run_cli("status", "-m", str(path))).stdout
    assert "temporaries left" not in status and "workloads not finished" not in status


@pytest.mark.parametrize(
    ("spoil", "words"),
    [
        ("host_key", "host key does not match"),
        ("device_dir", "does not exist"),
        ("python", "does not run there"),
    ],
)
def test_a_conversion_host_that_would_fail_blocks_the_plan(
    tmp_path: Path, devcloud: Devcloud, source_volumes: list[Any], spoil: str, words: str
) -> None:
    """Checked over SSH at plan time, each a reason in the plan, before anything runs."""
    path = manifest(tmp_path, devcloud, [source_volumes[0].name])
    body = yaml.safe_load(path.read_text())
    source = body["conversion_hosts"]["source"]
    if spoil == "host_key":  # the other host's key: a man in the middle, as far as we know
        source["host_key"] = body["conversion_hosts"]["destination"]["host_key"]
        source.pop("known_hosts", None)
    elif spoil == "device_dir":
        source["device_dir"] = "/nonexistent/by-id"
    else:
        source["python"] = "/nonexistent/python3"
    path.write_text(yaml.safe_dump(body, sort_keys=False))

    (change,) = plan_changes(path).values()
    assert change["action"] == "migrate"
    assert change["reason"] == "blocked_prerequisite"
    assert words in change["detail"], change["detail"]


def test_migrations_beyond_the_destination_quota_are_blocked(
    tmp_path: Path, devcloud: Devcloud, source_volumes: list[Any]
) -> None:
    """The 1 + 2 GiB of the two volumes need 3 GiB; the destination is given 2 more."""
    dst = devcloud.connect("devcloud-dst")
    admin = devcloud.connect("devcloud-admin")
    project = dst.current_project_id
    quota = admin.block_storage.get_quota_set(project, usage=True)
    used = int((quota.usage or {}).get("gigabytes") or 0)
    limit = int(quota.gigabytes)
    admin.block_storage.update_quota_set(project, gigabytes=used + 2)
    try:
        path = manifest(tmp_path, devcloud, [v.name for v in source_volumes])
        changes = plan_changes(path)
    finally:
        admin.block_storage.update_quota_set(project, gigabytes=limit)
    for volume in source_volumes:
        change = changes[f"volume.{volume.name}"]
        assert change["reason"] == "blocked_quota", change
        assert (
            "destination quota allows 2 more gigabytes, the migrations need 3" in change["detail"]
        )


def test_cleanup_after_a_kill_mid_session_removes_run_dirs_and_copy_keys(
    tmp_path: Path, devcloud: Devcloud, source_volumes: list[Any]
) -> None:
    """Killed after its copy, the run left the agent's run directories on both hosts and its
    copy key on the source: cleanup removes all of them (both hosts are this machine)."""
    volume = source_volumes[0]
    path = manifest(tmp_path, devcloud, [volume.name])
    before = set(Path("/tmp").glob("tenantshift-transfer-*"))
    killed = run_cli(
        "apply", "-m", str(path), "--auto-approve", env={"TENANTSHIFT_FAULT_KILL_AFTER": "copied"}
    )
    assert killed.returncode == -signal.SIGKILL
    left = set(Path("/tmp").glob("tenantshift-transfer-*")) - before
    status = ok(run_cli("status", "-m", str(path))).stdout
    assert "copy_key" in status and "run_dir" in status, status
    assert len(left) == 2, left  # one per host

    ok(run_cli("cleanup", "-m", str(path)))

    assert not [d for d in left if d.exists()], "run directories left behind"
    status = ok(run_cli("status", "-m", str(path))).stdout
    assert "temporaries left" not in status, status
