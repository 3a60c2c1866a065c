"""Where everything lives and which ports it uses.

One state directory holds all of devcloud's mutable data (venv, databases, configs, logs, volume
files, pid files), so `rm -rf .devcloud` is a complete uninstall and nothing leaks into /etc.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEVCLOUD_DIR = Path(__file__).resolve().parent.parent  # <repo>/devcloud
REPO_DIR = DEVCLOUD_DIR.parent
LOCK_FILE = DEVCLOUD_DIR / "requirements.lock"
EXT_DIR = DEVCLOUD_DIR / "ext"  # the plugin package installed into the devcloud venv

HOST = "127.0.0.1"
REGION = "RegionOne"
# A local throw-away cloud: fixed credentials keep clouds.yaml and configs reproducible.
ADMIN_PASSWORD = "devcloud-admin"
SERVICE_PASSWORD = "devcloud-service"
DB_USER = "devcloud"
DB_PASSWORD = "devcloud-db"
RABBIT_USER = "devcloud"
RABBIT_PASSWORD = "devcloud-rabbit"

# Ports away from the OpenStack defaults so a devcloud never collides with another cloud's
# well-known ports on a developer machine. DEVCLOUD_PORT_OFFSET shifts them all, so a second
# devcloud (another DEVCLOUD_STATE) can run beside the first, e.g. to time a fresh install.
PORT_OFFSET = int(os.environ.get("DEVCLOUD_PORT_OFFSET") or 0)
_BASE_PORTS: dict[str, int] = {
    "mariadb": 13306,
    "epmd": 14369,
    "rabbitmq": 15673,
    "rabbitmq-dist": 25673,
    "keystone": 15000,
    "glance": 19292,
    "placement": 18778,
    "nova-api": 18774,
    "neutron": 19696,
    "cinder-api": 18776,
    "sshd-src": 2221,
    "sshd-dst": 2222,
    # Pairs 2..MAX_PAIRS of conversion hosts (DEVCLOUD_CONVERSION_PAIRS): 2223/2224, ...
    **{f"sshd-{side}{k}": 2221 + 2 * (k - 1) + i
       for k in range(2, 9) for i, side in enumerate(("src", "dst"))},
}
PORTS = {name: port + PORT_OFFSET for name, port in _BASE_PORTS.items()}

# DEVCLOUD_CONVERSION_PAIRS=N: `up` runs N pairs of conversion hosts (an sshd and a
# `conversion-host`, `conversion-host-2`, ... server per tenant), and stops any beyond N.
MAX_PAIRS = 8


def conversion_pairs() -> int:
    raw = os.environ.get("DEVCLOUD_CONVERSION_PAIRS") or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAIRS:
        raise SystemExit(f"DEVCLOUD_CONVERSION_PAIRS must be 1..{MAX_PAIRS}, not {raw!r}")
    return int(raw)


def neutron_workers() -> int:
    """DEVCLOUD_NEUTRON_WORKERS=N: Neutron's API in N processes (default 1). One Python process
    answers on one core whatever its threads; the control-plane benchmark asks for more to see
    how far apply's concurrency goes when the server is not the limit. Applies when Neutron
    starts (`devcloud restart neutron`)."""
    raw = os.environ.get("DEVCLOUD_NEUTRON_WORKERS") or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= 8:
        raise SystemExit(f"DEVCLOUD_NEUTRON_WORKERS must be 1..8, not {raw!r}")
    return int(raw)


def sshd_keys(pairs: int) -> list[str]:
    """The sshd keys of pairs 1..pairs: src, dst, src2, dst2, ..."""
    return [f"{side}{k if k > 1 else ''}" for k in range(1, pairs + 1) for side in ("src", "dst")]


# The two tenants. `key` is how the harness names per-tenant things (cloud names, sshd).
TENANTS: dict[str, dict[str, str]] = {
    "src": {"project": "src-tenant", "user": "src-user", "password": "src-password"},
    "dst": {"project": "dst-tenant", "user": "dst-user", "password": "dst-password"},
}


@dataclass(frozen=True)
class State:
    """Paths under the state directory (default <repo>/.devcloud, env DEVCLOUD_STATE)."""

    root: Path

    @classmethod
    def from_env(cls) -> State:
        raw = os.environ.get("DEVCLOUD_STATE") or str(REPO_DIR / ".devcloud")
        return cls(Path(raw).resolve())

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def markers(self) -> Path:
        return self.root / "markers"

    @property
    def mysql_data(self) -> Path:
        return self.root / "mysql"

    @property
    def mysql_socket(self) -> Path:
        return self.run / "mysqld.sock"

    @property
    def rabbit(self) -> Path:
        return self.root / "rabbitmq"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def hosts(self) -> Path:
        return self.root / "hosts"

    @property
    def ssh(self) -> Path:
        return self.root / "ssh"

    @property
    def clouds_yaml(self) -> Path:
        return self.root / "clouds.yaml"

    @property
    def conversion_hosts(self) -> Path:
        return self.root / "conversion-hosts.yaml"

    @property
    def seed_json(self) -> Path:
        return self.root / "seed.json"

    def data(self, service: str) -> Path:
        return self.root / service

    def log(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def ensure(self) -> None:
        for d in (self.root, self.etc, self.logs, self.run, self.markers, self.volumes,
                  self.hosts, self.ssh):
            d.mkdir(parents=True, exist_ok=True)


def db_url(database: str) -> str:
    return (f"mysql+pymysql://{DB_USER}:{DB_PASSWORD}@{HOST}:{PORTS['mariadb']}/{database}"
            "?charset=utf8mb4")


def transport_url() -> str:
    return f"rabbit://{RABBIT_USER}:{RABBIT_PASSWORD}@{HOST}:{PORTS['rabbitmq']}/"


def keystone_url() -> str:
    return f"http://{HOST}:{PORTS['keystone']}"
