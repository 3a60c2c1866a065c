"""Warm against cold migration of one server on the local OpenStack, the conversion hosts behind
a rate-limited link: what the server's downtime is each way, and what each warm step costs.

    export DEVCLOUD_STATE=... OS_CLIENT_CONFIG_FILE=...   # a running, seeded devcloud
    .venv/bin/python benchmarks/warm.py --link-rate 1G --data-allocated 8G

Makes a boot-from-volume server ``warm-bench`` in the source tenant: its boot volume is the
realistic volume of ``benchmarks/transfer.py`` (an ext4 filesystem holding a real OS tree and
a database-like file; ``--boot synthetic`` for the 40%-random mix) and its data volume has
``--data-allocated`` bytes allocated (the synthetic mix). Then, each with ``tenantshift apply``
as a user runs it (a new process, through the link):

1. **cold**: the server is stopped, every byte moves, it boots in the destination. Its
   downtime: from the stop to the destination server's creation (the journal's phases).
   The copy is then deleted from the destination.
2. **warm**: a first sync (the server running); the benchmark rewrites ``--churn`` (1%) of
   the allocated data through the volume files (scattered writes of 4 KiB-1 MiB), a delta
   sync; again; then the cutover.

Prints per step: wall time, bytes read at the source, bytes changed (written in the
destination), bytes on the link (SSH included) and our stream bytes, CPU seconds (both
conversion hosts, and tenantshift itself), and the downtime split into its phases. Both
"hosts" share this machine's cores, and so does the devcloud.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import openstack
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import realistic_volume  # noqa: E402
import transfer as bench  # noqa: E402
from link import Link, parse_rate  # noqa: E402

from tenantshift.engine.state.journal import JOURNAL_FILE, Journal  # noqa: E402
from tenantshift.engine.workloads.server import ServerMigration  # noqa: E402
from tenantshift.manifest.schema import ConversionHosts  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
NAME = "warm-bench"
NODE = f"server.{NAME}"
#: The phases between a cold migration's stop and its boot: its downtime.
DOWNTIME_PHASES = ServerMigration.PHASES[: ServerMigration.PHASES.index("server") + 1]


@dataclass
class Step:
    name: str
    wall: float
    read: int
    changed: int
    stream: int
    link: int
    host_cpu: float
    own_cpu: float
    downtime: float | None = None
    split: dict[str, float] = field(default_factory=dict)
    #: Bytes the benchmark rewrote before this step (a delta's input).
    written: int = 0


def state() -> Path:
    return Path(os.environ.get("DEVCLOUD_STATE") or ROOT / ".devcloud").resolve()


def volume_file(volume_id: str) -> Path:
    return state() / "volumes" / f"volume-{volume_id}"


def make_server(conn: Any, boot_kind: str, boot_size: int, data_size: int, data_alloc: int) -> Any:
    """The benchmark's server and its two volumes, filled in place (we are the harness)."""
    bs, compute = conn.block_storage, conn.compute
    boot = bs.create_volume(name=f"{NAME}-boot", size=boot_size // GiB)
    data = bs.create_volume(name=f"{NAME}-data", size=data_size // GiB)
    boot = bs.wait_for_status(boot, "available", wait=600)
    data = bs.wait_for_status(data, "available", wait=600)
    bs.set_volume_bootable_status(boot, True)
    print(f"filling {NAME}'s volumes (boot: {boot_kind})", flush=True)
    if boot_kind == "realistic":
        realistic_volume.build(
            volume_file(boot.id), boot_size, os_bytes=5 * boot_size // 16, db_bytes=256 * MiB
        )
    else:
        bench.build_volume(volume_file(boot.id), boot_size, boot_size // 4, seed=11)
    fill_data(volume_file(data.id), data_size, data_alloc)
    network = conn.network.find_network("app-net")
    server = compute.create_server(
        name=NAME,
        flavor_id=compute.find_flavor("m1.small").id,
        networks=[{"uuid": network.id}],
        block_device_mapping=[
            {"boot_index": 0, "uuid": boot.id, "source_type": "volume",
             "destination_type": "volume", "delete_on_termination": False},
            {"boot_index": -1, "uuid": data.id, "source_type": "volume",
             "destination_type": "volume", "delete_on_termination": False},
        ],
    )  # fmt: skip
    return compute.wait_for_server(server, status="ACTIVE", wait=600)


def fill_data(path: Path, size: int, allocated: int) -> None:
    """``allocated`` bytes in 1-8 MiB extents spread over the volume, the mix of
    ``benchmarks/transfer.py`` (40% random, 40% text, 20% zeros) but generated at disk speed:
    its seeded generator takes minutes per GiB, ``os.urandom`` and a repeated text block do
    not."""
    rng = random.Random(13)
    text = bench.text_block(8 * MiB, 13)
    extent = 4 * MiB
    slots = list(range(0, size // extent))
    rng.shuffle(slots)
    with path.open("r+b") as f:
        for slot in sorted(slots[: allocated // extent]):
            roll = rng.random()
            if roll < 0.4:
                data = os.urandom(extent)
            elif roll < 0.8:
                at = rng.randrange(0, len(text) - extent)
                data = text[at : at + extent]
            else:
                data = bytes(extent)  # allocated zeros (a zeroed-out filesystem)
            f.seek(slot * extent)
            f.write(data)
        os.fsync(f.fileno())


def remove_server(conn: Any, marked_only: bool = False) -> None:
    """The benchmark's server and volumes (in the destination: the copies tenantshift made)."""
    for server in list(conn.compute.servers()):
        if server.name == NAME:
            conn.compute.delete_server(server)
            conn.compute.wait_for_delete(server, wait=600)
    for volume in list(conn.block_storage.volumes(details=True)):
        if volume.name and volume.name.startswith(NAME):
            if marked_only and not (volume.metadata or {}).get("tenantshift-src"):
                continue
            conn.block_storage.wait_for_status(volume, "available", wait=600)
            conn.block_storage.delete_volume(volume)
            conn.block_storage.wait_for_delete(volume, wait=600)


def churn(volume_ids: list[str], fraction: float, seed: int) -> int:
    """Rewrite ``fraction`` of each volume's allocated bytes in place, as the running guest
    would: scattered writes of 4 KiB-1 MiB at allocated offsets; returns the bytes written."""
    rng = random.Random(seed)
    written = 0
    for volume_id in volume_ids:
        path = volume_file(volume_id)
        extents = allocated_extents(path)
        target = int(sum(size for _, size in extents) * fraction)
        with path.open("r+b") as f:
            done = 0
            while done < target:
                length = rng.choice((4096, 65536, 262144, 1048576))
                start, size = rng.choice(extents)
                if size <= length:
                    continue
                f.seek(start + rng.randrange(0, size - length, 4096))
                f.write(rng.randbytes(length))
                done += length
            os.fsync(f.fileno())
        written += done
    return written


def allocated_extents(path: Path) -> list[tuple[int, int]]:
    """(offset, length) of a sparse file's data, by SEEK_DATA/SEEK_HOLE."""
    found = []
    fd = os.open(path, os.O_RDONLY)
    try:
        end, offset = os.fstat(fd).st_size, 0
        while offset < end:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:
                break  # no data after offset
            offset = os.lseek(fd, start, os.SEEK_HOLE)
            found.append((start, offset - start))
    finally:
        os.close(fd)
    return found


def manifest(work: Path, hosts: ConversionHosts, mode: str, cutover: bool = False) -> Path:
    hosts_doc = json.loads(hosts.model_dump_json(exclude_none=True))
    workloads: dict[str, Any] = {"mode": mode, "stop_source_servers": True}
    if cutover:
        workloads["cutover"] = True
    body = {
        "version": 1,
        "source": {"cloud": "devcloud-src"},
        "destination": {"cloud": "devcloud-dst"},
        "select": {"server": {"include": [NAME]}, "volume": {"include": []}},
        "map": {"external_networks": {"public": "public"}},
        "workloads": workloads,
        "conversion_hosts": hosts_doc,
        "options": {"state_dir": str(work / f"state-{mode}")},
    }
    path = work / f"{mode}{'-cutover' if cutover else ''}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def apply(path: Path, name: str, link: Link, ports: list[int], mode: str) -> Step:
    carried, own = link.carried, children_cpu()
    with bench.HostCpu(ports) as cpu:
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "tenantshift", "apply", "-m", str(path), "--auto-approve"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        wall = time.monotonic() - began
        host_cpu = cpu.seconds()
    if done.returncode != 0:
        raise SystemExit(f"{name}: apply failed:\n{done.stdout}\n{done.stderr}")
    journal = Journal(path.parent / f"state-{mode}" / JOURNAL_FILE)
    try:
        step = Step(name, wall, 0, 0, 0, link.carried - carried, host_cpu, children_cpu() - own)
        run = journal.runs()[-1].run_id
        copies = [c["data"] for c in journal.copies([run]) if c["node"] == NODE]
        step.read = sum(int(c.get("bytes_read") or 0) for c in copies)
        step.changed = sum(int(c["bytes_data"]) for c in copies)
        step.stream = sum(int(c["bytes_wire"]) for c in copies)
        if mode == "cold":
            phases = [p for p in journal.phases([run]) if p["node"] == NODE]
            stamps = {p["phase"]: p for p in phases}
            step.split = {
                p: bench_seconds(stamps[p]["started_at"], stamps[p]["finished_at"])
                for p in DOWNTIME_PHASES
                if p in stamps
            }
            step.downtime = bench_seconds(
                stamps["source_stopped"]["started_at"], stamps["server"]["finished_at"]
            )
        else:
            sync = journal.syncs(NODE)[-1]
            if sync["phase"] == "cutover":
                step.downtime = float(sync["downtime"])
                step.split = {k: float(v) for k, v in sync["timings"].items()}
    finally:
        journal.close()
    print(f"{name}: {wall:.1f} s", flush=True)
    return step


def bench_seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def table(steps: list[Step]) -> list[str]:
    lines = [
        "| step | wall s | read MiB | changed MiB | stream MiB | link MiB | host CPU s | "
        "tenantshift CPU s | downtime s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        down = f"{s.downtime:.1f}" if s.downtime is not None else ""
        lines.append(
            f"| {s.name} | {s.wall:.1f} | {s.read / MiB:.0f} | {s.changed / MiB:.1f} | "
            f"{s.stream / MiB:.1f} | {s.link / MiB:.1f} | {s.host_cpu:.1f} | {s.own_cpu:.1f} "
            f"| {down} |"
        )
    for s in steps:
        if s.written:
            lines.append(
                f"\n{s.name}: {s.written / MiB:.1f} MiB rewritten before it; sent "
                f"{s.stream / s.written:.2f}x that"
            )
    for s in steps:
        if s.split:
            parts = ", ".join(f"{k} {v:.1f}" for k, v in s.split.items())
            lines.append(f"\n{s.name} downtime split (s): {parts}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--link-rate", default="1G", help="bits/s each way (default 1G)")
    parser.add_argument("--boot", choices=("realistic", "synthetic"), default="realistic")
    parser.add_argument("--boot-size", default="4G")
    parser.add_argument("--data-size", default="10G")
    parser.add_argument("--data-allocated", default="8G")
    parser.add_argument("--churn", type=float, default=0.01, help="fraction rewritten per step")
    parser.add_argument("--hosts", default=str(state() / "conversion-hosts.yaml"))
    parser.add_argument("--json", action="store_true", help="also print the steps as JSON")
    args = parser.parse_args()

    hosts = ConversionHosts.model_validate(yaml.safe_load(Path(args.hosts).read_text()))
    ports = [hosts.source.port, hosts.destination.port]
    src = openstack.connect(cloud="devcloud-src")
    dst = openstack.connect(cloud="devcloud-dst")
    remove_server(dst, marked_only=True)
    remove_server(src)
    server = make_server(
        src,
        args.boot,
        bench.parse_size(args.boot_size),
        bench.parse_size(args.data_size),
        bench.parse_size(args.data_allocated),
    )
    volumes = [a.volume_id for a in src.compute.volume_attachments(server.id)]
    link = Link((hosts.source.address, hosts.source.port), parse_rate(args.link_rate))
    steps: list[Step] = []
    try:
        with tempfile.TemporaryDirectory(prefix="warm-bench-") as tmp:
            work = Path(tmp)
            linked = bench.through_link(hosts, link.port, work / "known_hosts")
            steps.append(apply(manifest(work, linked, "cold"), "cold", link, ports, "cold"))
            remove_server(dst, marked_only=True)
            warm = manifest(work, linked, "warm")
            steps.append(apply(warm, "first sync", link, ports, "warm"))
            written = churn(volumes, args.churn, seed=1)
            steps.append(apply(warm, "delta sync", link, ports, "warm"))
            steps[-1].written = written
            written = churn(volumes, args.churn, seed=2)
            cut = manifest(work, linked, "warm", cutover=True)
            steps.append(apply(cut, "cutover", link, ports, "warm"))
            steps[-1].written = written
    finally:
        link.close()
        remove_server(dst, marked_only=True)
        remove_server(src)
    print(f"\nlink {args.link_rate}bit/s each way; churn {args.churn:.0%} of the allocated data")
    print("\n".join(table(steps)))
    cold, cutover = steps[0], steps[-1]
    if cold.downtime and cutover.downtime is not None:
        print(
            f"\ncutover downtime {cutover.downtime:.1f} s = "
            f"{cutover.downtime / cold.downtime:.0%} of the cold downtime {cold.downtime:.1f} s"
        )
    if args.json:
        print(json.dumps([s.__dict__ for s in steps], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
