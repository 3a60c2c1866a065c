"""A small tenant with workloads on the memory cloud, the links that move its bytes, and the
checks of a converged migration: what the workload tests and the kill-point tests share.

The source has conversion host ``conv-src`` and the destination ``conv-dst``; the fake links'
copy moves a volume's bytes only when both volumes are attached to those hosts, as the real
agent finds only attached devices.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenantshift import faults
from tenantshift.engine.apply import ApplyResult, apply_plan
from tenantshift.engine.planning import make_plan
from tenantshift.engine.state.journal import JOURNAL_FILE, Journal, _Db
from tenantshift.engine.walk.context import ApplySettings
from tenantshift.engine.walk.links import Links
from tenantshift.manifest import ConversionPair, Manifest, Workloads
from tenantshift.plans import Plan
from tenantshift.providers.memory import MemoryProvider
from tenantshift.providers.memory_workloads import image_hashes, memory_workloads
from tenantshift.resources import Record
from tenantshift.transfer import (
    Progress,
    TransferError,
    TransferOptions,
    TransferResult,
    VolumeCopy,
)

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKDEyhGQOjMuo2LNgJqX+VfZ91UcuEODLtNZUvXQs2A7"


class Killed(BaseException):
    """The in-process stand-in for SIGKILL: nothing catches it, nothing runs after it."""


@dataclass
class World:
    manifest: Manifest
    source: MemoryProvider
    destination: MemoryProvider
    links: Links
    #: The fake copies behind ``links`` (a test may make them fail).
    copier: MemoryLinks
    #: Source bytes per (volume or root disk) name, to compare the copies with.
    disks: dict[str, bytes] = field(default_factory=dict)
    #: What the source servers were before any run: status and attached devices.
    servers_before: dict[str, Any] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        assert self.manifest.state_dir is not None
        return self.manifest.state_dir

    def plan(self) -> Plan:
        return make_plan(self.manifest, self.source, self.destination, links=self.links).plan

    def with_workloads(self, **fields: Any) -> None:
        """Change the manifest's ``workloads`` section, as a reviewed commit would."""
        workloads = Workloads.model_validate({**self.manifest.workloads.model_dump(), **fields})
        self.manifest = self.manifest.model_copy(update={"workloads": workloads})

    def apply(self, plan: Plan | None = None) -> ApplyResult:
        return apply_plan(
            plan or self.plan(),
            self.destination,
            self.state_dir,
            source=self.source,
            settings=ApplySettings.from_manifest(self.manifest),
            links=self.links,
        )


