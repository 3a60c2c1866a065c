"""A realistic test volume for the data-path benchmarks: an ext4 filesystem image holding a real
OS tree (files of this machine's own /usr: binaries, shared libraries, Python modules, docs,
locales, man pages, icons) and a database-like file (8 KiB pages of mixed records with free
space in the middle of each page, as PostgreSQL's heap and B-tree pages have), in a sparse file
with the holes mkfs leaves: the free space of the filesystem is never written.

    python benchmarks/realistic_volume.py /tmp/vol.img          # 4 GiB, ~1.25 GiB of /usr
    python benchmarks/realistic_volume.py /tmp/vol.img --os-tree 1G --database 256M

Built with ``mkfs.ext4 -d`` (e2fsprogs >= 1.43), which populates the filesystem from a staging
directory without mounting it. The staging tree hard-links the /usr files (same filesystem; a
copy otherwise), so building costs one read of them. ``mkfs.ext4 -d`` does not allocate 4 KiB
blocks that are all zeros inside a file (they become holes of the file in the image), so the
database's empty pages are holes, as after a ``fstrim`` of a filesystem on thin storage.

The tree is chosen deterministically: the directories of ``OS_TREE`` in that order, each walked
in sorted order, files taken until the budget is reached. The database is generated from a
fixed seed. The same machine therefore gets the same volume on every run.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
PAGE = 8192

#: Where the OS tree's files come from, and each directory's share of the budget (what a
#: Debian server's /usr holds: executables, shared libraries, the Python standard library,
#: /usr/share's docs, locales, man pages, icons). A directory's unused share goes to the next.
OS_TREE = (
    ("/usr/bin", 0.2),
    ("/usr/sbin", 0.03),
    ("/usr/lib/x86_64-linux-gnu", 0.35),
    ("/usr/lib/aarch64-linux-gnu", 0.0),
    ("/usr/lib/python3", 0.05),
    ("/usr/lib/python3.11", 0.05),
    ("/usr/share", 0.32),
)


def stage_os_tree(root: Path, budget: int) -> dict[str, int]:
    """Hard-link (or copy) regular files of ``OS_TREE`` under ``root`` until ``budget`` bytes."""
    taken = files = links = 0
    seen: set[tuple[int, int]] = set()
    share = 0.0
    for top, fraction in OS_TREE:
        share += fraction
        if not os.path.isdir(top):
            continue
        limit = int(budget * share)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            target_dir = root / dirpath.lstrip("/")
            target_dir.mkdir(parents=True, exist_ok=True)
            for name in sorted(filenames):
                src = os.path.join(dirpath, name)
                dst = target_dir / name
                if dst.exists() or dst.is_symlink():
                    continue  # reached again through a later, wider OS_TREE entry
                try:
                    st = os.lstat(src)
                except OSError:
                    continue
                if os.path.islink(src):
                    dst.symlink_to(os.readlink(src))
                    links += 1
                    continue
                if not os.path.isfile(src) or (st.st_dev, st.st_ino) in seen:
                    continue
                if taken + st.st_size > limit:
                    continue
                seen.add((st.st_dev, st.st_ino))
                try:
                    os.link(src, dst)
                except OSError:
                    try:
                        shutil.copyfile(src, dst)
                    except OSError:
                        continue
                taken += st.st_size
                files += 1
            if taken >= limit:
                break
    return {"os_bytes": taken, "os_files": files, "os_symlinks": links}


_TEXT = (
    "pending shipped delivered cancelled refunded express standard pickup warehouse berlin "
    "paris lisbon oslo madrid dublin tenant volume server network router subnet image backup "
    "invoice payment card transfer customer order item quantity discount coupon gift review"
)
_WORDS = _TEXT.split(" ")
_DOMAINS = ("example.com", "mail.example.org", "corp.example.net", "users.example.io")


def _varlena(data: bytes) -> bytes:
    # PostgreSQL's short varlena: a 1-byte header for values under 127 bytes
    if len(data) < 127:
        return bytes([(len(data) + 1) << 1 | 1]) + data
    return struct.pack("<I", (len(data) + 4) << 2) + data


def _heap_page(rng: random.Random, kind: str, state: dict[str, int]) -> bytes:
    """One heap page: a 24-byte header, line pointers growing up, tuples growing down from
    the end, zeros (the free space) in between; fill 35-100%."""
    fill = rng.choice((1.0, 0.97, 0.9, 0.8, 0.7, 0.55, 0.35))
    tuples: list[bytes] = []
    used = 24
    while True:
        state["id"] += 1
        state["xid"] += rng.randint(0, 3)
        state["ts"] += rng.randint(0, 4_000_000)
        header = struct.pack(
            "<IIIHHHHB", state["xid"], 0, 0, 0, rng.randint(1, 200), 0x0902, 0x0B00, 24
        ) + bytes(1)
        if kind == "orders":
            email = f"{rng.choice(_WORDS)}.{rng.randint(1, 99999)}@{rng.choice(_DOMAINS)}"
            note = " ".join(rng.choice(_WORDS) for _ in range(rng.choice((0, 0, 2, 5, 12))))
            body = (
                struct.pack(
                    "<qiqhq",
                    state["id"],
                    rng.randint(1, 500_000),
                    state["ts"],
                    rng.randint(0, 5),
                    rng.randint(100, 5_000_000),
                )
                + _varlena(rng.choice((b"EUR", b"EUR", b"USD", b"GBP", b"NOK")))
                + _varlena(email.encode())
                + _varlena(note.encode())
                + rng.randbytes(16)  # a uuid column
            )
        else:  # events: a JSON document per row
            doc = (
                f'{{"event":"{rng.choice(_WORDS)}","tenant":"{rng.randbytes(8).hex()}",'
                f'"at":{state["ts"]},"count":{rng.randint(0, 1000)},'
                f'"tags":["{rng.choice(_WORDS)}","{rng.choice(_WORDS)}"],'
                f'"ok":{rng.choice(("true", "false"))}}}'
            )
            body = struct.pack("<qq", state["id"], state["ts"]) + _varlena(doc.encode())
        item = header + body
        item += bytes(-len(item) % 8)  # MAXALIGN
        if used + 4 + len(item) > PAGE * fill:
            break
        tuples.append(item)
        used += 4 + len(item)
    pointers = []
    end = PAGE
    for item in tuples:
        end -= len(item)
        pointers.append(struct.pack("<I", end | 1 << 15 | len(item) << 17))
    lower = 24 + 4 * len(tuples)
    header = struct.pack("<QHHHHHHI", state["lsn"], 0, 0, lower, end, PAGE, 0x2004, 0)
    state["lsn"] += rng.randint(1, 1 << 20)
    page = header + b"".join(pointers)
    page += bytes(end - len(page))
    return page + b"".join(reversed(tuples))


def _btree_page(rng: random.Random, state: dict[str, int]) -> bytes:
    """One B-tree leaf: sorted 8-byte keys with heap pointers, 70-90% full."""
    n = rng.randint(280, 360)
    items = []
    for _ in range(n):
        state["key"] += rng.randint(1, 3)
        items.append(
            struct.pack("<IHHq", rng.randint(0, 40000), rng.randint(1, 60), 16, state["key"])
        )
    lower = 24 + 4 * n
    upper = PAGE - 16 - 16 * n
    header = struct.pack("<QHHHHHHI", state["lsn"], 0, 0, lower, upper, PAGE, 0x2004, 0)
    pointers = b"".join(struct.pack("<I", upper + 16 * i | 1 << 15 | 16 << 17) for i in range(n))
    page = header + pointers
    return page + bytes(upper - len(page)) + b"".join(items) + struct.pack("<IIII", 0, 0, 0, 1)


def write_database(path: Path, size: int, seed: int = 11) -> dict[str, int]:
    """``size`` bytes of 8 KiB pages: runs of heap pages of two tables (orders: numbers,
    e-mail addresses, short notes, uuids; events: JSON documents), B-tree index pages, and a
    few empty pages (free space a vacuum left: all zeros)."""
    rng = random.Random(seed)
    state = {"id": 0, "xid": 1000, "ts": 700_000_000_000_000, "lsn": 1 << 32, "key": 0}
    counts = {"heap": 0, "index": 0, "empty": 0}
    pages = size // PAGE
    with open(path, "wb") as f:
        written = 0
        while written < pages:
            kind = rng.choices(("orders", "events", "index", "empty"), (50, 30, 17, 3))[0]
            run = min(pages - written, rng.randint(8, 256))
            out = []
            for _ in range(run):
                if kind == "index":
                    out.append(_btree_page(rng, state))
                elif kind == "empty":
                    out.append(bytes(PAGE))
                else:
                    out.append(_heap_page(rng, kind, state))
            f.write(b"".join(out))
            counts["index" if kind == "index" else "empty" if kind == "empty" else "heap"] += run
            written += run
    return counts


def build(
    image: Path, size: int, os_bytes: int, db_bytes: int, work: Path | None = None
) -> dict[str, Any]:
    """Write the ext4 image ``image`` (sparse, ``size`` bytes)."""
    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix="tenantshift-realvol-", dir=work))
    try:
        info: dict[str, Any] = stage_os_tree(staging, os_bytes)
        db = staging / "var/lib/postgresql/15/main/base/16384"
        db.mkdir(parents=True)
        pages = write_database(db / "16402", db_bytes)
        info.update({f"db_{k}_pages": v for k, v in pages.items()}, db_bytes=db_bytes)
        image.unlink(missing_ok=True)
        with open(image, "wb") as f:
            f.truncate(size)
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-L", "bench-root", "-E", "root_owner=0:0",
             "-d", str(staging), str(image)],
            check=True,
        )  # fmt: skip
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    st = os.stat(image)
    info.update(allocated=st.st_blocks * 512, seconds=time.monotonic() - started)
    return info


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MiB, "G": 1024 * MiB, "T": 1024 * 1024 * MiB}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("--size", default="4G")
    parser.add_argument("--os-tree", default="1.25G", help="bytes of /usr files (default 1.25G)")
    parser.add_argument("--database", default="320M", help="database file size (default 320M)")
    args = parser.parse_args()
    info = build(
        args.image, parse_size(args.size), parse_size(args.os_tree), parse_size(args.database)
    )
    print(
        {
            k: (f"{v / MiB:.0f} MiB" if k.endswith(("bytes", "allocated")) else v)
            for k, v in info.items()
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
