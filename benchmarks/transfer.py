"""Benchmark the transfer layer against the pipelines a user would otherwise pick, between the
devcloud's conversion hosts (real sshd processes on 127.0.0.1; both "hosts" share this
machine's cores, so ratios within one run are what counts, not absolute figures).

    export DEVCLOUD_STATE=... DEVCLOUD_PORT_OFFSET=...   # a running devcloud
    .venv/bin/python benchmarks/transfer.py --size 4G --allocated 1G --runs 3
    .venv/bin/python benchmarks/transfer.py --block     # loop devices instead of files
    .venv/bin/python benchmarks/transfer.py --volume realistic   # ext4 with /usr and a database

Builds a sparse test volume in the source host's device directory: ``synthetic`` (the
default and the worst case: about 40% random, 40% text-like and 20% allocated zeros, in 0.5-6
MiB extents spread over the volume) or ``realistic`` (``benchmarks/realistic_volume.py``: an
ext4 image of ``--size`` holding ``--os-tree`` bytes of this machine's /usr and a
``--database``-sized file of database pages; ``--image`` reuses one built earlier). Then it
runs every method ``--runs`` times, interleaved (round 1 of every method, then round 2, ...)
so that a burst of load from elsewhere hits all of them.
Every method pulls into a fresh, empty destination on the destination host over SSH with
aes128-gcm and ends with an fsync; ``benchmarks/transfer_pipelines.py`` has the others.

Prints each run, then a table: wall seconds min/median (ours split into set-up, copy and
verify), wire bytes (the loopback interface's count: SSH and TCP framing included, and
whatever else talked on lo meanwhile), our agent's stream bytes, destination allocation,
whether the result is identical (content digest of the whole logical volume), CPU seconds
(the conversion hosts' and this process's) in total and per GiB of the volume's non-zero data
(what every method has to move), and each method's median as a multiple of the reference's
(``--reference``, ours with default options).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import realistic_volume  # noqa: E402
import transfer_pipelines as pipelines  # noqa: E402
from link import Link, parse_rate  # noqa: E402

from tenantshift.manifest.schema import ConversionHosts  # noqa: E402
from tenantshift.transfer import TransferOptions, VolumeCopy, bundle, copy_volumes  # noqa: E402
from tenantshift.transfer import session as session_module  # noqa: E402
from tenantshift.transfer.agent import extents  # noqa: E402
from tenantshift.transfer.agent.sink import device_digest  # noqa: E402
from tenantshift.transfer.ssh import CIPHERS, connect  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
CHUNK = 4 * MiB

#: Our methods: TransferOptions for each (``ours`` is the default configuration).
OURS: dict[str, dict[str, Any]] = {
    "ours": {},
    "ours-none": {"compression": "none"},
    "ours-zstd": {"compression": "zstd"},
    "ours-zlib": {"compression": "zlib"},
    "ours-reread": {"reread": True},
    "ours-sha256": {"hash_algorithm": "sha256"},
    "ours-1stream": {"streams": 1},
    "ours-2streams": {"streams": 2},
    # One zstd level for every run (codecs.ZSTD_LEVEL, ZSTD_ADAPTIVE off) for this method only:
    # the agent sent to the hosts is rebuilt with that setting (see agent_with_level).
    "ours-l1": {"zstd_level": 1},
    "ours-l2": {"zstd_level": 2},
    "ours-l3": {"zstd_level": 3},
    "ours-fast1": {"zstd_level": -1},
    "ours-fast2": {"zstd_level": -2},
    "ours-fast3": {"zstd_level": -3},
    "ours-fast5": {"zstd_level": -5},
}
DEFAULT_METHODS = (
    "ours,ours-none,ours-zstd,ours-zlib,ours-reread,naive,sparse-dd,nbdkit-qemu-img,"
    "nbdkit-nbdcopy,qemu-nbd-nbdcopy,floor"
)
#: Slow methods that teach nothing new after one run.
ONCE = {"naive", "ours-zlib"}


parse_size = realistic_volume.parse_size  # one reading of sizes for every benchmark


def text_block(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    words = [
        w.encode()
        for w in (
            "volume",
            "tenant",
            "server",
            "extent",
            "migrate",
            "chunk",
            "zero",
            "hash",
            "network",
            "subnet",
            "router",
            "image",
        )
    ]
    parts: list[bytes] = []
    size = 0
    while size < n:
        part = rng.choice(words) + str(rng.randint(0, 99999)).encode() + b" "
        parts.append(part)
        size += len(part)
    return b"".join(parts)[:n]


def build_volume(path: Path, size: int, target: int, seed: int = 7) -> dict[str, Any]:
    """Extents of 0.5-6 MiB (4 KiB aligned) at random places until ``target`` bytes are
    allocated: 40% random, 40% text, 20% zeros (allocated, e.g. a zeroed-out filesystem)."""
    rng = random.Random(seed)
    text = text_block(16 * MiB, seed)
    slots = size // MiB
    placed: list[tuple[int, int]] = []
    taken: set[int] = set()
    total = 0
    while total < target:
        length = rng.randint(128, 1536) * 4096
        start_mib = rng.randrange(0, slots - 7)
        need = range(start_mib, start_mib + length // MiB + 2)
        if any(m in taken for m in need):
            continue
        taken.update(need)
        placed.append((start_mib * MiB + rng.randrange(0, 256) * 4096, length))
        total += length
    kinds = {"random": 0, "text": 0, "zeros": 0}
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, length in sorted(placed):
            roll = rng.random()
            kind = "random" if roll < 0.4 else "text" if roll < 0.8 else "zeros"
            if kind == "random":
                data = rng.randbytes(length)
            elif kind == "text":
                at = rng.randrange(0, len(text) - length) if length < len(text) else 0
                data = (text * 2)[at : at + length]
            else:
                data = bytes(length)
            os.pwrite(f.fileno(), data, offset)
            kinds[kind] += length
    return {"extents": len(placed), "allocated": total, **kinds}


def count_extents(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return len(extents.data_extents(fd, 0, extents.device_size(fd)))
    finally:
        os.close(fd)


def use_image(image: Path, dest: Path) -> dict[str, Any]:
    """A realistic volume built earlier: hard-linked into the device directory (the copies
    only read it, and the link is removed at the end), or copied if that is another
    filesystem."""
    dest.unlink(missing_ok=True)
    try:
        os.link(image, dest)
    except OSError:
        subprocess.run(["cp", "--sparse=always", str(image), str(dest)], check=True)
    st = os.stat(dest)
    return {"size": st.st_size, "allocated": st.st_blocks * 512, "image": str(image)}


def write_nonzero_blob(src: Path, blob: Path) -> int:
    """The volume's non-zero 64 KiB blocks, concatenated: what the floor has to move."""
    fd = os.open(src, os.O_RDONLY)
    size = extents.device_size(fd)
    buf = bytearray(CHUNK)
    total = 0
    try:
        with open(blob, "wb") as out:
            for offset, length, pieces in extents.chunk_windows(
                extents.data_extents(fd, 0, size), CHUNK, size
            ):
                extents.read_chunk(fd, buf, offset, length, pieces)
                for rel, n in extents.nonzero_runs(buf, length):
                    out.write(memoryview(buf)[rel : rel + n])
                    total += n
    finally:
        os.close(fd)
    return total


