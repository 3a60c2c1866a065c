"""`tenantshift snapshot` of a real project, then an offline plan against the file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.devcloud


def tenantshift(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenantshift", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def changes(plan: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["address"], c["action"]) for c in plan["changes"]]


def test_an_offline_plan_against_a_saved_snapshot_equals_the_live_plan(
    devcloud: Any, tmp_path: Path
) -> None:
    saved = tmp_path / "src.json"
    taken = tenantshift("snapshot", "--cloud", "devcloud-src", "-o", str(saved), "--verbose")
    assert taken.returncode == 0, taken.stderr
    assert "API calls" in taken.stdout
    body = json.loads(saved.read_text())
    assert body["format_version"] == 1
    assert "network.app-net" in body["resources"]
    assert "password" not in saved.read_text()

    live = tmp_path / "live.yaml"
    live.write_text(
        "version: 1\nsource: {cloud: devcloud-src}\ndestination: {cloud: devcloud-dst}\n"
    )
    offline = tmp_path / "offline.yaml"
    offline.write_text(
        "version: 1\nsource: {snapshot: src.json}\ndestination: {cloud: devcloud-dst}\n"
    )

    planned_live = tenantshift("plan", "-m", str(live), "--json")
    planned_offline = tenantshift("plan", "-m", str(offline), "--json")

    assert planned_live.returncode == planned_offline.returncode == 0, planned_offline.stderr
    assert changes(json.loads(planned_offline.stdout)) == changes(json.loads(planned_live.stdout))