def world(
    tmp_path: Path,
    *,
    volume: bool,
    image_server: bool,
    volume_server: bool,
    pairs: int = 1,
    workloads: dict[str, Any] | None = None,
    running: bool = False,
) -> World:
    """A tenant with the chosen workloads (the image-booted server brings its base image);
    with ``pairs`` > 1, a pool of pairs ``p1``, ``p2``... (hosts ``conv-src-p1``...);
    ``workloads`` adds to the manifest's section (warm migration); with ``running`` the
    volume-booted server is ACTIVE."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    key = tmp_path / "id_test"
    key.write_text("not a key: the memory links never use it\n")
    host = {"address": "127.0.0.1", "key_file": str(key), "host_key": HOST_KEY}
    manifest = Manifest.model_validate(
        {
            "version": 1,
            "source": {"cloud": "src"},
            "destination": {"cloud": "dst"},
            "options": {"state_dir": str(tmp_path / "state")},
            "workloads": {"stop_source_servers": True, **(workloads or {})},
            "conversion_hosts": _hosts(host, pairs),
        }
    )
    source, destination = MemoryProvider("source"), MemoryProvider("destination")
    for pair in manifest.conversion_hosts.all_pairs if manifest.conversion_hosts else ():
        _server(source, str(pair.source.server), status="ACTIVE")
        _server(destination, str(pair.destination.server), status="ACTIVE")
    copier = MemoryLinks(source, destination)
    w = World(manifest, source, destination, copier.links(), copier)
    if volume:
        data = _volume(source, "archive", os.urandom(3000) + bytes(5000))
        w.disks["archive"] = source.data.blocks[data]
    if image_server:
        base = source.insert("image", {"name": "base", "disk_format": "qcow2"})
        base.update(status="active", temporary=False, migrated=None, protected=False)
        base["properties"] = {"os_distro": "cirros"}
        source.data.images[base["id"]] = b"base image bytes"
        base.update(image_hashes(b"base image bytes"))
        vm = _server(source, "vm-image", status="ACTIVE", image_id=base["id"])
        root = b"root disk of vm-image" + os.urandom(100)
        source.data.blocks[f"root:{vm['id']}"] = root
        w.disks["vm-image-root"] = root
        w.disks["base"] = b"base image bytes"
    if volume_server:
        boot = _volume(source, "vm-vol-boot", b"boot" * 300, bootable=True)
        data = _volume(source, "vm-vol-data", b"data" * 200)
        vm = _server(source, "vm-vol", status="ACTIVE" if running else "SHUTOFF")
        for volume_id, device in ((boot, "/dev/vda"), (data, "/dev/vdb")):
            source.records_of("volume")[volume_id].update(attached_to=[vm["id"]], status="in-use")
            source.data.devices[(vm["id"], volume_id)] = device
        vm["volumes"] = [boot, data]
        w.disks["vm-vol-boot"] = source.data.blocks[boot]
        w.disks["vm-vol-data"] = source.data.blocks[data]
    w.servers_before = servers_of(source)
    return w


def clone(w: World, where: Path) -> World:
    """A twin of ``w`` (both clouds, its journal) at ``where``: the kill-point enumerations
    start each kill from one prepared world instead of preparing it again each time."""
    state = where / "state"
    if w.state_dir.exists():  # a world that never applied has none yet
        shutil.copytree(w.state_dir, state)
    options = w.manifest.options.model_copy(update={"state_dir": state})
    source, destination = _cloned(w.source), _cloned(w.destination)
    copier = MemoryLinks(source, destination)
    return World(
        w.manifest.model_copy(update={"options": options}),
        source,
        destination,
        copier.links(),
        copier,
        dict(w.disks),
        copy.deepcopy(w.servers_before),
    )


def _cloned(cloud: MemoryProvider) -> MemoryProvider:
    twin = MemoryProvider(cloud.label)
    twin._records = copy.deepcopy(cloud._records)
    twin.data = copy.deepcopy(cloud.data)
    twin.workloads = memory_workloads(twin)  # its verbs hold the data they act on
    twin._clock = itertools.count(next(cloud._clock))
    twin.headroom_left = dict(cloud.headroom_left)
    return twin


def _hosts(host: dict[str, str], pairs: int) -> dict[str, Any]:
    if pairs == 1:
        return {
            "source": {**host, "server": "conv-src"},
            "destination": {**host, "server": "conv-dst"},
        }
    return {
        "pairs": [
            {
                "name": f"p{n}",
                "source": {**host, "server": f"conv-src-p{n}", "port": 2000 + 2 * n},
                "destination": {**host, "server": f"conv-dst-p{n}", "port": 2001 + 2 * n},
            }
            for n in range(1, pairs + 1)
        ]
    }


def _server(
    cloud: MemoryProvider, name: str, *, status: str, image_id: str | None = None
) -> Record:
    params = {"name": name, "flavor": "m1.tiny", "metadata": {}, "ports": []}
    record = cloud.insert("server", params)
    record.update(status=status, image_id=image_id, volumes=[], root_gb=1, vcpus=1, ram=512)
    record["migrated"] = None
    return record


def _volume(cloud: MemoryProvider, name: str, data: bytes, *, bootable: bool = False) -> str:
    params: dict[str, Any] = {"name": name, "size": 1, "is_bootable": bootable}
    if bootable:
        params["image_metadata"] = {"hw_disk_bus": "virtio"}
    record = cloud.insert("volume", params)
    record.update(status="available", attached_to=[], migrated=None, temporary=False)
    record["updated_at"] = record["created_at"]
    cloud.data.blocks[record["id"]] = data
    return str(record["id"])


def servers_of(cloud: MemoryProvider) -> dict[str, Any]:
    return {
        s["name"]: (
            s["status"],
            sorted(d for (sid, _), d in cloud.data.devices.items() if sid == s["id"]),
        )
        for s in cloud.records_of("server").values()
    }


class MemoryLinks:
    """Copies between the memory clouds: a volume is readable only when attached to its side's
    conversion host (as a device on the host), and the copy is verified by comparing bytes."""

    def __init__(self, source: MemoryProvider, destination: MemoryProvider) -> None:
        self.source = source
        self.destination = destination
        #: What a test injects: called before each copy (raise to fail it).
        self.before_copy: Callable[[VolumeCopy], None] | None = None
        #: Pairs whose hosts are gone: their probe says so and their copies fail.
        self.down: set[str] = set()
        #: The pair of each copy made, in order.
        self.pairs_used: list[str] = []
        self.copies = 0
        #: The data bytes each copy moved, in order (a delta copy: only changed chunks).
        self.sent: list[int] = []

    def links(self) -> Links:
        return Links(
            open_session=lambda pair, options: _Session(self, pair),
            probe=self._probe,
            sweep_keys=self._nothing,
            remove_dirs=self._nothing_on_host,
        )

    async def _probe(self, pair: ConversionPair, timeout: float) -> list[str]:
        return [f"pair {pair.name}: sshd does not answer"] if pair.name in self.down else []

    async def _nothing(self, pair: ConversionPair, markers: Any, options: TransferOptions) -> None:
        return None

    async def _nothing_on_host(
        self, pair: ConversionPair, role: str, dirs: Any, options: TransferOptions
    ) -> None:
        return None


class _Session:
    def __init__(self, links: MemoryLinks, pair: ConversionPair) -> None:
        self._links = links
        self._pair = pair
        self.marker = f"tenantshift-transfer-{os.urandom(4).hex()}"
        self.source_run_dir: str | None = None
        self.destination_run_dir: str | None = None
        self.leftover_marker: str | None = None

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def copy(
        self, copy: VolumeCopy, progress: Callable[[Progress], None] | None = None
    ) -> TransferResult:
        links = self._links
        if self._pair.name in links.down:
            raise TransferError(f"pair {self._pair.name}: connection lost")
        if links.before_copy is not None:
            links.before_copy(copy)
        ends = (
            (links.source, copy.source_volume_id, self._pair.source.server),
            (links.destination, copy.destination_volume_id, self._pair.destination.server),
        )
        for cloud, volume_id, host in ends:
            with cloud.call("copy", "volume", {}):  # reading a device is a fault point too
                host_id = next(
                    s["id"] for s in cloud.records_of("server").values() if s["name"] == host
                )
                volume = cloud.records_of("volume").get(volume_id)
                if volume is None or host_id not in volume["attached_to"]:
                    raise TransferError(f"volume {volume_id} is not attached to {host}")
        data = links.source.data.blocks[copy.source_volume_id]
        held = links.destination.data.blocks.get(copy.destination_volume_id, b"")
        # A delta copy moves only the chunks that differ from what the destination holds (the
        # real agent trusts its index only for the digest it was told, else re-reads).
        sent = changed_bytes(held, data) if copy.delta_base is not None else len(data)
        links.destination.data.blocks[copy.destination_volume_id] = data
        links.sent.append(sent)
        links.copies += 1
        links.pairs_used.append(self._pair.name)
        if progress is not None:
            progress(
                Progress(
                    copy.source_volume_id,
                    copy.destination_volume_id,
                    *(len(data),) * 4,
                    0.0,
                    0.0,
                    0.0,
                )
            )
        digest = hashlib.sha256(data).hexdigest()
        copied = links.destination.data.blocks[copy.destination_volume_id]
        return TransferResult(
            source_volume_id=copy.source_volume_id,
            destination_volume_id=copy.destination_volume_id,
            bytes_logical=len(data),
            bytes_allocated=len(data),
            bytes_data=sent,
            bytes_wire=sent,
            seconds=0.0,
            copy_seconds=0.0,
            resumed_from=0,
            codec="none",
            chunks=1,
            digest=digest,
            verified=copied == data,
            bytes_read=len(data),
            delta=copy.delta_base is not None,
        )


#: The memory links' chunk: a delta moves whole chunks, as the agent's 4 MiB ones.
CHUNK = 64


def changed_bytes(held: bytes, data: bytes) -> int:
    """Bytes in the chunks of ``data`` that differ from ``held``."""
    return sum(
        len(data[i : i + CHUNK])
        for i in range(0, len(data), CHUNK)
        if data[i : i + CHUNK] != held[i : i + CHUNK]
    )


# -- killing in process ------------------------------------------------------------------------


@contextmanager
def kill_at(monkeypatch: Any, call: int | None, *, after: bool = False) -> Iterator[None]:
    """Kill the "process" before (or after) its ``call``-th cloud call: every later cloud call
    and journal write raises ``Killed`` as if nothing ran any more."""

    def killer(where: str) -> None:
        raise Killed(where)

    def execute(db: _Db, sql: str, args: Any = ()) -> sqlite3.Cursor:
        if faults.killed() and not sql.lstrip().upper().startswith("SELECT"):
            raise Killed("the journal of a dead process")
        return original(db, sql, args)

    original = _Db.execute
    faults.reset()
    monkeypatch.setattr(faults, "killer", killer)
    monkeypatch.setattr(_Db, "execute", execute)
    if call is not None:
        monkeypatch.setenv(faults.KILL_AT_CALL, f"{call}:after" if after else str(call))
    try:
        yield
    finally:
        monkeypatch.delenv(faults.KILL_AT_CALL, raising=False)
        faults.reset()


def apply_until_done(w: World, runs: int = 4) -> ApplyResult:
    """What an operator does after a crash: plan and apply again until it succeeds."""
    result = None
    for _ in range(runs):
        result = w.apply()
        if result.ok:
            return result
    assert result is not None
    failed = {k: o.message for k, o in result.outcomes.items() if o.message and not result.ok}
    raise AssertionError(f"no convergence after {runs} applies: {failed}")


# -- the end state ---------------------------------------------------------------------------


def check_converged(w: World) -> None:
    """One verified, bootable copy per disk with equal bytes, no temporaries anywhere, the
    source as it was before, and a second plan with nothing to do."""
    src, dst = w.source, w.destination
    plan = w.plan()
    pending = [c.address for c in plan.changes if c.action.value != "no-op"]
    assert not pending, f"a second plan still has changes: {pending}"
    # The source as before: servers in their status, their volumes at their devices.
    assert servers_of(src) == w.servers_before
    assert not src.data.snapshots, "a snapshot was left at the source"
    temporaries = [v["name"] for v in src.records_of("volume").values() if v.get("temporary")]
    temporaries += [i["name"] for i in src.records_of("image").values() if i.get("temporary")]
    assert not temporaries, f"temporaries left at the source: {temporaries}"
    journal = Journal(w.state_dir / JOURNAL_FILE)
    try:
        assert journal.pending_temporaries() == [], "temporaries still pending in the journal"
        assert journal.node_states() == {}, "a migration's journal state was not cleared"
    finally:
        journal.close()
    # The destination: exactly one copy of each, marked, holding the source's bytes.
    volumes = list(dst.records_of("volume").values())
    by_name: dict[str, list[Record]] = {}
    for volume in volumes:
        by_name.setdefault(str(volume["name"]), []).append(volume)
    expected = {name for name in w.disks if name != "base"}
    assert set(by_name) == expected, f"destination volumes {sorted(by_name)} != {sorted(expected)}"
    for name, copies in by_name.items():
        assert len(copies) == 1, f"{len(copies)} copies of {name}"
        copy = copies[0]
        assert copy["migrated"], f"{name} is not marked migrated"
        assert dst.data.blocks[copy["id"]] == w.disks[name], f"{name}: the bytes differ"
        assert copy["status"] in ("available", "in-use")
    dst_servers = [s for s in dst.records_of("server").values() if not _host(s)]
    src_servers = [s for s in src.records_of("server").values() if not _host(s)]
    assert sorted(s["name"] for s in dst_servers) == sorted(s["name"] for s in src_servers)
    for server in dst_servers:
        assert server["migrated"] and server["status"] == "SHUTOFF", server
        boot = [v for v in volumes if server["id"] in v["attached_to"]]
        assert any(v["is_bootable"] for v in boot), f"{server['name']} has no bootable disk"
    if "base" in w.disks:
        images = [i for i in dst.records_of("image").values() if i["name"] == "base"]
        assert len(images) == 1 and images[0]["migrated"], images
        assert dst.data.images[images[0]["id"]] == w.disks["base"]


def _host(server: Record) -> bool:
    return str(server["name"]).startswith("conv-")
