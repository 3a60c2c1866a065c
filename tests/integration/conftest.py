"""The session-wide `devcloud` fixture: a running local OpenStack for integration tests.

Uses the devcloud already running, or starts it (`devcloud/devcloud up` is idempotent and
returns in a few seconds when everything is up), so a CI run shares one instance across all
test modules. Modules that need it declare `pytestmark = pytest.mark.devcloud`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The volume helpers were in a test module: their asserts keep pytest's detailed report.
pytest.register_assert_rewrite("tests.integration.volumes")

ROOT = Path(__file__).resolve().parents[2]
DEVCLOUD = ROOT / "devcloud" / "devcloud"


@dataclass(frozen=True)
class ConversionHost:
    """One tenant's conversion host: a fake-driver server plus a real sshd on loopback."""

    server: str
    server_id: str
    cloud: str
    project: str
    address: str
    port: int
    user: str
    key_file: str
    host_key: str
    known_hosts_line: str
    device_dir: str
    known_hosts: str
    python: str


@dataclass(frozen=True)
class Devcloud:
    state: Path
    clouds_yaml: Path
    source_host: ConversionHost
    destination_host: ConversionHost

    @property
    def conversion_hosts_yaml(self) -> Path:
        return self.state / "conversion-hosts.yaml"

    @property
    def seed_json(self) -> Path:
        return self.state / "seed.json"

    def connect(self, cloud: str) -> Any:
        """An openstacksdk connection to devcloud-src, devcloud-dst or devcloud-admin."""
        import openstack

        return openstack.connect(cloud=cloud)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(DEVCLOUD), *args],
            check=True,
            text=True,
            env={**os.environ, "DEVCLOUD_STATE": str(self.state)},
        )


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``tenantshift ARGS`` as a user runs it (a new process), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "tenantshift", *args],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _state_dir() -> Path:
    return Path(os.environ.get("DEVCLOUD_STATE") or ROOT / ".devcloud").resolve()


@pytest.fixture(scope="session")
def devcloud() -> Iterator[Devcloud]:
    state = _state_dir()
    env = {**os.environ, "DEVCLOUD_STATE": str(state)}
    # `up` both starts a stopped devcloud and repairs a partial one (e.g. a conversion host
    # lost with a nova-compute restart); on a healthy one it only checks, in seconds.
    subprocess.run([str(DEVCLOUD), "up"], check=True, env=env, timeout=1500)
    # Tests of the provider read the seeded source tenant: seed once per fresh cloud (under
    # devcloud's lock, so concurrent sessions do not seed twice).
    subprocess.run([str(DEVCLOUD), "seed", "--if-missing"], check=True, env=env, timeout=900)
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(state / "clouds.yaml")
    os.environ["DEVCLOUD_STATE"] = str(state)
    # conversion-hosts.yaml holds the manifest keys only; the .json adds ids and cloud names.
    hosts = json.loads((state / "conversion-hosts.json").read_text())
    yield Devcloud(
        state=state,
        clouds_yaml=state / "clouds.yaml",
        source_host=ConversionHost(**hosts["source"]),
        destination_host=ConversionHost(**hosts["destination"]),
    )
