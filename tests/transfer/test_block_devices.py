"""The copy on real block devices: loop devices over volume files behind the conversion
hosts' by-id names, as on a cloud where an attached Cinder volume is a block device. Block
devices report no holes (everything is "allocated"), so zero-chunk detection is what keeps
zeros off the wire, and a destination that is not known to be zeroed must be zeroed
explicitly: these destinations start full of garbage."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenantshift.manifest.schema import ConversionHosts
from tenantshift.transfer import TransferOptions, VolumeCopy, copy_volumes

from .helpers import MiB, allocated, make_volume, sha256_file

pytestmark = pytest.mark.devcloud

SIZE = 256 * MiB
REGIONS = [
    (0, "random", 2 * MiB),
    (9 * MiB + 512, "text", 6 * MiB),
    (30 * MiB, "zeros", 16 * MiB),
    (64 * MiB, "random", 8 * MiB),
    (SIZE - MiB, "random", MiB),
]
NONZERO = 17 * MiB  # within 128 KiB


@pytest.fixture(scope="module")
def hosts(devcloud: Any) -> ConversionHosts:
    return ConversionHosts.model_validate(
        yaml.safe_load(devcloud.conversion_hosts_yaml.read_text())
    )


@pytest.fixture()
def loop_volume(tmp_path: Path) -> Iterator[Any]:
    """``make(device_dir, volume_id, regions, garbage)``: a volume file with ``regions``
    (or, with ``garbage``, random bytes everywhere), a loop device over it (``losetup -f``:
    loop devices are global on the machine) and the volume's by-id name pointing at the
    device. Everything made is released afterwards, and only that."""
    if not Path("/dev/loop-control").exists():
        pytest.fail("this machine has no loop devices (/dev/loop-control)")
    made: list[tuple[str, Path]] = []

    def make(device_dir: str, volume_id: str, regions: Any, garbage: bool = False) -> Path:
        backing = tmp_path / f"{volume_id}.img"
        if garbage:
            with open(backing, "wb") as f:
                for _ in range(SIZE // (4 * MiB)):
                    f.write(os.urandom(4 * MiB))
        else:
            make_volume(backing, SIZE, regions)
        device = subprocess.run(
            ["losetup", "-f", "--show", str(backing)], check=True, capture_output=True, text=True
        ).stdout.strip()
        link = Path(device_dir) / f"virtio-{volume_id[:20]}"
        made.append((device, link))
        link.symlink_to(device)
        return backing

    yield make
    for device, link in made:
        link.unlink(missing_ok=True)
        subprocess.run(["losetup", "-d", device], check=False)


@pytest.mark.parametrize("reread", [False, True], ids=["stream-verified", "reread"])
def test_copy_between_block_devices(
    hosts: ConversionHosts, loop_volume: Any, tmp_path: Path, reread: bool
) -> None:
    src_id, dst_id = str(uuid.uuid4()), str(uuid.uuid4())
    source = loop_volume(hosts.source.device_dir, src_id, REGIONS)
    destination = loop_volume(hosts.destination.device_dir, dst_id, [], garbage=True)
    options = TransferOptions(state_dir=str(tmp_path / "state"), compression="none",
                              reread=reread)  # fmt: skip
    [result] = asyncio.run(copy_volumes(hosts, [VolumeCopy(src_id, dst_id)], options=options))
    # bit-identical, the garbage included: every range the source did not send was zeroed
    assert sha256_file(destination) == sha256_file(source)
    # ...by unmapping (a loop device guarantees that an unmapped range reads as zeros: it
    # punches a hole in its file), so the thin destination holds only the data
    assert allocated(destination) <= result.bytes_data + MiB
    assert result.verified and result.bytes_logical == SIZE
    # a block device has no holes: the source reports all of it allocated...
    assert result.bytes_allocated == SIZE
    # ...and yet only non-zero data crossed: all-zero chunks (the 16 MiB of allocated zeros
    # and the 239 MiB the file leaves unallocated) were skipped at the source
    assert NONZERO <= result.bytes_data <= NONZERO + 128 * 1024
    assert result.bytes_wire < result.bytes_data + 128 * 1024
    if reread:  # the full re-read of the destination found it identical too
        assert result.verify_seconds > 0
