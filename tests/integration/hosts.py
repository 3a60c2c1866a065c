"""The devcloud's conversion hosts as tests handle them: more pairs, a host that goes away."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from tests.integration.conftest import DEVCLOUD, Devcloud


def devcloud_up(devcloud: Devcloud, pairs: int) -> None:
    env = {**os.environ, "DEVCLOUD_STATE": str(devcloud.state)}
    env["DEVCLOUD_CONVERSION_PAIRS"] = str(pairs)
    subprocess.run([str(DEVCLOUD), "up"], check=True, env=env, timeout=1500)


def kill_sshd(devcloud: Devcloud, key: str) -> None:
    """Stop one devcloud sshd and every connection it serves (each runs in its own
    session, so the listener's process group is not enough): as if the host went away."""
    pid = int((devcloud.state / "run" / f"sshd-{key}.pid").read_text().split()[0])
    parents: dict[int, int] = {}
    for candidate in Path("/proc").iterdir():
        if candidate.name.isdigit():
            try:
                stat = (candidate / "stat").read_text()
            except OSError:
                continue
            parents[int(candidate.name)] = int(stat.rpartition(")")[2].split()[1])
    family = [pid]  # the listener and all its descendants (connections, their commands)
    for member in family:
        family.extend(child for child, parent in parents.items() if parent == member)
    for member in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)
