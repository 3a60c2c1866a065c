"""A pool of three conversion host pairs on the devcloud: copies spread across the pairs
(largest first), bytes identical; a pair whose sshd dies mid-copy is left and its copy
finishes on another pair, nothing duplicated, nothing left attached.

CI starts one devcloud for the whole suite with one pair (today's form, which every other
test reads). This module's fixture asks the running devcloud for three pairs
(``DEVCLOUD_CONVERSION_PAIRS=3 devcloud up``: a quick `up` that starts two more sshd pairs and
two more servers per tenant) and gives it back with one pair afterwards, which deletes the
extra servers, stops their sshd and rewrites conversion-hosts.yaml in the one-pair form.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenantshift.engine.state.journal import JOURNAL_FILE
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
    write_regions,
)

pytestmark = pytest.mark.devcloud

PAIRS = 3


@pytest.fixture(scope="module")
def pool(devcloud: Devcloud) -> Iterator[list[dict[str, Any]]]:
    """The devcloud with three pairs: the pairs' details (names, servers, sshd keys)."""
    devcloud_up(devcloud, PAIRS)
    try:
        pairs = json.loads((devcloud.state / "conversion-hosts.json").read_text())["pairs"]
        assert [p["name"] for p in pairs] == [f"pair-{k}" for k in range(1, PAIRS + 1)]
        yield pairs
    finally:
        devcloud_up(devcloud, 1)
        one = yaml.safe_load(devcloud.conversion_hosts_yaml.read_text())
        assert set(one) == {"source", "destination"}, "the one-pair form is back"


def sshd_key(pair: str, side: str) -> str:
    k = int(pair.rpartition("-")[2])
    return side if k == 1 else f"{side}{k}"


def logins(devcloud: Devcloud, pair: str) -> int:
    """Accepted SSH logins on the pair's source sshd so far."""
    log = devcloud.state / "logs" / f"sshd-{sshd_key(pair, 'src')}.log"
    return log.read_text(errors="replace").count("Accepted publickey") if log.exists() else 0


def copies_by_pair(state_dir: Path) -> dict[str, str]:
    """``{workload: pair}`` of every verified copy the journal recorded."""
    with sqlite3.connect(state_dir / JOURNAL_FILE) as db:
        rows = db.execute("SELECT node, data FROM copies ORDER BY seq").fetchall()
    return {node: json.loads(data)["pair"] for node, data in rows}


@pytest.fixture
def pool_volumes(devcloud: Devcloud, request: pytest.FixtureRequest) -> Iterator[list[Any]]:
    """Five detached volumes (3, 2, 2, 1, 1 GiB) with known bytes."""
    sizes = {"a": 3, "b": 2, "c": 2, "d": 1, "e": 1}
    made = make_source_volumes(devcloud, f"for {request.node.name}", sizes)
    volumes = next(made)
    for volume in volumes:
        write_regions(volume_file(devcloud, volume.id), volume.name)
    yield volumes
    next(made, None)


