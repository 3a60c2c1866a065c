"""Scale-out across a pool of conversion host pairs: the aggregate throughput of copying K
volumes over one pair, then over N pairs, when each pair's link is rate limited.

    export DEVCLOUD_STATE=... DEVCLOUD_PORT_OFFSET=...
    DEVCLOUD_CONVERSION_PAIRS=3 devcloud/devcloud up      # a devcloud with three pairs
    .venv/bin/python benchmarks/transfer_pool.py --pairs 3 --rate-limit 100M

The link: every pair's source host is reached through its own token-bucket TCP proxy on
127.0.0.1 (``--rate-limit``, in bits per second like ``tc``: ``100M`` is 100 Mbit/s, per
direction). The copies' SSH connections (the orchestrator's control connection and the
destination host's pull) go through it, so the limit is on the bytes on that pair's wire, as a
WAN link between two sites would impose, whatever the copy does: nothing in tenantshift
sleeps. Copies are scheduled exactly as ``plan`` and ``apply`` do (``engine/walk/pool.py``: each
volume planned on a pair, largest first; ``--copy-parallelism`` slots per pair; one transfer
session per pair).

Each run copies the same K volumes (``--volumes``, ``--size`` logical with ``--allocated``
bytes of data, 40% random, 40% text, 20% zeros) into fresh destinations, checks every
destination digest, and prints wall seconds, data and wire bytes, and the aggregate
throughput; then the N-pair figure as a multiple of the one-pair one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from link import Link, parse_rate  # noqa: E402
from transfer import build_volume, digest, parse_size  # noqa: E402

from tenantshift.engine.walk.pool import PairPool, plan_pairs  # noqa: E402
from tenantshift.manifest.schema import ConversionPair, ConversionPool  # noqa: E402
from tenantshift.transfer import TransferOptions, TransferSession, VolumeCopy  # noqa: E402

MiB = 1024 * 1024


# -- the volumes -----------------------------------------------------------------------------


@dataclass
class Volume:
    source_id: str
    destination_id: str
    source: Path
    destination: Path
    size: int
    want: str


def by_id(volume_id: str) -> str:
    return f"virtio-{volume_id[:20]}"


def make_volumes(
    pairs: list[ConversionPair], work: Path, count: int, size: int, allocated: int
) -> list[Volume]:
    """K source volumes and their empty destinations; every pair's hosts see them all (the
    by-id entries are links in each pair's device directories), so any pair can copy any."""
    volumes = []
    for index in range(count):
        source = work / f"source-{index}"
        build_volume(source, size, allocated, seed=100 + index)
        volume = Volume(
            str(uuid.uuid4()),
            str(uuid.uuid4()),
            source,
            work / f"destination-{index}",
            size,
            digest(source, size),
        )
        for pair in pairs:
            for side, path, vid in (
                (pair.source, volume.source, volume.source_id),
                (pair.destination, volume.destination, volume.destination_id),
            ):
                link = Path(side.device_dir) / by_id(vid)
                link.unlink(missing_ok=True)
                link.symlink_to(path)
        volumes.append(volume)
    return volumes


def empty(volume: Volume) -> None:
    with open(volume.destination, "wb") as f:
        f.truncate(volume.size)


def remove(volumes: list[Volume], pairs: list[ConversionPair]) -> None:
    for volume in volumes:
        for pair in pairs:
            for side, vid in (
                (pair.source, volume.source_id),
                (pair.destination, volume.destination_id),
            ):
                (Path(side.device_dir) / by_id(vid)).unlink(missing_ok=True)


# -- one run ---------------------------------------------------------------------------------


async def copy_all(
    pairs: list[ConversionPair], volumes: list[Volume], per_pair: int, options: TransferOptions
) -> list[tuple[str, int, int]]:
    """Every volume copied, scheduled like an apply: (pair, data bytes, stream bytes) each."""
    names = [p.name for p in pairs]
    pool = PairPool(names, per_pair)
    planned = plan_pairs(((v.source_id, v.size) for v in volumes), names)
    pool.expect(planned)
    sessions = {p.name: TransferSession(p, options) for p in pairs}
    opened: dict[str, asyncio.Task[None]] = {}

    async def one(volume: Volume) -> tuple[str, int, int]:
        name = await pool.acquire(volume.source_id, volume.size, [planned[volume.source_id]])
        try:
            if name not in opened:
                opened[name] = asyncio.ensure_future(sessions[name].open())
            await opened[name]
            result = await sessions[name].copy(VolumeCopy(volume.source_id, volume.destination_id))
            if not result.verified:
                raise RuntimeError(f"{volume.source_id}: not verified")
            return name, result.bytes_data, result.bytes_wire
        finally:
            pool.release(name)

    try:
        return await asyncio.gather(*(one(v) for v in volumes))
    finally:
        for session in sessions.values():
            with contextlib.suppress(Exception):
                await session.close()