def lo_bytes() -> int:
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[0])
    return 0


def digest(path: Path, size: int) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return device_digest(fd, size, CHUNK, "sha256")
    finally:
        os.close(fd)


@dataclass
class Volume:
    """One side's volume: a sparse file, optionally behind a loop device; the by-id name
    points at whichever the copy should use."""

    link: Path
    backing: Path
    size: int
    loop: str | None = None

    def attach(self, block: bool) -> None:
        if not block:  # the by-id name is the file itself, as on the devcloud
            return
        # losetup -f: loop devices are global on the machine; take a free one, release it.
        self.loop = subprocess.run(
            ["losetup", "-f", "--show", str(self.backing)],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        self.link.unlink(missing_ok=True)
        self.link.symlink_to(self.loop)

    @property
    def device(self) -> str:
        return self.loop or str(self.backing)

    def empty(self) -> None:
        """A fresh, thin, all-zero destination."""
        if self.loop:
            subprocess.run(["blkdiscard", self.loop], check=True)
        else:
            with open(self.backing, "r+b") as f:
                f.truncate(0)
                f.truncate(self.size)

    def release(self) -> None:
        self.link.unlink(missing_ok=True)
        if self.loop:
            subprocess.run(["losetup", "-d", self.loop], check=False)
            self.loop = None
        self.backing.unlink(missing_ok=True)


class HostCpu:
    """CPU seconds spent on the conversion hosts: their sshd listeners move into a cpuacct
    cgroup of their own for the run (moved back after), so every session, agent, ssh client
    and pipeline tool they start is counted, and nothing else on the machine is. Wall time on
    a shared machine depends on everyone's load; CPU seconds per copy mostly do not."""

    ROOT = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self, ports: list[int]) -> None:
        self.pids = [pid for port in ports for pid in self._listeners(port)]
        self.group = self.ROOT / f"tenantshift-bench-{os.getpid()}"
        #: Control loops (``agent.pyz control``) seen at once in the group, at most, since
        #: ``watch()``: a tenantshift session holds two for its whole length, so more than our
        #: own method's means someone else's session shared the hosts (and the CPU count).
        self.sessions = 0
        self._stop = threading.Event()

    def _count_controls(self) -> int:
        n = 0
        for pid in (self.group / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                if b"agent.pyz\0control" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    n += 1
        return n

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            with contextlib.suppress(OSError):
                self.sessions = max(self.sessions, self._count_controls())

    @staticmethod
    def _listeners(port: int) -> list[int]:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False
        ).stdout
        return [int(p) for p in re.findall(r"pid=(\d+)", out)]

    def __enter__(self) -> HostCpu:
        if not self.pids or not (self.ROOT / "cpuacct.usage").exists():
            print("host CPU: no cpuacct cgroup or sshd listener found, not measured")
            self.pids = []
            return self
        self.group.mkdir()
        for pid in self.pids:
            (self.group / "cgroup.procs").write_text(str(pid))
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def seconds(self) -> float:
        if not self.pids:
            return float("nan")
        return int((self.group / "cpuacct.usage").read_text()) / 1e9

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if not self.pids:
            return
        for pid in self.pids:
            with contextlib.suppress(OSError):
                (self.ROOT / "cgroup.procs").write_text(str(pid))
        # Sessions still ending keep the group busy for a moment.
        for _ in range(50):
            try:
                self.group.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def through_link(hosts: ConversionHosts, port: int, known_hosts: Path) -> ConversionHosts:
    """``hosts`` with the source reached through the link's port: every method (our pull and
    control connection, the pipelines' ssh) then crosses it. The source's host key is pinned
    for that port in a known_hosts file of the run."""
    source = hosts.source
    if source.host_key is None:
        raise SystemExit("--link-rate needs the source host's host_key in the hosts file")
    known_hosts.write_text(f"[{source.address}]:{port} {source.host_key}\n")
    moved = source.model_copy(update={"port": port, "known_hosts": known_hosts})
    return hosts.model_copy(update={"source": moved})


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Row:
    method: str
    wall: float
    wire: int
    allocated: int
    identical: bool
    stream: int | None = None
    split: dict[str, float] = field(default_factory=dict)
    codec: str = ""
    cpu: float = float("nan")
    #: control loops seen at once during the run beyond this method's own (0: the hosts were
    #: ours alone; more: another session's CPU and lo bytes are in this run's figures)
    foreign: int = 0


