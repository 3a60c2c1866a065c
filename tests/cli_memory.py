"""The command line on memory clouds: the fixtures the CLI tests share (test_cli.py, the
error-handling tests, the graph and report commands in tests/views).

``clouds`` patches a memory provider in wherever the CLI opens one; ``manifest`` is a manifest
file whose source password comes from the environment (to prove it never reaches output).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tenantshift import cli
from tenantshift.engine import commands
from tenantshift.manifest import CloudRef
from tenantshift.providers.memory import MemoryProvider
from tests.engine.topology import build_source

SECRET = "s3cr3t-Pa55word"

MANIFEST = """\
version: 1
source:
  auth:
    auth_url: https://source.example:5000/v3
    username: migrator
    password: "{{ env.TENANTSHIFT_SRC_PASSWORD }}"
    project_name: src
destination:
  cloud: dst
"""

runner = CliRunner()


@pytest.fixture()
def clouds(monkeypatch: pytest.MonkeyPatch) -> dict[str, MemoryProvider]:
    pair = {"source": build_source(networks=3, groups=2), "destination": MemoryProvider("dst")}

    def fake_open(ref: CloudRef, label: str, **_: object) -> MemoryProvider:
        return pair[label]

    monkeypatch.setattr(cli, "open_provider", fake_open)
    monkeypatch.setattr(commands, "open_provider", fake_open)
    monkeypatch.setenv("TENANTSHIFT_SRC_PASSWORD", SECRET)
    return pair


@pytest.fixture()
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "migration.yaml"
    path.write_text(MANIFEST)
    return path


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli.app, list(args))
    return result.exit_code, result.output
