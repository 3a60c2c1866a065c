"""Review M3 and L10: a copy's key reads only the volumes its forced command names, found
by their exact by-id names; request fields are bounded; volume ids are ids."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tenantshift.transfer import VolumeCopy
from tenantshift.transfer.agent import extents, framing, source
from tenantshift.transfer.keyline import forced_command

from .fakes import DST_ID, SRC_ID, conversion_host, last, request, run_pull, script, zip_path
from .helpers import MiB, make_volume

OTHER = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


@pytest.fixture()
def by_id(tmp_path: Path) -> Path:
    """A by-id directory with the volume, the host's own disks and odd entries."""
    d = tmp_path / "by-id"
    d.mkdir()
    make_volume(tmp_path / "vol", 8 * MiB, [(0, "random", MiB)])
    (d / f"virtio-{SRC_ID[:20]}").symlink_to(tmp_path / "vol")
    (tmp_path / "root.disk").write_bytes(b"ROOTDISK: /etc/shadow, ssh host keys")
    (d / "virtio-QM00001").symlink_to(tmp_path / "root.disk")
    (d / f"dm-name-vg0-home-{OTHER[:20]}").symlink_to(tmp_path / "root.disk")  # suffix match
    (d / f"virtio-{OTHER[:20]}").symlink_to(tmp_path / "root.disk")
    return d


def _serve(by_id: Path, allowed: list[str], **req: Any) -> list[framing.Record]:
    out = io.BytesIO()
    source.serve(dict({"volume_id": SRC_ID}, **req), out, str(by_id), allowed)
    reader = framing.Reader(io.BytesIO(out.getvalue()))
    reader.magic()
    records = []
    while True:
        rec = reader.read()
        records.append(framing.Record(rec.kind, rec.offset, rec.length, bytes(rec.payload)))
        if rec.kind in (framing.END, framing.ERROR):
            return records


def test_only_the_volumes_named_by_the_forced_command_are_served(by_id: Path) -> None:
    assert _serve(by_id, [SRC_ID])[-1].kind == framing.END
    records = _serve(by_id, [SRC_ID], volume_id=OTHER)
    assert records[0].kind == framing.ERROR and records[0].json()["kind"] == "forbidden"
    for vid in ("QM00001", "vg0-home"):  # not even ids
        assert _serve(by_id, [vid], volume_id=vid)[0].json()["kind"] == "protocol"


def test_devices_are_found_by_their_exact_by_id_names(by_id: Path, tmp_path: Path) -> None:
    assert extents.find_device(str(by_id), SRC_ID) == str(tmp_path / "vol")
    (by_id / f"virtio-{OTHER[:20]}").unlink()
    # only the suffix-matching dm name is left: not a by-id name of the volume
    with pytest.raises(extents.DeviceNotFound, match="no device"):
        extents.find_device(str(by_id), OTHER)
    (by_id / f"scsi-0QEMU_QEMU_HARDDISK_{OTHER}").symlink_to(tmp_path / "vol")
    assert extents.find_device(str(by_id), OTHER) == str(tmp_path / "vol")


@pytest.mark.parametrize("target", ["/dev/null", "/tmp", "/dev/zero"])
def test_directories_and_character_devices_are_not_volumes(by_id: Path, target: str) -> None:
    (by_id / f"virtio-{OTHER[:20]}").unlink()
    (by_id / f"virtio-{OTHER[:20]}").symlink_to(target)
    with pytest.raises(extents.DeviceNotFound, match="not a block device"):
        extents.find_device(str(by_id), OTHER)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("chunk_size", 0),
        ("chunk_size", 1 << 40),
        ("chunk_size", 100000),  # not a multiple of 64 KiB
        ("start", -4 * MiB),
        ("start", "0"),
        ("rate_limit", 1),  # would pin a root process for days
        ("workers", 10**6),
        ("codecs", "zstd"),
        ("hash", "md5"),
    ],
)
def test_request_fields_are_bounded(by_id: Path, field: str, value: Any) -> None:
    records = _serve(by_id, [SRC_ID], **{field: value})
    assert records[0].kind == framing.ERROR
    assert records[0].json()["kind"] == "protocol" and field in records[0].json()["message"]


def test_the_forced_command_names_the_volumes_and_serve_requires_them(by_id: Path) -> None:
    host = conversion_host(device_dir=str(by_id))
    command = forced_command(host, "/tmp/tenantshift-transfer-x", 0, [SRC_ID, OTHER])
    assert command.endswith(f"--volume-id {SRC_ID} --volume-id {OTHER}")
    with pytest.raises(ValueError):
        forced_command(host, "/tmp/tenantshift-transfer-x", 0, ["../../etc"])
    run = subprocess.run(
        [sys.executable, str(zip_path()), "serve", "--device-dir", str(by_id)],
        input=b"{}\n", capture_output=True, check=False,
    )  # fmt: skip
    assert run.returncode == 2 and b"--volume-id" in run.stderr


@pytest.mark.parametrize("bad", ["../evil", "", "A" * 8, "x" * 65, "1/2", "abc\n"])
def test_volume_ids_are_validated(bad: str) -> None:
    with pytest.raises(ValueError, match="volume id"):
        VolumeCopy(bad, DST_ID)
    with pytest.raises(ValueError, match="volume id"):
        VolumeCopy(SRC_ID, bad)


def test_the_pull_agent_refuses_path_like_ids_before_touching_files(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    req = request("/bin/false", tmp_path, state_dir, source_volume_id="../../evil")
    status, lines = run_pull(req)
    assert status == 2 and last(lines)["kind"] == "protocol"
    assert not state_dir.exists()
    assert not [p for p in tmp_path.rglob("*evil*")]
    assert os.listdir(tmp_path) == ["tenantshift-transfer-test"]  # made by the fake session
    assert os.listdir(tmp_path / "tenantshift-transfer-test") == ["known_hosts"]


def test_the_copy_key_lives_in_the_run_directory_only_while_the_copy_runs(
    tmp_path: Path,
) -> None:
    # Where a killed pull leaves the key matters: the engine journals and sweeps run
    # directories, not arbitrary temporary directories.
    make_volume(tmp_path / extents.by_id_names(DST_ID)[0], MiB, [])
    seen = tmp_path / "seen"
    fake_ssh = (
        'prev=; for a; do [ "$prev" = -i ] && { echo "$a" > ' + str(seen) + "; "
        'cp "$a" ' + str(seen) + ".key; }; prev=$a; done; exit 255"
    )
    req = request(script(tmp_path, fake_ssh), tmp_path, tmp_path / "state")
    status, lines = run_pull(req)
    assert status != 0 and last(lines)["type"] == "error"
    key_path = Path(seen.read_text().strip())
    assert key_path.parent == tmp_path / "tenantshift-transfer-test"
    assert (Path(str(seen) + ".key")).read_text() == req["ssh"]["key"]
    assert not key_path.exists()