async def run_shell(hosts: ConversionHosts, script: str) -> str:
    conn = await connect(hosts.destination, "destination", 30)
    try:
        result = await conn.run(shlex.join(["bash", "-c", script]), check=False)
        if result.exit_status != 0:
            raise RuntimeError(f"exit {result.exit_status}: {str(result.stderr)[-800:]}")
        return str(result.stdout)
    finally:
        conn.close()


async def run_ours(hosts: ConversionHosts, copy: VolumeCopy, options: TransferOptions) -> Any:
    started = time.monotonic()
    [result] = await copy_volumes(hosts, [copy], options=options)
    return result, time.monotonic() - started


_agents: dict[int | None, bytes] = {}


def agent_with_level(level: int | None) -> bytes:
    """The agent zip, with ``codecs.ZSTD_LEVEL = level`` and ``ZSTD_ADAPTIVE = False`` when a
    level is given: a benchmark can compare levels in one interleaved run without editing the
    source tree."""
    if level not in _agents:
        if level is None:
            _agents[level] = bundle.agent_zip()
        else:
            with tempfile.TemporaryDirectory() as tmp:
                copy = Path(tmp) / "agent"
                shutil.copytree(bundle.AGENT_DIR, copy)
                codecs_py = copy / "codecs.py"
                text, n = re.subn(
                    r"^ZSTD_LEVEL = .*$", f"ZSTD_LEVEL = {level}", codecs_py.read_text(), flags=re.M
                )
                text, m = re.subn(
                    r"^ZSTD_ADAPTIVE = .*$", "ZSTD_ADAPTIVE = False", text, flags=re.M
                )
                if n != 1 or m != 1:
                    raise SystemExit("codecs.py has no ZSTD_LEVEL or ZSTD_ADAPTIVE line to set")
                codecs_py.write_text(text)
                saved, bundle.AGENT_DIR = bundle.AGENT_DIR, copy
                try:
                    _agents[level] = bundle.agent_zip.__wrapped__()
                finally:
                    bundle.AGENT_DIR = saved
    return _agents[level]


