"""Warm migration on the memory cloud: syncs while the server runs, a delta each time, then a
cutover that moves only the last changes and boots; every kill point of a sync and of a
cutover converges (the enumeration is in ``test_kill_points.py``'s style, here)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tenantshift import faults
from tenantshift.engine import commands
from tenantshift.engine.report import run_report
from tenantshift.engine.state.journal import JOURNAL_FILE, Journal
from tenantshift.engine.workloads.base import warm_chunk
from tenantshift.engine.workloads.server import DIRTY
from tenantshift.manifest import Workloads
from tenantshift.plans import Action, Change
from tenantshift.providers.workload import parse_sync_mark
from tenantshift.views.report_html import render_html
from tenantshift.views.status import render_status
from tests.engine.workload_world import (
    Killed,
    World,
    apply_until_done,
    check_converged,
    clone,
    kill_at,
    servers_of,
    world,
)

SERVER = "server.vm-vol"


def warm_world(tmp_path: Path, **workloads: Any) -> World:
    return world(
        tmp_path,
        volume=False,
        image_server=False,
        volume_server=True,
        running=True,
        workloads={"mode": "warm", "stop_source_servers": False, **workloads},
    )


def server_change(w: World) -> Change:
    (change,) = [c for c in w.plan().changes if c.address == SERVER]
    return change


def source_volume(w: World, name: str) -> str:
    return next(str(v["id"]) for v in w.source.records_of("volume").values() if v["name"] == name)


def rewrite(w: World, name: str, at: int, data: bytes) -> None:
    """The running server writes into one of its volumes (and the test's expectation)."""
    volume = source_volume(w, name)
    old = w.source.data.blocks[volume]
    new = old[:at] + data + old[at + len(data) :]
    w.source.data.blocks[volume] = new
    w.disks[name] = new


def syncs(w: World) -> list[dict[str, Any]]:
    journal = Journal(w.state_dir / JOURNAL_FILE)
    try:
        return journal.syncs(SERVER)
    finally:
        journal.close()


def check_synced(w: World, generation: int) -> None:
    """After a sync: each disk's copy holds the source's bytes and carries the sync mark; no
    server in the destination; the source untouched and running; nothing temporary left."""
    dst_volumes = {v["name"]: v for v in w.destination.records_of("volume").values()}
    assert set(dst_volumes) == {"vm-vol-boot", "vm-vol-data"}
    for name, volume in dst_volumes.items():
        assert w.destination.data.blocks[volume["id"]] == w.disks[name], name
        mark = parse_sync_mark(volume.get("synced"))
        assert mark is not None and mark["generation"] == generation, (name, volume)
        assert mark["digest"] != DIRTY, "a sync's copy left its volume marked as being written"
        assert not volume.get("migrated") and volume["attached_to"] == []
    assert not [s for s in w.destination.records_of("server").values() if s["name"] == "vm-vol"]
    assert servers_of(w.source) == w.servers_before  # ACTIVE, volumes at their devices
    assert not w.source.data.snapshots
    assert not [v for v in w.source.records_of("volume").values() if v.get("temporary")]
    journal = Journal(w.state_dir / JOURNAL_FILE)
    try:
        assert journal.pending_temporaries() == [] and journal.node_states() == {}
    finally:
        journal.close()


def test_a_warm_server_syncs_then_cuts_over(tmp_path: Path) -> None:
    w = warm_world(tmp_path, warm_servers=["vm-vol"])
    assert w.manifest.workloads.mode == "warm"
    first = server_change(w)
    assert first.action is Action.MIGRATE and first.warm == "sync"
    assert first.detail.startswith("first sync"), first.detail
    assert w.apply().ok
    check_synced(w, 1)
    full = sum(w.copier.sent)
    assert full == len(w.disks["vm-vol-boot"]) + len(w.disks["vm-vol-data"])

    # The server keeps writing; the next sync moves only the chunks that changed.
    rewrite(w, "vm-vol-data", 100, b"NEW!")
    second = server_change(w)
    assert second.warm == "sync" and second.detail.startswith("delta sync (generation 2"), (
        second.detail
    )
    w.copier.sent.clear()
    assert w.apply().ok
    check_synced(w, 2)
    assert w.copier.sent == [0, 64], "only the changed chunk of the data volume moves"

    # A reviewed change says cut over: stop, the last delta, boot; the source stays stopped.
    rewrite(w, "vm-vol-boot", 0, b"last")
    w.with_workloads(cutover=["vm-vol"])
    cut = server_change(w)
    assert cut.warm == "cutover" and "estimated downtime" in cut.detail, cut.detail
    w.copier.sent.clear()
    assert w.apply().ok
    assert w.copier.sent == [64, 0]
    w.servers_before["vm-vol"] = ("SHUTOFF", w.servers_before["vm-vol"][1])
    check_converged(w)
    history = syncs(w)
    assert [(h["phase"], h["generation"]) for h in history] == [
        ("sync", 1),
        ("sync", 2),
        ("cutover", 3),
    ]
    assert history[-1]["downtime"] is not None and history[-1]["downtime"] >= 0
    assert set(history[-1]["timings"]) >= {"source_stopped", "copied", "server"}
    assert [h["data_bytes"] for h in history] == [full, 64, 64]

    # What the user reads: status, the report document and its HTML.
    status = commands.status(w.manifest)
    assert status is not None
    lines = render_status(status)
    assert "warm migrations:" in lines
    assert any(line.strip().startswith("cutover 3 at") and "downtime" in line for line in lines)
    journal = Journal(w.state_dir / JOURNAL_FILE)
    try:
        doc = run_report(journal)
    finally:
        journal.close()
    (workload,) = [x for x in doc["run"]["workloads"] if x["address"] == SERVER]
    assert [(x["phase"], x["bytes_data"]) for x in workload["syncs"]] == [
        ("sync", full),
        ("sync", 64),
        ("cutover", 64),
    ]
    assert workload["syncs"][-1]["downtime_seconds"] is not None
    assert "cutover 3" in render_html(doc)


def test_an_image_booted_server_syncs_through_a_server_image_each_time(tmp_path: Path) -> None:
    w = world(
        tmp_path,
        volume=False,
        image_server=True,
        volume_server=False,
        workloads={"mode": "warm", "stop_source_servers": False},
    )
    (change,) = [c for c in w.plan().changes if c.address == "server.vm-image"]
    assert change.warm == "sync" and "each sync reads the whole disk" in change.detail
    assert w.apply().ok
    root = next(k for k in w.source.data.blocks if k.startswith("root:"))
    w.source.data.blocks[root] = b"R" + w.source.data.blocks[root][1:]
    w.disks["vm-image-root"] = w.source.data.blocks[root]
    w.copier.sent.clear()
    assert w.apply().ok
    assert w.copier.sent == [64], "the server image is read whole, only the change moves"
    w.with_workloads(cutover=True)
    assert w.apply().ok
    w.servers_before["vm-image"] = ("SHUTOFF", [])
    check_converged(w)


def test_cold_stays_the_default_and_a_server_left_out_of_warm_servers_is_cold(
    tmp_path: Path,
) -> None:
    w = warm_world(tmp_path, warm_servers=["another"], stop_source_servers=True)
    assert server_change(w).warm is None
    assert any("warm_servers names another" in x for x in w.plan().warnings)
    assert w.apply().ok
    check_converged(w)  # cold: the source runs again, as before
    assert syncs(w) == []


def test_a_cutover_that_fails_after_the_stop_starts_the_source_again(tmp_path: Path) -> None:
    w = warm_world(tmp_path)
    assert w.apply().ok
    w.with_workloads(cutover=True)
    flavors = dict(w.destination.data.flavors)
    w.destination.data.flavors.clear()  # the boot fails: no such flavor
    result = w.apply()
    assert not result.ok
    assert servers_of(w.source) == w.servers_before, "the source server runs again"
    w.destination.data.flavors.update(flavors)
    assert w.apply().ok
    w.servers_before["vm-vol"] = ("SHUTOFF", w.servers_before["vm-vol"][1])
    check_converged(w)


def test_a_sync_left_half_done_then_a_cutover_starts_over_and_converges(
    tmp_path: Path, monkeypatch: Any
) -> None:
    w = warm_world(tmp_path)
    assert w.apply().ok
    rewrite(w, "vm-vol-data", 0, b"x" * 70)
    plan = w.plan()
    with kill_at(monkeypatch, 12), contextlib.suppress(Killed):
        w.apply(plan)
    w.with_workloads(cutover=True)
    apply_until_done(w)
    w.servers_before["vm-vol"] = ("SHUTOFF", w.servers_before["vm-vol"][1])
    check_converged(w)


def test_a_sync_of_a_server_already_booted_by_its_cutover_is_blocked(tmp_path: Path) -> None:
    w = warm_world(tmp_path, cutover=True)
    plan = w.plan()
    # Killed right after the boot: the destination server exists, not yet marked migrated.
    w.apply(plan)
    server = next(s for s in w.destination.records_of("server").values() if s["name"] == "vm-vol")
    server["migrated"] = None
    w.with_workloads(cutover=False)
    change = server_change(w)
    assert change.blocked and "finish the cutover" in change.detail, change.detail


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"cutover": True}, "cutover needs mode: warm"),
        ({"warm_servers": ["a"]}, "warm_servers needs mode: warm"),
        ({"mode": "warm", "warm_servers": []}, "warm_servers is empty"),
        ({"mode": "warm", "cutover": []}, "cutover is an empty list"),
        ({"mode": "warm", "warm_servers": ["a"], "cutover": ["b"]}, "not in warm_servers"),
    ],
)
def test_warm_fields_that_make_no_sense_are_rejected(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Workloads.model_validate(fields)


# -- every kill point of a sync and of a cutover ------------------------------------------------


def synced_once(tmp_path: Path, monkeypatch: Any) -> World:
    w = warm_world(tmp_path)
    with kill_at(monkeypatch, None):
        assert w.apply().ok
    rewrite(w, "vm-vol-data", 200, b"changed")
    return w


def calls(w: World, monkeypatch: Any) -> int:
    plan = w.plan()
    with kill_at(monkeypatch, None):
        assert w.apply(plan).ok
        return next(faults._calls) - 1


def killed_at(w: World, monkeypatch: Any, call: int, after: bool) -> None:
    plan = w.plan()
    with kill_at(monkeypatch, call, after=after):
        try:
            w.apply(plan)
        except Killed:
            return
    raise AssertionError(f"call {call} was never made")


@pytest.mark.parametrize("step", ["first sync", "delta sync", "cutover"])
def test_a_kill_at_every_cloud_call_of_a_warm_step_converges(
    tmp_path: Path, monkeypatch: Any, step: str
) -> None:
    template = warm_world(tmp_path / "template")
    if step != "first sync":
        template = synced_once(tmp_path / "synced", monkeypatch)
    if step == "cutover":
        template.with_workloads(cutover=True)

    def prepared(where: Path) -> World:
        return clone(template, where)

    total = calls(prepared(tmp_path / "count"), monkeypatch)
    assert total > 10
    failures = []
    for call in range(1, total + 1):
        for after in (False, True):
            w = prepared(tmp_path / f"{call}-{after}")
            try:
                killed_at(w, monkeypatch, call, after)
                apply_until_done(w)
                if step == "cutover":
                    w.servers_before["vm-vol"] = ("SHUTOFF", w.servers_before["vm-vol"][1])
                    check_converged(w)
                else:
                    check_synced(w, 1 if step == "first sync" else 2)
            except AssertionError as exc:
                failures.append(f"kill {'after' if after else 'before'} call {call}: {exc}")
    assert not failures, f"{len(failures)} of {2 * total} kill points:\n" + "\n".join(failures[:10])


def test_the_warm_grid_keeps_a_volume_to_a_million_chunks() -> None:
    assert warm_chunk(1) == warm_chunk(64) == 64 * 1024
    assert warm_chunk(65) == 128 * 1024
    assert warm_chunk(500) == 512 * 1024
    for size in (1, 64, 65, 500, 16384):
        assert size * 2**30 / warm_chunk(size) <= 2**20
