"""CPU cost and wire size of the source's compression settings on a volume, without SSH: every
non-zero run the source agent would send goes through ``source._pack`` (the agent's own
decision: sample first or not, keep the result only if it saves ``codecs.WORTH_IT``), and every
compressed run back through the codec's ``decompress_into`` as the destination does.

    python benchmarks/codec_cpu.py IMAGE                     # the settings in SETTINGS
    python benchmarks/codec_cpu.py IMAGE --settings 1,1s,-1,-1s,-3

A setting is ``default`` (the agent's: level -1, or 1 for runs whose first 64 KiB shrink 3x at
level 1; codecs.ZSTD_*), or one zstd level for every run, with ``s`` to sample the first 64 KiB
of each run before compressing it (``cheap_on_random = False``), with ``@0.8`` for another
threshold (``WORTH_IT``). The runs are read once into memory (warm), so the figures are CPU
only: the agent's compress and decompress, in seconds per GiB of non-zero data, measured with
``time.process_time`` on one thread, the median of ``--runs``. The table also estimates what
the wire bytes cost the two SSH ends (``--cipher-cost`` CPU s per GiB on the wire, both ends
together: see docs/benchmarks.md for how it was measured), to show where compressing pays for
itself in CPU.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tenantshift.transfer.agent import codecs, extents, source  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
CHUNK = 4 * MiB
SETTINGS = "default,1,1s,2,3,-1,-1s,-3,-5"


def runs_of(path: str) -> list[bytearray]:
    """The non-zero runs the source agent would send (chunk grid, 64 KiB zero detection)."""
    fd = os.open(path, os.O_RDONLY)
    out: list[bytearray] = []
    try:
        size = extents.device_size(fd)
        buf = bytearray(CHUNK)
        for offset, length, pieces in extents.chunk_windows(
            extents.data_extents(fd, 0, size), CHUNK, size
        ):
            extents.read_chunk(fd, buf, offset, length, pieces)
            for rel, n in extents.nonzero_runs(buf, length):
                out.append(bytearray(buf[rel : rel + n]))
    finally:
        os.close(fd)
    return out


def make_codec(setting: str) -> tuple[Any, float]:
    level_text, _, worth = setting.partition("@")
    lib = ctypes.CDLL("libzstd.so.1")
    if level_text == "default":  # what the agent uses: codecs.ZSTD_* as they are
        codec = codecs._LibZstd(lib, codecs.ZSTD_LEVEL, codecs.ZSTD_ADAPTIVE)
        return codec, float(worth) if worth else codecs.WORTH_IT
    sample = level_text.endswith("s")
    codec = codecs._LibZstd(lib, int(level_text.rstrip("s")))
    codec.cheap_on_random = not sample
    return codec, float(worth) if worth else codecs.WORTH_IT


def measure(setting: str, runs: list[bytearray]) -> dict[str, float]:
    codec, worth = make_codec(setting)
    saved = codecs.WORTH_IT
    codecs.WORTH_IT = worth
    try:
        started = time.process_time()
        packed = [source._pack(codec, memoryview(r), 0) for r in runs]
        compress = time.process_time() - started
    finally:
        codecs.WORTH_IT = saved
    out = bytearray(CHUNK)
    started = time.process_time()
    for kind, _, length, payload in packed:
        if kind == source.ZDATA:
            codec.decompress_into(memoryview(payload), memoryview(out)[:length])
    decompress = time.process_time() - started
    wire = sum(len(payload) for _, _, _, payload in packed)
    compressed = sum(1 for kind, *_ in packed if kind == source.ZDATA)
    return {"compress": compress, "decompress": decompress, "wire": wire, "zruns": compressed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image")
    parser.add_argument("--settings", default=SETTINGS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--cipher-cost", type=float, default=0.0,
        help="CPU s per GiB on the wire for both SSH ends (0: leave the column out)",
    )  # fmt: skip
    args = parser.parse_args()
    runs = runs_of(args.image)
    data = sum(len(r) for r in runs)
    print(
        f"{args.image}: {data / MiB:.0f} MiB non-zero in {len(runs)} runs; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    settings = args.settings.split(",")
    results: dict[str, list[dict[str, float]]] = {s: [] for s in settings}
    for _ in range(args.runs):  # interleaved rounds
        for setting in settings:
            results[setting].append(measure(setting, runs))
    gib = data / GiB
    head = (
        "| setting | wire MiB | ratio | runs compressed | compress s/GiB | decompress s/GiB "
        "| codec s/GiB |"
    )
    if args.cipher_cost:
        head += " codec + cipher s/GiB |"
    print()
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for setting, rs in results.items():
        c = statistics.median(r["compress"] for r in rs) / gib
        d = statistics.median(r["decompress"] for r in rs) / gib
        wire = rs[0]["wire"]
        line = (
            f"| {setting} | {wire / MiB:.0f} | {data / wire:.2f} "
            f"| {rs[0]['zruns']:.0f}/{len(runs)} "
            f"| {c:.2f} | {d:.2f} | {c + d:.2f} |"
        )
        if args.cipher_cost:
            line += f" {c + d + args.cipher_cost * wire / data:.2f} |"
        print(line)
    if args.cipher_cost:
        print(f"| none | {data / MiB:.0f} | 1.00 | 0 | 0 | 0 | 0 | {args.cipher_cost:.2f} |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
