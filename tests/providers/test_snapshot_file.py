"""Saved snapshot files: private when written, clean errors for files that are not snapshots."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tenantshift.providers.base import ReadOnlyError
from tenantshift.providers.memory import MemoryProvider
from tenantshift.providers.snapshot_file import load_snapshot, save_snapshot


@pytest.mark.parametrize("content", ["[]", '"x"', "3", "null"])
def test_a_json_value_that_is_not_an_object_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "snap.json"
    path.write_text(content)
    with pytest.raises(ReadOnlyError, match="expected a JSON object"):
        load_snapshot(path)


def test_deeply_nested_json_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "snap.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ReadOnlyError, match="nested too deeply"):
        load_snapshot(path)


def test_snapshot_written_private_without_following_a_planted_temporary(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    path = tmp_path / "snap.json"
    (tmp_path / "snap.json.tmp").symlink_to(victim)
    snapshot = MemoryProvider("src").snapshot()
    save_snapshot(snapshot, path)
    assert victim.read_text() == "precious"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_snapshot(path) == snapshot


def test_a_snapshot_saved_before_a_field_existed_reads_it_as_its_default(tmp_path: Path) -> None:
    """A network's ``tags`` (issue 12) absent from an older file is ``[]``, as a fresh snapshot
    reads it, so a plan against the file shows no tags change."""
    import json

    cloud = MemoryProvider("old")
    cloud.create("network", {"name": "n", "tags": []}, None)
    path = tmp_path / "old.json"
    save_snapshot(cloud.snapshot(), path)
    body = json.loads(path.read_text())
    for res in body["resources"].values():
        res["params"].pop("tags", None)
    path.write_text(json.dumps(body))
    loaded = load_snapshot(path)
    assert loaded.resources["network.n"].params["tags"] == []
    assert loaded.resources == cloud.snapshot().resources
