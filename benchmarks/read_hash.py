"""How fast the source agent can read and hash a volume, against a plain sequential read of
the same bytes: a delta sync reads and hashes the whole allocated source, so the hashing must
not be what limits it (goal: read + hash at >= 80% of the plain read's rate).

    python benchmarks/read_hash.py IMAGE           # e.g. one built by realistic_volume.py
    python benchmarks/read_hash.py IMAGE --runs 3 --no-drop

Every pass walks the volume's allocated extents (SEEK_DATA/SEEK_HOLE) in the agent's chunk
grid (``--chunk``, 4 MiB) and reads each chunk's allocated pieces with ``os.preadv`` into one
reused buffer (``extents.read_chunk``, as the agent does). The passes:

- ``read``: only that;
- ``read+xxh3``, ``read+sha256``: plus one hash of each chunk's allocated bytes (``hashes.new``);
- ``agent xxh3``, ``agent sha256``: plus what the source agent does per chunk before it
  compresses: the all-zero test, the non-zero runs at 64 KiB and the chunk hash over them
  (``source.chunk_hash``).

Cold: the page cache is dropped before each pass (``echo 3 > /proc/sys/vm/drop_caches``, as
root; ``--no-drop`` or not root: skipped), so the disk is read. Warm: the same passes again
with the file in the page cache (read once first), which shows the CPU cost alone. Passes are
interleaved over ``--runs`` rounds; the table gives each pass's median wall time, rate, CPU
seconds of this process and its rate as a share of the plain read's in the same state.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tenantshift.transfer.agent import extents, hashes, source  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def drop_caches() -> bool:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def one_pass(
    path: str, chunk: int, work: Callable[[bytearray, int], Any]
) -> tuple[float, float, int]:
    """(wall s, CPU s, bytes read) of one pass over the allocated chunks of ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = extents.device_size(fd)
        found = extents.data_extents(fd, 0, size)
        buf = bytearray(chunk)
        total = 0
        cpu = _cpu()
        started = time.perf_counter()
        for offset, length, pieces in extents.chunk_windows(found, chunk, size):
            extents.read_chunk(fd, buf, offset, length, pieces)
            total += sum(n for _, n in pieces)
            work(buf, length)
        return time.perf_counter() - started, _cpu() - cpu, total
    finally:
        os.close(fd)


def hash_only(name: str) -> Callable[[bytearray, int], Any]:
    def work(buf: bytearray, length: int) -> bytes:
        h = hashes.new(name)
        h.update(memoryview(buf)[:length])
        return bytes(h.digest())

    return work


def agent(name: str) -> Callable[[bytearray, int], Any]:
    def work(buf: bytearray, length: int) -> Any:
        if extents.is_zero(buf, length):
            return None
        return source.chunk_hash(name, buf, length)

    return work


PASSES: dict[str, Callable[[bytearray, int], Any]] = {
    "read": lambda buf, length: None,
    "read+xxh3": hash_only("xxh3"),
    "read+sha256": hash_only("sha256"),
    "agent xxh3": agent("xxh3"),
    "agent sha256": agent("sha256"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", help="a volume file (or block device)")
    parser.add_argument("--runs", type=int, default=3, help="rounds of every pass (default 3)")
    parser.add_argument("--chunk", type=int, default=4 * MiB)
    parser.add_argument("--passes", default=",".join(PASSES), help="comma-separated")
    parser.add_argument("--no-drop", action="store_true", help="warm-cache passes only")
    args = parser.parse_args()
    passes = args.passes.split(",")
    available = hashes.available()
    passes = [p for p in passes if p.split("+")[-1].split(" ")[-1] in [*available, "read"]]
    states = ["warm"] if args.no_drop or not drop_caches() else ["cold", "warm"]
    print(f"{args.image}: load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs; {states}")
    results: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    for state in states:
        if state == "warm":
            one_pass(args.image, args.chunk, PASSES["read"])  # into the page cache
        for round_ in range(args.runs):
            for name in passes:
                if state == "cold":
                    drop_caches()
                wall, cpu, total = one_pass(args.image, args.chunk, PASSES[name])
                results.setdefault((state, name), []).append((wall, cpu, total))
                print(
                    f"  [{round_ + 1}] {state} {name}: {wall:.2f} s, {total / GiB / wall:.2f} "
                    f"GiB/s, CPU {cpu:.2f} s",
                    flush=True,
                )
    print()
    print(
        "| cache | pass | GiB read | wall s median | GiB/s | CPU s median | CPU s/GiB "
        "| rate / read |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for state in states:
        base = statistics.median(w for w, _, _ in results[(state, "read")])
        for name in passes:
            runs = results[(state, name)]
            wall = statistics.median(w for w, _, _ in runs)
            cpu = statistics.median(c for _, c, _ in runs)
            gib = runs[0][2] / GiB
            print(
                f"| {state} | {name} | {gib:.2f} | {wall:.2f} | {gib / wall:.2f} | {cpu:.2f} "
                f"| {cpu / gib:.2f} | {base / wall:.0%} |"
            )
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