def one_run(
    method: str, hosts: ConversionHosts, src: Volume, dst: Volume, ids: tuple[str, str],
    blob: Path, state: Path, want: str, tag: str, cpu: HostCpu,
) -> Row:  # fmt: skip
    dst.empty()
    for leftover in state.glob("*"):
        leftover.unlink()
    before = lo_bytes()
    cpu_before = cpu.seconds() + own_cpu()
    cpu.sessions = 0
    stream: int | None = None
    split: dict[str, float] = {}
    codec = ""
    if method in OURS:
        settings = dict(OURS[method])
        level = settings.pop("zstd_level", None)
        if level is not None and "agent_zip" not in vars(session_module):
            raise SystemExit("session.py no longer installs bundle.agent_zip(): update this")
        zip_bytes = agent_with_level(level)
        options = TransferOptions(state_dir=str(state), **settings)
        session_module.agent_zip = lambda: zip_bytes  # what TransferSession installs
        result, wall = asyncio.run(run_ours(hosts, VolumeCopy(*ids), options))
        stream, codec = result.bytes_wire, result.codec
        split = {
            "setup": wall - result.copy_seconds - result.verify_seconds,
            "copy": result.copy_seconds,
            "verify": result.verify_seconds,
        }
    else:
        script = pipelines.script(
            method, hosts.source, CIPHERS[0], src.device, dst.device, tag, str(blob)
        )
        started = time.monotonic()
        asyncio.run(run_shell(hosts, script))
        wall = time.monotonic() - started
        if method == "floor":
            # CPU and wire: the cat's only (the untimed copy below would double them)
            floor_cpu, floor_wire = cpu.seconds() + own_cpu(), lo_bytes()
            scratch = str(Path(hosts.destination.device_dir) / f".floor-{tag}")
            fsync = float(asyncio.run(run_shell(
                hosts, pipelines.fsync_script(str(blob), hosts.source, CIPHERS[0], scratch)
            )).strip())  # fmt: skip
            split = {"cat": wall, "fsync": fsync}
            wall += fsync
    wire = lo_bytes() - before
    used = cpu.seconds() + own_cpu() - cpu_before
    if method == "floor":
        wire, used = floor_wire - before, floor_cpu - cpu_before
    foreign = max(0, cpu.sessions - (2 if method in OURS else 0))
    if method == "floor":
        return Row(method, wall, wire, 0, True, split=split, cpu=used, foreign=foreign)
    return Row(
        method,
        wall,
        wire,
        os.stat(dst.backing).st_blocks * 512,
        digest(dst.backing, dst.size) == want,
        stream,
        split,
        codec,
        used,
        foreign,
    )


