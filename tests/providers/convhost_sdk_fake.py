"""A fake openstacksdk connection holding what deploying a conversion host touches (Nova
keypairs, servers and console; Neutron groups, rules, ports, floating IPs; Glance images), in
memory, with faults to inject: the real ``OpenStackConversionHostOps`` runs over it, through
the provider's ``Caller``."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import requests
from openstack import exceptions as sdk_exc

from tenantshift.engine.convhosts.hostkeys import BEGIN, END
from tenantshift.providers.openstack import OpenStackProvider, RetryPolicy
from tenantshift.providers.openstack.convhost_ops import OpenStackConversionHostOps
from tenantshift.providers.openstack.kinds import Wait

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAH8ng/ENdqWiGFL/leFHwiwIDw1Z2z6ObaeWMRnDj+o"


def http_error(status: int, message: str = "boom") -> Exception:
    """The exception openstacksdk raises for an error response of that status."""
    response = requests.Response()
    response.status_code = status
    response.headers["content-type"] = "application/json"
    response._content = json.dumps({"error": {"message": message}}).encode()
    try:
        sdk_exc.raise_from_response(response)
    except sdk_exc.SDKException as exc:
        return exc
    raise AssertionError("no exception raised")


class _Proxy:
    """Methods are looked up on the ``SdkFake``: ``conn.compute.create_server`` is
    ``SdkFake.create_server``, after the faults queued for that name."""

    def __init__(self, fake: SdkFake) -> None:
        self._fake = fake

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._fake, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self._fake.calls[name] += 1
            queued = self._fake.faults.get(name)
            if queued:
                fault = queued.pop(0)
                if fault.lost:  # the cloud did it, the answer never came back
                    method(*args, **kwargs)
                raise fault.error
            return method(*args, **kwargs)

        return call


class Fault:
    def __init__(self, error: Exception, *, lost: bool = False) -> None:
        self.error, self.lost = error, lost


class SdkFake:
    """The cloud's state and its API, one method per SDK proxy method used."""

    def __init__(self, *, console_keys: bool = True) -> None:
        self._ids = itertools.count(1)
        self.console_keys = console_keys
        self.current_project_id = "p1"
        self.session = SimpleNamespace(session=SimpleNamespace(hooks={"response": []}))
        self.compute = self.network = self.image = _Proxy(self)
        self.calls: Counter[str] = Counter()
        self.faults: dict[str, list[Fault]] = {}
        self.keypairs: dict[str, Any] = {}
        self.groups: dict[str, Any] = {}
        self.rules: list[Any] = []
        self.servers_: dict[str, Any] = {}
        self.ports_: dict[str, Any] = {}
        self.ips_: dict[str, Any] = {}
        self.requests: list[dict[str, Any]] = []
        #: Polls a deleted server's port survives it (it then still holds its group).
        self.port_linger = 1

    def fail(self, name: str, *errors: Exception, lost: bool = False) -> None:
        self.faults.setdefault(name, []).extend(Fault(e, lost=lost) for e in errors)

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    # -- look-ups ---------------------------------------------------------------------------
    def find_image(self, name: str) -> Any:
        return SimpleNamespace(id=f"img-{name}")

    def find_flavor(self, name: str) -> Any:
        return SimpleNamespace(id=f"flv-{name}")

    def find_network(self, name: str) -> Any:
        return SimpleNamespace(id=f"net-{name}")

    # -- keypairs ---------------------------------------------------------------------------
    def find_keypair(self, name: str) -> Any:
        return self.keypairs.get(name)

    def create_keypair(self, *, name: str, public_key: str) -> Any:
        if name in self.keypairs:
            raise http_error(409, f"Key pair '{name}' already exists")
        self.keypairs[name] = SimpleNamespace(name=name, public_key=public_key)
        return self.keypairs[name]

    def delete_keypair(self, name: str, ignore_missing: bool = True) -> None:
        self.keypairs.pop(name, None)

    # -- security groups --------------------------------------------------------------------
    def security_groups(self, *, name: str, project_id: str) -> list[Any]:
        return [g for g in self.groups.values() if g.name == name]

    def get_security_group(self, group_id: str) -> Any:
        if group_id not in self.groups:
            raise http_error(404, "Security group not found")
        return self.groups[group_id]

    def create_security_group(self, *, name: str, description: str) -> Any:
        group = SimpleNamespace(id=self._id("sg"), name=name, description=description)
        self.groups[group.id] = group
        return group

    def delete_security_group(self, group_id: str, ignore_missing: bool = True) -> None:
        if any(group_id in p.security_groups for p in self.ports_.values()):
            raise http_error(409, f"Security Group {group_id} in use")
        self.groups.pop(group_id, None)

    def security_group_rules(self, *, security_group_id: str) -> list[Any]:
        return [r for r in self.rules if r.security_group_id == security_group_id]

    def create_security_group_rule(self, **attrs: Any) -> Any:
        rule = SimpleNamespace(id=self._id("rule"), **attrs)
        self.rules.append(rule)
        return rule

    # -- servers ----------------------------------------------------------------------------
    def servers(self, *, name: str) -> list[Any]:
        return [s for s in self.servers_.values() if re.fullmatch(name.strip("^$"), s.name)]

    def create_server(self, **request: Any) -> Any:
        self.requests.append(request)
        server = SimpleNamespace(
            id=self._id("srv"),
            name=request["name"],
            status="BUILD",
            metadata=dict(request["metadata"]),
            deleting=None,
        )
        self.servers_[server.id] = server
        group = request["security_groups"][0]["name"]
        port = SimpleNamespace(
            id=f"port-{server.id}",
            device_id=server.id,
            network_id=request["networks"][0]["uuid"],
            fixed_ips=[{"ip_address": "10.0.0.5"}],
            security_groups=[group],
            status="ACTIVE",
            linger=None,
        )
        self.ports_[port.id] = port
        return server

    def get_server(self, server_id: str) -> Any:
        server = self.servers_.get(server_id)
        if server is not None and server.deleting is not None:
            if server.deleting <= 0:
                del self.servers_[server_id]
                server = None
            else:
                server.deleting -= 1  # still there, in its status (ERROR stays ERROR)
                return server
        if server is None:
            raise http_error(404, f"Instance {server_id} could not be found.")
        if server.status == "BUILD":
            server.status = "ACTIVE"  # a boot takes one poll
            return SimpleNamespace(**{**vars(server), "status": "BUILD"})
        return server

    def delete_server(self, server_id: str, ignore_missing: bool = False) -> None:
        if server_id not in self.servers_:
            raise http_error(404, f"Instance {server_id} could not be found.")
        if self.servers_[server_id].deleting is not None:
            return
        self.servers_[server_id].deleting = 1  # one poll sees it still
        for port in self.ports_.values():
            if port.device_id == server_id:
                port.linger = self.port_linger

    def get_server_console_output(self, server_id: str) -> dict[str, str]:
        keys = f"{BEGIN}\n{HOST_KEY} root@x\n{END}\n" if self.console_keys else ""
        return {"output": f"booting\n{keys}"}

    # -- ports and floating IPs --------------------------------------------------------------
    def ports(self, *, device_id: str, network_id: str | None = None) -> list[Any]:
        return [
            p
            for p in self.ports_.values()
            if p.device_id == device_id and network_id in (None, p.network_id)
        ]

    def get_port(self, port_id: str) -> Any:
        port = self.ports_.get(port_id)
        if port is not None and port.linger is not None:
            if port.linger <= 0:
                del self.ports_[port_id]
                port = None
            else:
                port.linger -= 1
        if port is None:
            raise http_error(404, f"Port {port_id} could not be found.")
        return port

    def ips(self, *, project_id: str) -> list[Any]:
        return list(self.ips_.values())

    def create_ip(self, *, floating_network_id: str, port_id: str, description: str) -> Any:
        ip = SimpleNamespace(
            id=self._id("fip"),
            floating_ip_address=f"203.0.113.{len(self.ips_) + 10}",
            floating_network_id=floating_network_id,
            port_id=port_id,
            description=description,
        )
        self.ips_[ip.id] = ip
        return ip

    def update_ip(self, ip_id: str, *, port_id: str) -> Any:
        self.ips_[ip_id].port_id = port_id
        return self.ips_[ip_id]

    def delete_ip(self, ip_id: str, ignore_missing: bool = True) -> None:
        self.ips_.pop(ip_id, None)


def no_sleep(_seconds: float) -> None:
    pass


def ops_over(fake: SdkFake, side: str, *, attempts: int = 6) -> OpenStackConversionHostOps:
    """The real ops over ``fake``, retries and waits without sleeping."""
    provider = OpenStackProvider(
        fake,  # type: ignore[arg-type]
        label=side,
        retry=RetryPolicy(attempts=attempts, base_delay=0, sleep=no_sleep),
    )
    return OpenStackConversionHostOps(provider, side, Wait(interval=0, sleep=no_sleep))
