"""Benchmark the transfer layer against plain dd pipelines, between the devcloud's conversion
hosts (real sshd processes on 127.0.0.1; both "hosts" share this machine's cores).

    .venv/bin/python benchmarks/transfer.py --size 4G --allocated 1G

Builds a sparse test volume like shared/notes/datapath.md describes (about 40% random, 40%
text-like and 20% explicit zeros, in ~3 MiB extents spread over the volume) in the source
host's device directory, then, for each method, pulls it into a fresh sparse file in the
destination host's device directory, every method run *on the destination host* over SSH
(aes128-gcm for all). Prints wall seconds, bytes on the wire and whether the result is sparse
and identical. Wire bytes are measured on the loopback interface (/proc/net/dev: SSH and TCP
overhead included, and whatever else talks on lo meanwhile), and for our streamer also as the
stream bytes the destination agent received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tenantshift.manifest.schema import ConversionHosts  # noqa: E402
from tenantshift.transfer import TransferOptions, VolumeCopy, copy_volumes  # noqa: E402
from tenantshift.transfer.agent.sink import device_digest  # noqa: E402
from tenantshift.transfer.ssh import CIPHERS, connect  # noqa: E402

MiB = 1024 * 1024
CHUNK = 4 * MiB


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MiB, "G": 1024 * MiB, "T": 1024 * 1024 * MiB}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


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


def lo_bytes() -> int:
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[0])
    return 0


def fresh(path: Path, size: int) -> None:
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)


def digest(path: Path, size: int) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return device_digest(fd, size, CHUNK, "sha256")
    finally:
        os.close(fd)


async def dd_pipeline(hosts: ConversionHosts, src: Path, dst: Path, sparse: bool) -> float:
    """``ssh src dd | dd`` run on the destination host (it pulls), with the devcloud's key."""
    s = hosts.source
    ssh = [
        "ssh", "-F", "/dev/null", "-T", "-i", str(s.key_file),
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={s.known_hosts}",
        "-o", "BatchMode=yes", "-c", CIPHERS[0], "-p", str(s.port), f"{s.user}@{s.address}",
        f"dd if={shlex.quote(str(src))} bs=4M status=none",
    ]  # fmt: skip
    of = shlex.quote(str(dst))
    writer = f"dd of={of} bs=4M status=none conv=notrunc"
    if sparse:  # fullblock: from a pipe, dd would otherwise test partial blocks for zeros
        writer = f"dd of={of} bs=64K iflag=fullblock conv=sparse,notrunc status=none"
    conn = await connect(hosts.destination, "destination", 30)
    try:
        started = time.monotonic()
        result = await conn.run(f"{shlex.join(ssh)} | {writer}", check=True)
        assert result.exit_status == 0
        return time.monotonic() - started
    finally:
        conn.close()


async def ours(hosts: ConversionHosts, copy: VolumeCopy, compression: str, state: Path) -> Any:
    options = TransferOptions(state_dir=str(state), compression=compression)  # type: ignore[arg-type]
    started = time.monotonic()
    [result] = await copy_volumes(hosts, [copy], options=options)
    return result, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="4G", help="logical size (default 4G)")
    parser.add_argument("--allocated", default="1G", help="allocated bytes (default 1G)")
    parser.add_argument("--hosts", default=str(ROOT / ".devcloud" / "conversion-hosts.yaml"))
    parser.add_argument("--methods", default="naive,sparse-dd,ours,ours-zstd,ours-zlib")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()
    size, target = parse_size(args.size), parse_size(args.allocated)
    hosts = ConversionHosts.model_validate(yaml.safe_load(Path(args.hosts).read_text()))
    src_id, dst_id = str(uuid.uuid4()), str(uuid.uuid4())
    src = Path(hosts.source.device_dir) / f"virtio-{src_id[:20]}"
    dst = Path(hosts.destination.device_dir) / f"virtio-{dst_id[:20]}"
    state = Path(f"/tmp/tenantshift-bench-state-{os.getpid()}")
    rows: list[dict[str, Any]] = []
    try:
        t = time.monotonic()
        info = build_volume(src, size, target)
        print(
            f"volume: {size / MiB:.0f} MiB logical, {info['allocated'] / MiB:.0f} MiB allocated in "
            f"{info['extents']} extents ({info['random'] / MiB:.0f} random, "
            f"{info['text'] / MiB:.0f} text, {info['zeros'] / MiB:.0f} zeros); "
            f"built in {time.monotonic() - t:.1f}s",
            flush=True,
        )
        want = digest(src, size)
        for method in args.methods.split(","):
            fresh(dst, size)
            for leftover in state.glob("*"):
                leftover.unlink()
            before = lo_bytes()
            stream = None
            extra = ""
            if method in ("naive", "sparse-dd"):
                wall = asyncio.run(dd_pipeline(hosts, src, dst, sparse=method == "sparse-dd"))
            else:
                compression = {"ours": "none", "ours-zstd": "zstd", "ours-zlib": "zlib"}[method]
                copy = VolumeCopy(src_id, dst_id)
                result, wall = asyncio.run(ours(hosts, copy, compression, state))
                stream = result.bytes_wire
                extra = (
                    f"copy {result.copy_seconds:.2f}s + verify "
                    f"{result.seconds - result.copy_seconds:.2f}s + session set-up; "
                    f"codec {result.codec}"
                )
            wire = lo_bytes() - before
            row = {
                "method": method,
                "wall_s": round(wall, 2),
                "wire_mib": round(wire / MiB),
                "stream_mib": None if stream is None else round(stream / MiB),
                "dst_allocated_mib": round(os.stat(dst).st_blocks * 512 / MiB),
                "identical": digest(dst, size) == want,
                "note": extra,
            }
            rows.append(row)
            print(f"  {method}: {row}", flush=True)
    finally:
        src.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)
        for leftover in state.glob("*"):
            leftover.unlink()
        if state.exists():
            state.rmdir()
    print()
    print("| method | wall s | wire (lo) | stream | destination allocated | identical |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        stream = "-" if r["stream_mib"] is None else f"{r['stream_mib']} MiB"
        print(f"| {r['method']} | {r['wall_s']} | {r['wire_mib']} MiB | {stream} | "
              f"{r['dst_allocated_mib']} MiB | {'yes' if r['identical'] else 'NO'} |")  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
