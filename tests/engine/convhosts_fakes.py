"""An in-memory cloud for the conversion host deploy logic (the devcloud test runs the real
one): a ``ConversionHostOps``, every call counted."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tenantshift.engine.convhosts import reach
from tenantshift.engine.convhosts.deploy import DeployError, OpsFor
from tenantshift.engine.convhosts.hostkeys import BEGIN, END
from tenantshift.manifest import Manifest
from tenantshift.providers.convhost_ops import (
    MARKER,
    SERVER_MARKER_KEY,
    ConversionHostOps,
    FloatingIp,
    HostServer,
    Keypair,
    Port,
    SecurityGroup,
    ServerSpec,
)

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAH8ng/ENdqWiGFL/leFHwiwIDw1Z2z6ObaeWMRnDj+o"
_ids = itertools.count(1)


class FakeCloud:
    def __init__(self, side: str, *, console_keys: bool = True) -> None:
        self.side, self.label = side, side
        self.console_keys = console_keys
        self.keypairs: dict[str, str] = {}
        self.groups: dict[str, SecurityGroup] = {}
        self.rules: list[tuple[str, str]] = []
        self.servers_: dict[str, HostServer] = {}
        self.ips: dict[str, FloatingIp] = {}
        self.calls: Counter[str] = Counter()
        self.created: list[ServerSpec] = []
        self.fail_after: str | None = None  # "create_server": raise once it has happened

    def _maybe_fail(self, call: str) -> None:
        self.calls[call] += 1
        if self.fail_after == call:
            self.fail_after = None
            raise KeyboardInterrupt(f"killed after {call}")

    def find_image(self, name_or_id: str) -> str | None:
        return f"img-{name_or_id}"

    def find_flavor(self, name_or_id: str) -> str | None:
        return f"flv-{name_or_id}"

    def find_network(self, name_or_id: str) -> str | None:
        return f"net-{name_or_id}"

    def keypair(self, name: str) -> Keypair | None:
        key = self.keypairs.get(name)
        return None if key is None else Keypair(name=name, public_key=key)

    def create_keypair(self, name: str, public_key: str) -> Keypair:
        self.keypairs[name] = public_key
        self._maybe_fail("create_keypair")
        return Keypair(name=name, public_key=public_key)

    def delete_keypair(self, name: str) -> None:
        self.calls["delete_keypair"] += 1
        self.keypairs.pop(name, None)

    def security_groups(self, name: str) -> list[SecurityGroup]:
        return [g for g in self.groups.values() if g.name == name]

    def security_group(self, group_id: str) -> SecurityGroup | None:
        return self.groups.get(group_id)

    def create_security_group(self, name: str, description: str = "") -> SecurityGroup:
        group = SecurityGroup(id=f"sg-{next(_ids)}", name=name, description=description or MARKER)
        self.groups[group.id] = group
        self._maybe_fail("create_security_group")
        return group

    def ensure_ssh_rules(self, group_id: str, cidrs: list[str]) -> list[str]:
        added = [c for c in cidrs if (group_id, c) not in self.rules]
        self.rules += [(group_id, c) for c in added]
        return added

    def delete_security_group(self, group_id: str) -> None:
        self.calls["delete_security_group"] += 1
        self.groups.pop(group_id, None)

    def servers(self, name: str) -> list[HostServer]:
        return [s for s in self.servers_.values() if s.name == name]

    def is_ours(self, server: HostServer) -> bool:
        return server.metadata.get(SERVER_MARKER_KEY) == self.side

    def create_server(self, spec: ServerSpec) -> HostServer:
        self.created.append(spec)
        server = HostServer(
            id=f"srv-{next(_ids)}",
            name=spec.name,
            status="BUILD",
            metadata={**spec.metadata, SERVER_MARKER_KEY: self.side},
        )
        self.servers_[server.id] = server
        self._maybe_fail("create_server")
        return server

    def wait_active(self, server_id: str, timeout: float) -> HostServer:
        server = dataclasses.replace(self.servers_[server_id], status="ACTIVE")
        self.servers_[server_id] = server
        return server

    def delete_server(self, server_id: str, timeout: float) -> None:
        self.calls["delete_server"] += 1
        self.servers_.pop(server_id, None)
        for ip in list(self.ips.values()):
            if ip.port_id == f"port-{server_id}":
                self.ips[ip.id] = dataclasses.replace(ip, port_id=None)

    def console_log(self, server_id: str) -> str:
        return f"{BEGIN}\n{HOST_KEY} root@x\n{END}\n" if self.console_keys else "booting\n"

    def server_port(self, server_id: str, network_id: str) -> Port | None:
        return Port(id=f"port-{server_id}", fixed_ips=("10.0.0.5",))

    def our_floating_ips(self, server_name: str) -> list[FloatingIp]:
        want = f"{MARKER}:{self.side}:{server_name}"
        return [ip for ip in self.ips.values() if ip.description == want]

    def create_floating_ip(self, server_name: str, network_id: str, port_id: str) -> FloatingIp:
        ip = FloatingIp(
            id=f"fip-{next(_ids)}",
            floating_ip_address=f"203.0.113.{len(self.ips) + 10}",
            port_id=port_id,
            floating_network_id=network_id,
            description=f"{MARKER}:{self.side}:{server_name}",
        )
        self.ips[ip.id] = ip
        self._maybe_fail("create_floating_ip")
        return ip

    def attach_floating_ip(self, ip_id: str, port_id: str) -> FloatingIp:
        ip = dataclasses.replace(self.ips[ip_id], port_id=port_id)
        self.ips[ip_id] = ip
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


def clouds(**kwargs: Any) -> tuple[dict[str, FakeCloud], OpsFor]:
    made = {side: FakeCloud(side, **kwargs) for side in ("source", "destination")}

    def ops_for(manifest: Manifest, side: str) -> ConversionHostOps:
        return made[side]

    return made, ops_for


__all__ = ["HOST_KEY", "DeployError", "FakeCloud", "clouds", "deployed_manifest", "fake_reach"]