def test_volumes_spread_over_three_pairs_with_identical_bytes(
    tmp_path: Path, devcloud: Devcloud, pool: list[dict[str, Any]], pool_volumes: list[Any]
) -> None:
    dst = devcloud.connect("devcloud-dst")
    sha = {v.id: content_sha256(volume_file(devcloud, v.id)) for v in pool_volumes}
    path = manifest(tmp_path, devcloud, [v.name for v in pool_volumes], copy_parallelism=1)
    hosts = yaml.safe_load(path.read_text())["conversion_hosts"]
    assert [p["name"] for p in hosts["pairs"]] == ["pair-1", "pair-2", "pair-3"]

    planned = {a: c["conversion_pair"] for a, c in plan_changes(path).items()}
    by_name = {v.name.rpartition("-")[2]: f"volume.{v.name}" for v in pool_volumes}
    # Largest first, each to the least loaded pair (a tie to the earlier pair):
    # 3 | 2 | 2, then d: 3 | 3 | 2, then e: 3 | 3 | 3.
    assert planned == {
        by_name["a"]: "pair-1",
        by_name["b"]: "pair-2",
        by_name["c"]: "pair-3",
        by_name["d"]: "pair-2",
        by_name["e"]: "pair-3",
    }
    human = ok(run_cli("plan", "-m", str(path))).stdout
    assert "on pair pair-1" in human and "on pair pair-3" in human, human

    before = {p["name"]: logins(devcloud, p["name"]) for p in pool}
    applied = ok(run_cli("apply", "-m", str(path), "--auto-approve"))
    assert "Apply complete!" in applied.stdout, applied.stdout

    used = copies_by_pair(tmp_path / "state")
    assert set(used.values()) == {"pair-1", "pair-2", "pair-3"}, used
    for p in pool:  # every pair's source sshd served the run
        assert logins(devcloud, p["name"]) > before[p["name"]], p["name"]
    for volume in pool_volumes:
        copy = destination_copy(dst, volume.id)
        assert copy is not None and copy.status == "available" and not copy.attachments
        assert content_sha256(volume_file(devcloud, copy.id)) == sha[volume.id], volume.name
    src = devcloud.connect("devcloud-src")
    for p in pool:
        assert host_attachments(src, p["source"]["server_id"]) == []
        assert host_attachments(dst, p["destination"]["server_id"]) == []
    again = run_cli("plan", "-m", str(path), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout


def test_a_pair_whose_sshd_dies_mid_copy_is_left_and_the_copy_finishes_on_another(
    tmp_path: Path, devcloud: Devcloud, pool: list[dict[str, Any]]
) -> None:
    """Three 1 GiB volumes of incompressible data, one per pair; pair-2's source sshd is
    killed while its copy runs. That copy restarts on another pair (detached from pair-2's
    servers, attached to the new ones) and the run completes; the re-run converges."""
    made = make_source_volumes(devcloud, "pair killed", {"x": 1, "y": 1, "z": 1})
    volumes = next(made)
    try:
        block = os.urandom(64 * MiB)
        for volume in volumes:
            with volume_file(devcloud, volume.id).open("r+b") as f:
                for index in range(16):
                    f.write(block[index:] + block[:index])
                os.fsync(f.fileno())
        sha = {v.id: content_sha256(volume_file(devcloud, v.id)) for v in volumes}
        path = manifest(tmp_path, devcloud, [v.name for v in volumes], copy_parallelism=1)
        planned = {a: c["conversion_pair"] for a, c in plan_changes(path).items()}
        assert sorted(planned.values()) == ["pair-1", "pair-2", "pair-3"]
        victim = next(a for a, p in planned.items() if p == "pair-2")

        pair2 = next(p for p in pool if p["name"] == "pair-2")
        device_dir = Path(pair2["destination"]["device_dir"])
        started = logins(devcloud, "pair-2")
        apply = subprocess.Popen(
            [sys.executable, "-m", "tenantshift", "apply", "-m", str(path), "--auto-approve"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            # The copy on pair-2 is under way: its destination device is there and the
            # destination host has logged in to pull (control + pull connections).
            deadline = time.monotonic() + 300
            while not (any(device_dir.iterdir()) and logins(devcloud, "pair-2") >= started + 2):
                assert apply.poll() is None, apply.communicate()[0]
                assert time.monotonic() < deadline, "the copy on pair-2 never started"
                time.sleep(0.2)
            time.sleep(0.5)
            kill_sshd(devcloud, "src2")
            output, _ = apply.communicate(timeout=900)
        finally:
            if apply.poll() is None:
                apply.kill()
        assert apply.returncode == 0, output
        used = copies_by_pair(tmp_path / "state")
        assert used[victim] in ("pair-1", "pair-3"), used
        assert "pair-2" not in used.values(), used

        src, dst = devcloud.connect("devcloud-src"), devcloud.connect("devcloud-dst")
        for volume in volumes:
            copy = destination_copy(dst, volume.id)  # exactly one: nothing duplicated
            assert copy is not None and copy.status == "available" and not copy.attachments
            assert content_sha256(volume_file(devcloud, copy.id)) == sha[volume.id]
            assert src.block_storage.get_volume(volume.id).attachments == []
        for p in pool:
            assert host_attachments(src, p["source"]["server_id"]) == []
            assert host_attachments(dst, p["destination"]["server_id"]) == []

        # pair-2 back (as an operator would restart it): the re-run has nothing to do, and
        # cleanup removes what the dead pair kept (its session's key line, run directories).
        devcloud_up(devcloud, PAIRS)
        again = run_cli("plan", "-m", str(path), "--detailed-exitcode")
        assert again.returncode == 0, again.stdout
        ok(run_cli("cleanup", "-m", str(path)))
        status = ok(run_cli("status", "-m", str(path))).stdout
        assert "temporaries left" not in status, status
    finally:
        next(made, None)
