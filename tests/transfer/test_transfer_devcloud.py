"""The transfer layer between the devcloud's conversion hosts: real sshd processes on
127.0.0.1:2221/2222, with test volumes made as sparse files in their device directories."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml

from tenantshift.manifest.schema import ConversionHosts
from tenantshift.transfer import (
    DeviceNotFoundError,
    HostKeyError,
    Progress,
    StreamError,
    TransferOptions,
    TransferSession,
    VolumeCopy,
    copy_volumes,
    sweep_leftover_keys,
)

from .helpers import MiB, allocated, make_volume, sha256_file

pytestmark = pytest.mark.devcloud

SIZE = 256 * MiB
REGIONS = [
    (0, "random", 2 * MiB),
    (9 * MiB + 512, "text", 6 * MiB),
    (30 * MiB, "zeros", 16 * MiB),  # allocated zeros: never on the wire
    (64 * MiB, "random", 8 * MiB),
    (100 * MiB, "text", 4 * MiB),
    (SIZE - MiB, "random", MiB),  # the last MiB, like the seeded data-vol
]
NONZERO = 21 * MiB  # within 128 KiB; allocated is 37 MiB


@dataclass
class Pair:
    copy: VolumeCopy
    source: Path
    destination: Path


@pytest.fixture(scope="module")
def hosts(devcloud: Any) -> ConversionHosts:
    return ConversionHosts.model_validate(
        yaml.safe_load(devcloud.conversion_hosts_yaml.read_text())
    )


@pytest.fixture()
def make_pair(hosts: ConversionHosts) -> Iterator[Any]:
    made: list[Path] = []

    def make(
        regions: list[tuple[int, str, int]] = REGIONS, size: int = SIZE, seed: int = 1
    ) -> Pair:
        src_id, dst_id = str(uuid.uuid4()), str(uuid.uuid4())
        src = Path(hosts.source.device_dir) / f"virtio-{src_id[:20]}"
        dst = Path(hosts.destination.device_dir) / f"virtio-{dst_id[:20]}"
        made.extend([src, dst])
        make_volume(src, size, regions, seed)
        with open(dst, "wb") as f:
            f.truncate(size)  # a new thin volume
        return Pair(VolumeCopy(src_id, dst_id), src, dst)

    yield make
    for path in made:
        path.unlink(missing_ok=True)


def lo_received() -> int:
    """Bytes received on the loopback interface (an independent wire measurement)."""
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[0])
    raise AssertionError("no lo interface")


def private_keys() -> set[Path]:
    """Private keys of transfer runs in their run directories: the session's, and each pull's."""
    tmp = Path("/tmp")
    return {
        *tmp.glob("tenantshift-transfer-*/id_ed25519"),
        *tmp.glob("tenantshift-transfer-*/pull-*.key"),
    }


def marker_lines(devcloud: Any, marker: str = "tenantshift-transfer-") -> list[str]:
    keys = (devcloud.state / "ssh" / "authorized_keys").read_text().splitlines()
    return [k for k in keys if marker in k]


def test_parallel_copies_are_identical_sparse_and_extent_only(
    devcloud: Any, hosts: ConversionHosts, make_pair: Any, tmp_path: Path
) -> None:
    a, b = make_pair(seed=1), make_pair(seed=2)
    reports: list[Progress] = []
    options = TransferOptions(
        state_dir=str(tmp_path / "state"), compression="none", progress_interval=0.0
    )
    keys_before = private_keys()
    before = lo_received()
    results = asyncio.run(
        copy_volumes(hosts, [a.copy, b.copy], options=options, copy_parallelism=2,
                     progress=reports.append)
    )  # fmt: skip
    on_lo = lo_received() - before
    for pair, result in zip((a, b), results, strict=True):
        assert result.source_volume_id == pair.copy.source_volume_id
        assert sha256_file(pair.destination) == sha256_file(pair.source)
        assert result.verified and result.digest and result.bytes_logical == SIZE
        # the data extents, exactly; st_blocks may add a block of ext4's extent tree
        assert result.bytes_allocated == 37 * MiB + 512 + 3584
        assert 0 <= allocated(pair.source) - result.bytes_allocated <= 64 * 1024
        # only non-zero data moved: not the holes, not the 16 MiB of allocated zeros
        assert NONZERO <= result.bytes_data <= NONZERO + 256 * 1024
        assert result.bytes_wire < result.bytes_data + 256 * 1024
        assert allocated(pair.destination) <= result.bytes_data + 64 * 1024  # stays sparse
        assert result.codec == "none" and result.resumed_from == 0
    assert results[0].digest != results[1].digest
    # measured independently on the loopback: both copies together moved ~2 x 21 MiB, far
    # from 2 x 256 MiB (slack for SSH framing and whatever else talks on lo meanwhile)
    assert on_lo < 2 * NONZERO + 24 * MiB
    done = {p.source_volume_id: p.bytes_done for p in reports}
    assert done == {a.copy.source_volume_id: SIZE, b.copy.source_volume_id: SIZE}
    assert not marker_lines(devcloud), "the ephemeral key was not revoked"
    # no private key left behind (other runs on this machine may have their own meanwhile)
    assert not private_keys() - keys_before


def test_compression_is_negotiated_and_shrinks_the_wire(
    hosts: ConversionHosts, make_pair: Any, tmp_path: Path
) -> None:
    pair = make_pair()
    options = TransferOptions(state_dir=str(tmp_path / "state"), compression="auto")
    [result] = asyncio.run(copy_volumes(hosts, [pair.copy], options=options))
    assert result.codec == "zstd"  # via libzstd: the hosts have only the standard library
    assert sha256_file(pair.destination) == sha256_file(pair.source)
    # random data does not shrink, the 10 MiB of text does, ~3x
    assert result.bytes_wire < result.bytes_data - 5 * MiB


def test_several_streams_over_ssh_with_xxh3(
    devcloud: Any, hosts: ConversionHosts, make_pair: Any, tmp_path: Path
) -> None:
    """Three SSH connections between the hosts, each over its part of the volume; the hash
    negotiated from what both hosts have (libxxhash: apt links it on Debian)."""
    pair = make_pair()
    options = TransferOptions(state_dir=str(tmp_path / "state"), compression="none", streams=3)
    [result] = asyncio.run(copy_volumes(hosts, [pair.copy], options=options))
    assert sha256_file(pair.destination) == sha256_file(pair.source)
    assert result.verified and NONZERO <= result.bytes_data <= NONZERO + 128 * 1024
    assert len(result.digest or "") == 32  # XXH3-128
    assert not marker_lines(devcloud), "the ephemeral key was not revoked"


def _serve_pids(run_dir: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"{run_dir}/agent.pyz".encode() in cmd and b"serve" in cmd:
            pids.append(int(proc.name))
    return pids


def test_interrupted_copy_resumes_without_resending(
    hosts: ConversionHosts, make_pair: Any, tmp_path: Path
) -> None:
    regions = [(i * 16 * MiB, "random", 4 * MiB) for i in range(16)]  # 64 MiB, spread out
    pair = make_pair(regions)
    options = TransferOptions(
        state_dir=str(tmp_path / "state"),
        compression="none",
        checkpoint_bytes=4 * MiB,
        rate_limit=40 * MiB,  # slow enough to interrupt half-way
        progress_interval=0.05,
    )
    killed: list[int] = []

    async def run() -> Any:
        async with TransferSession(hosts, options) as session:
            assert session.source_run_dir

            def kill_half_way(p: Progress) -> None:
                if not killed and p.data_bytes >= 32 * MiB:
                    for pid in _serve_pids(session.source_run_dir or ""):
                        os.kill(pid, signal.SIGKILL)  # the source side of the stream dies
                        killed.append(pid)

            with pytest.raises(StreamError, match="ended at offset"):
                await session.copy(pair.copy, kill_half_way)
            assert killed
            return await session.copy(pair.copy)

    result = asyncio.run(run())
    assert result.resumed_from >= 32 * MiB - 4 * MiB - 16 * MiB  # a checkpoint past the middle
    assert result.resumed_from % options.chunk_size == 0
    # the second run moved only what lies past its resume point
    past = sum(4 * MiB for off, _, _ in regions if off >= result.resumed_from)
    assert result.bytes_data == past < 64 * MiB
    assert result.verified and result.chunks == 16  # verification covers both attempts
    assert sha256_file(pair.destination) == sha256_file(pair.source)
    # A finished copy is never resumed from; only the volume's chunk index (for deltas) stays.
    assert [p.suffix for p in (tmp_path / "state").iterdir()] == [".index"]


def test_wrong_host_key_is_refused(hosts: ConversionHosts, make_pair: Any) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    wrong = ConversionHosts(
        source=hosts.source.model_copy(update={"host_key": other}),
        destination=hosts.destination,
    )
    where = re.escape(f"{hosts.source.address}:{hosts.source.port}")
    with pytest.raises(HostKeyError, match=rf"source conversion host {where}: .*does not match"):
        asyncio.run(copy_volumes(wrong, [make_pair().copy]))


def test_destination_refuses_a_source_with_another_host_key(
    hosts: ConversionHosts, make_pair: Any, tmp_path: Path
) -> None:
    pair = make_pair()
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()

    async def run() -> None:
        async with TransferSession(hosts, TransferOptions(state_dir=str(tmp_path))) as session:
            assert session.destination_run_dir
            pinned = Path(session.destination_run_dir) / "known_hosts"  # same machine here
            pinned.write_text(f"tenantshift-source {other[0]} {other[1]}\n")
            await session.copy(pair.copy)

    with pytest.raises(HostKeyError, match="refused the source host's key"):
        asyncio.run(run())


def test_missing_device_names_the_volume(
    hosts: ConversionHosts, make_pair: Any, tmp_path: Path
) -> None:
    pair = make_pair()
    missing = str(uuid.uuid4())
    options = TransferOptions(state_dir=str(tmp_path))

    async def run(copy: VolumeCopy) -> None:
        async with TransferSession(hosts, options) as session:
            await session.copy(copy)

    with pytest.raises(DeviceNotFoundError, match=missing) as err:
        asyncio.run(run(VolumeCopy(missing, pair.copy.destination_volume_id)))
    assert err.value.volume_id == missing and err.value.side == "source"
    with pytest.raises(DeviceNotFoundError, match=missing) as err:
        asyncio.run(run(VolumeCopy(pair.copy.source_volume_id, missing)))
    assert err.value.side == "destination"


def test_each_copy_has_its_own_expiring_key_for_its_volume_only(
    devcloud: Any, hosts: ConversionHosts, make_pair: Any, tmp_path: Path
) -> None:
    pair = make_pair()
    seen: list[list[str]] = []
    options = TransferOptions(state_dir=str(tmp_path / "state"), progress_interval=0.0)

    async def run() -> Any:
        async with TransferSession(hosts, options) as session:
            ours = session.marker  # other runs may use the devcloud meanwhile
            assert not marker_lines(devcloud, ours)  # nothing is authorised before a copy
            result = await session.copy(
                pair.copy, lambda p: seen.append(marker_lines(devcloud, ours))
            )
            assert not marker_lines(devcloud, ours)  # revoked when the copy ended
            return ours, result

    marker, result = asyncio.run(run())
    assert result.verified
    lines = {line for snapshot in seen for line in snapshot}
    assert len(lines) == 1
    [line] = lines
    assert line.startswith('restrict,expiry-time="') and line.split()[-1].startswith(marker + "-")
    assert line.count("--volume-id") == 1 and f"--volume-id {pair.copy.source_volume_id}" in line


def test_leftover_keys_are_swept(devcloud: Any, hosts: ConversionHosts) -> None:
    keys_file = devcloud.state / "ssh" / "authorized_keys"
    marker = "tenantshift-transfer-" + "0f" * 16
    public = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()
    with open(keys_file, "a") as f:  # what a killed run leaves behind
        f.write(f'restrict,command="false" {public[0]} {public[1]} {marker}-0123456789abcdef\n')
    assert asyncio.run(sweep_leftover_keys(hosts, [marker])) == 1
    assert not marker_lines(devcloud, marker)
    assert asyncio.run(sweep_leftover_keys(hosts, [marker])) == 0
