"""An in-memory cloud for the conversion host deploy logic (the devcloud test runs the real
one): the same methods as ``CloudOps``, every call counted."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tenantshift.engine.convhosts import reach
from tenantshift.engine.convhosts.cloud import MARKER, SERVER_MARKER_KEY, DeployError
from tenantshift.engine.convhosts.hostkeys import BEGIN, END
from tenantshift.manifest import Manifest
from tenantshift.manifest.schema import Deploy

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAH8ng/ENdqWiGFL/leFHwiwIDw1Z2z6ObaeWMRnDj+o"
_ids = itertools.count(1)


class FakeCloud:
    def __init__(self, side: str, *, console_keys: bool = True) -> None:
        self.side, self.label = side, side
        self.console_keys = console_keys
        self.keypairs: dict[str, str] = {}
        self.groups: dict[str, Any] = {}
        self.rules: list[tuple[str, str]] = []
        self.servers_: dict[str, Any] = {}
        self.ips: dict[str, Any] = {}
        self.calls: Counter[str] = Counter()
        self.created: list[dict[str, Any]] = []
        self.fail_after: str | None = None  # "create_server": raise once it has happened

    def _maybe_fail(self, call: str) -> None:
        self.calls[call] += 1
        if self.fail_after == call:
            self.fail_after = None
            raise KeyboardInterrupt(f"killed after {call}")

    def network(self, name: str, field: str) -> Any:
        return SimpleNamespace(id=f"net-{name}", name=name)

    def keypair(self, name: str) -> Any:
        key = self.keypairs.get(name)
        return None if key is None else SimpleNamespace(name=name, public_key=key)

    def create_keypair(self, name: str, public_key: str) -> Any:
        self.keypairs[name] = public_key
        self._maybe_fail("create_keypair")

    def delete_keypair(self, name: str) -> None:
        self.calls["delete_keypair"] += 1
        self.keypairs.pop(name, None)

    def security_groups(self, name: str) -> list[Any]:
        return [g for g in self.groups.values() if g.name == name]

    def security_group_by_id(self, group_id: str) -> Any:
        return self.groups.get(group_id)

    def create_security_group(self, name: str, description: str = "") -> Any:
        group = SimpleNamespace(id=f"sg-{next(_ids)}", name=name, description=description or MARKER)
        self.groups[group.id] = group
        self._maybe_fail("create_security_group")
        return group

    def ensure_ssh_rules(self, group: Any, cidrs: list[str]) -> list[str]:
        added = [c for c in cidrs if (group.id, c) not in self.rules]
        self.rules += [(group.id, c) for c in added]
        return added

    def delete_security_group(self, group_id: str) -> None:
        self.calls["delete_security_group"] += 1
        self.groups.pop(group_id, None)

    def servers(self, name: str) -> list[Any]:
        return [s for s in self.servers_.values() if s.name == name]

    def is_ours(self, server: Any) -> bool:
        return bool(server.metadata.get(SERVER_MARKER_KEY) == self.side)

    def create_server(self, name: str, deploy: Deploy, keypair: str, group_id: str) -> Any:
        request = {"name": name, "keypair": keypair, "group": group_id, **deploy.model_dump()}
        self.created.append(request)
        server = SimpleNamespace(
            id=f"srv-{next(_ids)}",
            name=name,
            status="BUILD",
            metadata={**deploy.metadata, SERVER_MARKER_KEY: self.side},
        )
        self.servers_[server.id] = server
        self._maybe_fail("create_server")
        return server

    def wait_active(self, server: Any, timeout: float) -> Any:
        server.status = "ACTIVE"
        return server

    def delete_server(self, server_id: str, timeout: float) -> None:
        self.calls["delete_server"] += 1
        self.servers_.pop(server_id, None)
        for ip in self.ips.values():
            if ip.port_id == f"port-{server_id}":
                ip.port_id = None

    def console_log(self, server: Any) -> str:
        return f"{BEGIN}\n{HOST_KEY} root@x\n{END}\n" if self.console_keys else "booting\n"

    def server_port(self, server: Any, network_id: str) -> Any:
        return SimpleNamespace(id=f"port-{server.id}", fixed_ips=[{"ip_address": "10.0.0.5"}])

    @staticmethod
    def fixed_ip(port: Any) -> str:
        return str(port.fixed_ips[0]["ip_address"])

    def our_floating_ips(self, server_name: str) -> list[Any]:
        want = f"{MARKER}:{self.side}:{server_name}"
        return [ip for ip in self.ips.values() if ip.description == want]

    def create_floating_ip(self, server_name: str, network_id: str, port_id: str) -> Any:
        ip = SimpleNamespace(
            id=f"fip-{next(_ids)}",
            floating_ip_address=f"203.0.113.{len(self.ips) + 10}",
            port_id=port_id,
            network=network_id,
            description=f"{MARKER}:{self.side}:{server_name}",
        )
        self.ips[ip.id] = ip
        self._maybe_fail("create_floating_ip")
        return ip

    def attach_floating_ip(self, ip: Any, port_id: str) -> Any:
        ip.port_id = port_id
        return ip

    def delete_floating_ip(self, ip_id: str) -> None:
        self.calls["delete_floating_ip"] += 1
        self.ips.pop(ip_id, None)


def fake_reach(monkeypatch: pytest.MonkeyPatch, offered: str = HOST_KEY) -> list[tuple[Any, ...]]:
    """SSH answers at once, offering ``offered``; logins are recorded, not made."""
    logins: list[tuple[Any, ...]] = []

    async def offered_host_key(address: str, port: int, timeout: float) -> str:
        return offered

    async def login_works(*args: Any) -> None:
        logins.append(args)

    monkeypatch.setattr(reach, "offered_host_key", offered_host_key)
    monkeypatch.setattr(reach, "login_works", login_works)
    monkeypatch.setattr(reach, "public_key_of", lambda key_file: "ssh-ed25519 AAAAclient")
    return logins


def deployed_manifest(tmp_path: Path, **deploy: Any) -> Manifest:
    spec = {"image": "conv", "flavor": "m1", "network": "net", "floating_ip_network": "ext"}
    spec.update(deploy)
    host = {"key_file": str(tmp_path / "id"), "deploy": spec}
    body = {
        "version": 1,
        "source": {"cloud": "a"},
        "destination": {"cloud": "b"},
        "conversion_hosts": {
            "source": {**host, "server": "conv-src"},
            "destination": {**host, "server": "conv-dst"},
        },
        "options": {"state_dir": str(tmp_path / "state")},
    }
    return Manifest.model_validate(body)


def clouds(**kwargs: Any) -> tuple[dict[str, FakeCloud], Any]:
    made = {side: FakeCloud(side, **kwargs) for side in ("source", "destination")}
    return made, lambda manifest, side: made[side]


__all__ = ["HOST_KEY", "DeployError", "FakeCloud", "clouds", "deployed_manifest", "fake_reach"]