def summarize(rows: list[Row], reference: str, nonzero: int) -> list[str]:
    by: dict[str, list[Row]] = {}
    for r in rows:
        by.setdefault(r.method, []).append(r)
    ref = statistics.median(r.wall for r in by[reference]) if reference in by else None
    ref_cpu = statistics.median(r.cpu for r in by[reference]) if reference in by else None
    out = [
        "| method | runs | wall s min | wall s median | split (median) | CPU s median "
        "| CPU s/GiB | wire (lo) | stream | destination allocated | identical | median / ours "
        "| CPU / ours |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, runs in by.items():
        walls = [r.wall for r in runs]
        med = statistics.median(walls)
        split = ""
        if runs[0].split:
            split = " + ".join(
                f"{k} {statistics.median(r.split[k] for r in runs):.2f}" for k in runs[0].split
            )
        stream = runs[0].stream
        cpu = statistics.median(r.cpu for r in runs)
        name = method + (f" ({runs[0].codec})" if runs[0].codec else "")
        out.append(
            f"| {name} | {len(runs)} | {min(walls):.2f} | {med:.2f} | {split} | {cpu:.2f} "
            f"| {cpu / (nonzero / GiB):.2f} "
            f"| {statistics.median(r.wire for r in runs) / MiB:.0f} MiB "
            f"| {'-' if stream is None else f'{stream / MiB:.0f} MiB'} "
            f"| {'-' if method == 'floor' else f'{runs[0].allocated / MiB:.0f} MiB'} "
            f"| {'yes' if all(r.identical for r in runs) else 'NO'} "
            f"| {'-' if ref is None else f'{med / ref:.2f}x'} "
            f"| {'-' if not ref_cpu else f'{cpu / ref_cpu:.2f}x'} |"
        )
    return out


def run_rounds(
    runs: int, methods: list[str], hosts: ConversionHosts, src: Volume, dst: Volume,
    ids: tuple[str, str], blob: Path, state: Path, want: str, tag: str, cpu: HostCpu,
    rows: list[Row], failures: list[str], warmup: bool = True,
) -> None:  # fmt: skip
    """Round 1 of every method, then round 2...: a burst of load hits all methods alike. Each
    round after the first runs the methods in another order (a shuffle, seeded by the round),
    so that no method always runs first or always follows the same one: a run pays for some of
    the previous one's work (writeback, freeing its destination's pages), and after the floor
    (which writes, fsyncs and deletes a copy of the data) that was 10-20% of its CPU."""
    if warmup:  # the first copy of an invocation cost 30-40% more CPU than the same one later
        row = one_run(methods[0], hosts, src, dst, ids, blob, state, want, tag, cpu)
        print(f"  [warm-up] {methods[0]}: {row.wall:.2f}s cpu {row.cpu:.2f}s (not counted)")
    for round_ in range(runs):
        order = list(methods)
        if round_:
            random.Random(round_).shuffle(order)
        for method in order:
            if round_ and method in ONCE:
                continue
            try:
                row = one_run(method, hosts, src, dst, ids, blob, state, want, tag, cpu)
            except Exception as exc:  # reported and counted, not fatal
                detail = [str(e) for e in getattr(exc, "exceptions", [])] or [str(exc)]
                print(f"  [{round_ + 1}] {method}: FAILED: {detail}", flush=True)
                failures.append(f"{method}: {detail}")
                continue
            rows.append(row)
            split = " ".join(f"{k}={v:.2f}" for k, v in row.split.items())
            print(
                f"  [{round_ + 1}] {method}: {row.wall:.2f}s {split} cpu {row.cpu:.2f}s wire "
                f"{row.wire / MiB:.0f} MiB stream "
                f"{'-' if row.stream is None else round(row.stream / MiB)} MiB allocated "
                f"{row.allocated / MiB:.0f} MiB identical {row.identical}"
                + (f" FOREIGN SESSIONS {row.foreign}" if row.foreign else ""),
                flush=True,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="4G", help="logical size (default 4G)")
    parser.add_argument(
        "--volume", choices=("synthetic", "realistic"), default="synthetic",
        help="synthetic: random, text and zero extents (the worst case); realistic: an ext4 "
        "image with an OS tree and a database file (benchmarks/realistic_volume.py)",
    )  # fmt: skip
    parser.add_argument("--allocated", default="1G", help="synthetic: allocated bytes (1G)")
    parser.add_argument("--os-tree", default="1.25G", help="realistic: bytes of /usr (1.25G)")
    parser.add_argument("--database", default="320M", help="realistic: database file (320M)")
    parser.add_argument(
        "--image", type=Path,
        help="realistic: use this image (built by benchmarks/realistic_volume.py) instead of "
        "building one; it is hard-linked (or copied) into the device directory, never written",
    )  # fmt: skip
    state_root = Path(os.environ.get("DEVCLOUD_STATE", ROOT / ".devcloud"))
    parser.add_argument("--hosts", default=str(state_root / "conversion-hosts.yaml"))
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--runs", type=int, default=3, help="runs per method (default 3)")
    parser.add_argument("--reference", default="ours", help="method the ratios divide by")
    parser.add_argument("--block", action="store_true", help="loop devices, not files")
    parser.add_argument("--json", action="store_true", help="also print the runs as JSON")
    parser.add_argument(
        "--no-warmup", action="store_true",
        help="skip the untimed copy (the first method's) made before the rounds",
    )  # fmt: skip
    parser.add_argument(
        "--link-rate",
        help="put a rate-limited link (bits/s like tc: 1G, 500M) between the hosts, as between "
        "two sites; default: none (loopback)",
    )
    args = parser.parse_args()
    # A kill (timeout, pkill) still runs the clean-up below: volumes, loop devices, cgroup.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in OURS and m not in pipelines.METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {[*OURS, *pipelines.METHODS]}")
    if any(m in pipelines.NBD for m in methods):
        pipelines.ensure_tools()
    size, target = parse_size(args.size), parse_size(args.allocated)
    hosts = ConversionHosts.model_validate(yaml.safe_load(Path(args.hosts).read_text()))
    ids = (str(uuid.uuid4()), str(uuid.uuid4()))
    tag = f"{os.getpid()}"
    work = Path(f"/tmp/tenantshift-bench-{tag}")
    work.mkdir(mode=0o700)
    host_ports = [hosts.source.port, hosts.destination.port]  # the sshd listeners
    link = None
    if args.link_rate:
        link = Link((hosts.source.address, hosts.source.port), parse_rate(args.link_rate))
        hosts = through_link(hosts, link.port, work / "known_hosts")
    state = work / "state"
    src = Volume(Path(hosts.source.device_dir) / f"virtio-{ids[0][:20]}", work / "src", size)
    dst = Volume(Path(hosts.destination.device_dir) / f"virtio-{ids[1][:20]}", work / "dst", size)
    if not args.block:  # the by-id names are the files themselves, as on the devcloud
        src.backing, dst.backing = src.link, dst.link
    blob = work / "nonzero"
    rows: list[Row] = []
    failures: list[str] = []
    try:
        t = time.monotonic()
        if args.volume == "realistic":
            if args.image is not None:
                info = use_image(args.image, src.backing)
                size = info["size"]
            else:
                info = realistic_volume.build(
                    src.backing, size, parse_size(args.os_tree), parse_size(args.database), work
                )
            info["extents"] = count_extents(src.backing)
            described = (
                f"ext4 with {info['os_bytes'] / MiB:.0f} MiB of /usr in {info['os_files']} "
                f"files and a {info['db_bytes'] / MiB:.0f} MiB database file"
                if "os_bytes" in info
                else f"ext4 image {info['image']}"
            ) + f"; {info['allocated'] / MiB:.0f} MiB allocated in {info['extents']} extents"
        else:
            info = build_volume(src.backing, size, target)
            described = (
                f"{info['allocated'] / MiB:.0f} MiB allocated in {info['extents']} extents "
                f"({info['random'] / MiB:.0f} random, {info['text'] / MiB:.0f} text, "
                f"{info['zeros'] / MiB:.0f} zeros)"
            )
        src.size = dst.size = size
        with open(dst.backing, "wb") as f:
            f.truncate(size)
        src.attach(args.block)
        dst.attach(args.block)
        nonzero = write_nonzero_blob(src.backing, blob)
        want = digest(src.backing, size)
        print(
            f"volume ({args.volume}): {size / MiB:.0f} MiB logical, {described}, "
            f"{nonzero / MiB:.0f} MiB non-zero; "
            f"{'loop devices ' + str(src.loop) + ' -> ' + str(dst.loop) if args.block else 'files'}"
            f"; built in {time.monotonic() - t:.1f}s; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        if link is not None:
            print(f"link: {args.link_rate}bit/s each way between the hosts (a TCP proxy)")
        cpu = HostCpu(host_ports)
        with cpu:
            run_rounds(args.runs, methods, hosts, src, dst, ids, blob, state, want, tag, cpu,
                       rows, failures, not args.no_warmup)  # fmt: skip
    finally:
        src.release()
        dst.release()
        blob.unlink(missing_ok=True)
        for leftover in state.glob("*"):
            leftover.unlink()
        if state.exists():
            state.rmdir()
        if link is not None:
            link.close()
            (work / "known_hosts").unlink()
        work.rmdir()
    print()
    print("\n".join(summarize(rows, args.reference, nonzero)))
    shared = sum(1 for r in rows if r.foreign)
    if shared:
        print(
            f"\n{shared} of {len(rows)} runs shared the hosts with another tenantshift session "
            "(its CPU and lo bytes are counted in them)"
        )
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=2))
    for failure in failures:
        print(f"FAILED run: {failure}")
    return 0 if all(r.identical for r in rows) and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