def one_run(
    label: str, pairs: list[ConversionPair], volumes: list[Volume], links: dict[str, Link],
    per_pair: int, state: Path,
) -> dict[str, Any]:  # fmt: skip
    for volume in volumes:
        empty(volume)
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True, mode=0o700)  # the agent refuses a state dir others can read
    carried = {name: link.carried for name, link in links.items()}
    options = TransferOptions(state_dir=str(state))
    started = time.monotonic()
    results = asyncio.run(copy_all(pairs, volumes, per_pair, options))
    wall = time.monotonic() - started
    identical = all(digest(v.destination, v.size) == v.want for v in volumes)
    data = sum(r[1] for r in results)
    wire = sum(links[p.name].carried - carried[p.name] for p in pairs)
    used = sorted({r[0] for r in results})
    row = {
        "run": label,
        "pairs": len(pairs),
        "used": used,
        "wall": wall,
        "data": data,
        "stream": sum(r[2] for r in results),
        "wire": wire,
        "throughput": data / wall,
        "wire_rate": wire / wall,
        "identical": identical,
    }
    print(
        f"{label:>8}: {len(pairs)} pair(s) {','.join(used)}: {wall:6.1f} s, "
        f"{data / MiB:.0f} MiB data, {wire / MiB:.0f} MiB through the links, "
        f"{data / wall / MiB:.1f} MiB/s of data, identical={identical}",
        flush=True,
    )
    return row


def main() -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    state_root = Path(os.environ.get("DEVCLOUD_STATE") or ROOT / ".devcloud")
    parser.add_argument("--hosts", default=str(state_root / "conversion-hosts.yaml"))
    parser.add_argument("--pairs", type=int, default=3, help="pairs of the pool (default 3)")
    parser.add_argument("--rate-limit", default="100M", help="per pair, bits/s (default 100M)")
    parser.add_argument("--volumes", type=int, default=6, help="volumes to copy (default 6)")
    parser.add_argument("--size", default="1G", help="logical size of each (default 1G)")
    parser.add_argument("--allocated", default="96M", help="data in each (default 96M)")
    parser.add_argument("--copy-parallelism", type=int, default=2, help="per pair (default 2)")
    parser.add_argument("--runs", type=int, default=2, help="runs of each (default 2)")
    args = parser.parse_args()

    document = yaml.safe_load(Path(args.hosts).read_text())
    if "pairs" not in document or len(document["pairs"]) < args.pairs:
        print(
            f"{args.hosts} has fewer than {args.pairs} pairs: run "
            f"DEVCLOUD_CONVERSION_PAIRS={args.pairs} devcloud/devcloud up",
            file=sys.stderr,
        )
        return 2
    rate = parse_rate(args.rate_limit)
    configured = ConversionPool.model_validate(document).all_pairs[: args.pairs]
    links = {p.name: Link((p.source.address, p.source.port), rate) for p in configured}
    # Each pair's source is reached through its link (the pinned host key is unchanged).
    pairs = [
        p.model_copy(
            update={
                "source": p.source.model_copy(
                    update={"port": links[p.name].port, "known_hosts": None}
                )
            }
        )
        for p in configured
    ]
    work = state_root / "bench-pool"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    size, allocated = parse_size(args.size), parse_size(args.allocated)
    print(
        f"{args.volumes} volumes of {args.size} ({args.allocated} data), {args.rate_limit}bit/s "
        f"per pair and direction ({rate / MiB:.1f} MiB/s), {args.copy_parallelism} copies "
        f"per pair",
        flush=True,
    )
    volumes = make_volumes(pairs, work, args.volumes, size, allocated)
    rows: list[dict[str, Any]] = []
    try:
        for run in range(1, args.runs + 1):  # interleaved: load from elsewhere hits both
            rows.append(
                one_run(
                    f"1 pair #{run}",
                    pairs[:1],
                    volumes,
                    links,
                    args.copy_parallelism,
                    work / "state",
                )
            )
            rows.append(
                one_run(
                    f"{args.pairs} pairs #{run}",
                    pairs,
                    volumes,
                    links,
                    args.copy_parallelism,
                    work / "state",
                )
            )
    finally:
        remove(volumes, pairs)
        for link in links.values():
            link.close()
        shutil.rmtree(work, ignore_errors=True)
    one = [r for r in rows if r["pairs"] == 1]
    many = [r for r in rows if r["pairs"] == args.pairs]
    best_one = statistics.median(r["throughput"] for r in one)
    best_many = statistics.median(r["throughput"] for r in many)
    print()
    print(
        "| pairs | runs | wall s (median) | data MiB/s (median) | link MiB/s (median) | identical |"
    )
    print("|---|---|---|---|---|---|")
    for label, group in (("1", one), (str(args.pairs), many)):
        print(
            f"| {label} | {len(group)} | {statistics.median(r['wall'] for r in group):.1f} | "
            f"{statistics.median(r['throughput'] for r in group) / MiB:.1f} | "
            f"{statistics.median(r['wire_rate'] for r in group) / MiB:.1f} | "
            f"{all(r['identical'] for r in group)} |"
        )
    ratio = best_many / best_one
    print(f"\n{args.pairs} pairs / 1 pair aggregate throughput: {ratio:.2f}x (target >= 2.5x)")
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
