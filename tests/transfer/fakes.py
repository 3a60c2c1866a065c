"""The real pull agent in-process, with its ``ssh`` replaced by a script: either the real
``agent.pyz serve`` (exactly what the forced command runs) or a crafted stream."""

from __future__ import annotations

import io
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from tenantshift.manifest.schema import ConversionHost
from tenantshift.transfer.agent import pull
from tenantshift.transfer.bundle import agent_zip

CHUNK = 4 * 1024 * 1024
SRC_ID = "11111111-2222-3333-4444-555555555555"
DST_ID = "66666666-7777-8888-9999-000000000000"

_zip: list[Path] = []


def zip_path() -> Path:
    if not _zip:
        path = Path(tempfile.mkdtemp()) / "agent.pyz"
        path.write_bytes(agent_zip())
        _zip.append(path)
    return _zip[0]


def script(tmp_path: Path, body: str, name: str = "fake-ssh") -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def serving_ssh(tmp_path: Path, device_dir: Path, *volume_ids: str) -> str:
    """An ``ssh`` that runs the real source agent, as the forced command would."""
    argv = [sys.executable, str(zip_path()), "serve", "--device-dir", str(device_dir)]
    for vid in volume_ids or (SRC_ID,):
        argv += ["--volume-id", vid]
    return script(tmp_path, "exec " + shlex.join(argv))


def crafted_ssh(tmp_path: Path, stream: bytes) -> str:
    """An ``ssh`` whose 'source' sends ``stream`` whatever it is asked."""
    data = tmp_path / "crafted.stream"
    data.write_bytes(stream)
    return script(tmp_path, f"cat >/dev/null; exec cat {shlex.quote(str(data))}")


def request(
    ssh_command: str, device_dir: Path, state_dir: Path, **overrides: Any
) -> dict[str, Any]:
    # The run directory the session would have made: the pull writes the copy's key there.
    run_dir = state_dir.parent / "tenantshift-transfer-test"
    run_dir.mkdir(mode=0o700, exist_ok=True)
    (run_dir / "known_hosts").touch()
    req: dict[str, Any] = {
        "source_volume_id": SRC_ID,
        "destination_volume_id": DST_ID,
        "device_dir": str(device_dir),
        "state_dir": str(state_dir),
        "chunk_size": CHUNK,
        "hash": "sha256",
        "codecs": ["none"],
        "checkpoint_bytes": 1024 * 1024,
        "progress_interval": 0.0,
        "ssh": {
            "command": ssh_command,
            "key": "not a key: the fake ssh ignores it",
            "known_hosts": str(run_dir / "known_hosts"),
            "host_key_alias": "x",
            "ciphers": "aes128-gcm@openssh.com",
            "address": "127.0.0.1",
            "port": 22,
            "user": "root",
        },
    }
    req.update(overrides)
    return req


def run_pull(req: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """Exit status and the JSON lines the orchestrator would read (raises if the agent
    died with an exception, which is what the orchestrator would see as a traceback)."""
    out = io.StringIO()
    status = pull.pull(json.loads(json.dumps(req)), out)
    return status, [json.loads(line) for line in out.getvalue().splitlines()]


def last(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return [m for m in lines if m["type"] in ("result", "error")][-1]


def conversion_host(**overrides: Any) -> ConversionHost:
    fields: dict[str, Any] = {
        "address": "127.0.0.1",
        "user": "root",
        "key_file": "/dev/null",
        "host_key_policy": "insecure-skip",
        "python": sys.executable,
    }
    fields.update(overrides)
    return ConversionHost.model_validate(fields)
