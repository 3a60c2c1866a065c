"""``ConversionHostOps`` over the OpenStack provider: Nova for the keypair, the server and its
console, Neutron for the security group, ports and floating IPs, Glance to find the image.

Every call goes through the provider's ``Caller`` (retries, throttle, ``ProviderError`` naming
the call), as a resource handler's do; every create passes a ``recover`` look-up (by name and
marker), so a create whose response was lost is found rather than made twice. Waits are the
server and port handlers' own (``KindHandler.wait_for_status``/``wait_for_delete``): each poll
one retried call, the whole wait bounded by its timeout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import re
from typing import TYPE_CHECKING, Any

from tenantshift.providers.base import NotFoundError
from tenantshift.providers.convhost_ops import (
    MARKER,
    SERVER_MARKER_KEY,
    FloatingIp,
    HostServer,
    Keypair,
    Port,
    SecurityGroup,
    ServerSpec,
)
from tenantshift.providers.openstack.connection import Caller, ConflictError
from tenantshift.providers.openstack.kinds.base import KindHandler, Wait

if TYPE_CHECKING:
    from tenantshift.providers.openstack.provider import OpenStackProvider

__all__ = ["OpenStackConversionHostOps"]

#: How long a deleted server's ports may linger (Neutron lets them go after Nova reports the
#: server gone); while one does, it still holds the security group (a 409 on its delete).
PORT_RELEASE = 60.0

GROUP_DESCRIPTION = f"{MARKER}: SSH to a conversion host (tenantshift conversion-hosts)"

#: A server in ERROR keeps that status while Nova deletes it: no status fails a delete's wait.
_ANY_STATUS: frozenset[str] = frozenset()


def _server(res: Any) -> HostServer:
    return HostServer(
        id=str(res.id),
        name=str(res.name),
        status=str(res.status or ""),
        metadata={str(k): str(v) for k, v in (res.metadata or {}).items()},
    )


def _group(res: Any) -> SecurityGroup:
    return SecurityGroup(id=str(res.id), name=str(res.name), description=str(res.description or ""))


def _port(res: Any) -> Port:
    addresses = tuple(str(ip["ip_address"]) for ip in res.fixed_ips or [])
    return Port(id=str(res.id), fixed_ips=addresses)


def _ip(res: Any) -> FloatingIp:
    return FloatingIp(
        id=str(res.id),
        floating_ip_address=str(res.floating_ip_address),
        port_id=str(res.port_id) if res.port_id else None,
        floating_network_id=str(res.floating_network_id),
        description=str(res.description or ""),
    )


def _same_key(a: str, b: str) -> bool:
    """Type and key material equal (the comment part of a public key is not compared)."""
    return a.split()[:2] == b.split()[:2]


class OpenStackConversionHostOps:
    """One cloud's operations for the conversion host of ``side``, through ``provider``."""

    def __init__(self, provider: OpenStackProvider, side: str, wait: Wait | None = None) -> None:
        self.provider = provider
        self.side = side
        self.wait = wait or Wait(interval=2.0)

    @property
    def _call(self) -> Caller:
        return self.provider.call

    @property
    def _servers(self) -> KindHandler:
        return self.provider.handlers["server"]

    def _waiting(self, timeout: float) -> Wait:
        return dataclasses.replace(self.wait, timeout=timeout)

    # -- what the manifest names --------------------------------------------------------------
    def find_image(self, name_or_id: str) -> str | None:
        image = self.provider.conn.image
        found = self._call("image.find_image", lambda: image.find_image(name_or_id))
        return None if found is None else str(found.id)

    def find_flavor(self, name_or_id: str) -> str | None:
        compute = self.provider.conn.compute
        found = self._call("compute.find_flavor", lambda: compute.find_flavor(name_or_id))
        return None if found is None else str(found.id)

    def find_network(self, name_or_id: str) -> str | None:
        network = self.provider.conn.network
        found = self._call("network.find_network", lambda: network.find_network(name_or_id))
        return None if found is None else str(found.id)

    # -- keypair ------------------------------------------------------------------------------
    def keypair(self, name: str) -> Keypair | None:
        compute = self.provider.conn.compute
        found = self._call("compute.find_keypair", lambda: compute.find_keypair(name))
        return None if found is None else Keypair(str(found.name), str(found.public_key or ""))

    def create_keypair(self, name: str, public_key: str) -> Keypair:
        compute = self.provider.conn.compute

        def made() -> Keypair | None:
            found = self.keypair(name)
            return found if found is not None and _same_key(found.public_key, public_key) else None

        return self._call(
            "compute.create_keypair",
            lambda: self._keypair(compute.create_keypair(name=name, public_key=public_key)),
            recover=made,
        )

    @staticmethod
    def _keypair(res: Any) -> Keypair:
        return Keypair(str(res.name), str(res.public_key or ""))

    def delete_keypair(self, name: str) -> None:
        compute = self.provider.conn.compute
        self._call(
            "compute.delete_keypair", lambda: compute.delete_keypair(name, ignore_missing=True)
        )

    # -- security group -------------------------------------------------------------------------
    def security_groups(self, name: str) -> list[SecurityGroup]:
        network = self.provider.conn.network
        project = self.provider.project_id
        found = self._call(
            "network.security_groups(name)",
            lambda: list(network.security_groups(name=name, project_id=project)),
        )
        return [_group(g) for g in found if g.name == name]

    def security_group(self, group_id: str) -> SecurityGroup | None:
        network = self.provider.conn.network
        try:
            res = self._call(
                "network.get_security_group", lambda: network.get_security_group(group_id)
            )
        except NotFoundError:
            return None
        return _group(res)

    def create_security_group(self, name: str) -> SecurityGroup:
        network = self.provider.conn.network

        def made() -> SecurityGroup | None:
            ours = [g for g in self.security_groups(name) if g.description.startswith(MARKER)]
            return ours[0] if ours else None

        return self._call(
            "network.create_security_group",
            lambda: _group(network.create_security_group(name=name, description=GROUP_DESCRIPTION)),
            recover=made,
        )

    def _ssh_sources(self, group_id: str) -> set[str]:
        network = self.provider.conn.network
        rules = self._call(
            "network.security_group_rules",
            lambda: list(network.security_group_rules(security_group_id=group_id)),
        )
        return {
            str(r.remote_ip_prefix)
            for r in rules
            if r.direction == "ingress"
            and (r.port_range_min, r.port_range_max, r.protocol) == (22, 22, "tcp")
        }

    def ensure_ssh_rules(self, group_id: str, cidrs: list[str]) -> list[str]:
        network = self.provider.conn.network
        have = self._ssh_sources(group_id)
        added = []
        for cidr in cidrs:
            net = str(ipaddress.ip_network(cidr, strict=False))
            if net in have:
                continue

            def made(net: str = net) -> bool | None:
                return True if net in self._ssh_sources(group_id) else None

            def create(net: str = net) -> bool:
                network.create_security_group_rule(
                    security_group_id=group_id,
                    direction="ingress",
                    ethertype="IPv6" if ":" in net else "IPv4",
                    protocol="tcp",
                    port_range_min=22,
                    port_range_max=22,
                    remote_ip_prefix=net,
                    description=MARKER,
                )
                return True

            # A 409 is Neutron's duplicate-rule answer: made meanwhile (a lost response).
            with contextlib.suppress(ConflictError):
                self._call("network.create_security_group_rule", create, recover=made)
            have.add(net)
            added.append(net)
        return added

    def delete_security_group(self, group_id: str) -> None:
        network = self.provider.conn.network
        self._call(
            "network.delete_security_group",
            lambda: network.delete_security_group(group_id, ignore_missing=True),
        )

    # -- server -----------------------------------------------------------------------------------
    def servers(self, name: str) -> list[HostServer]:
        compute = self.provider.conn.compute
        # Nova's name filter is a regular expression: anchored, so "conv" is not "conv-2".
        found = self._call(
            "compute.servers(name)",
            lambda: list(compute.servers(name=f"^{re.escape(name)}$")),
        )
        return [_server(s) for s in found if s.name == name]

    def is_ours(self, server: HostServer) -> bool:
        return server.metadata.get(SERVER_MARKER_KEY) == self.side

    def create_server(self, spec: ServerSpec) -> HostServer:
        compute = self.provider.conn.compute
        kwargs: dict[str, Any] = {
            "name": spec.name,
            "flavor_id": spec.flavor_id,
            "networks": [{"uuid": spec.network_id}],
            "key_name": spec.keypair,
            # Nova takes a group's id where its name is asked for: unambiguous, unlike names.
            "security_groups": [{"name": spec.security_group_id}],
            "metadata": {**spec.metadata, SERVER_MARKER_KEY: self.side},
        }
        if spec.volume_size is not None:
            kwargs["block_device_mapping"] = [
                {
                    "boot_index": 0,
                    "uuid": spec.image_id,
                    "source_type": "image",
                    "destination_type": "volume",
                    "volume_size": spec.volume_size,
                    "delete_on_termination": True,
                }
            ]
        else:
            kwargs["image_id"] = spec.image_id
        if spec.availability_zone is not None:
            kwargs["availability_zone"] = spec.availability_zone

        def made() -> HostServer | None:
            ours = [s for s in self.servers(spec.name) if self.is_ours(s)]
            return ours[0] if ours else None

        return self._call(
            "compute.create_server",
            lambda: _server(compute.create_server(**kwargs)),
            recover=made,
        )

    def wait_active(self, server_id: str, timeout: float) -> HostServer:
        handler = self._servers
        res = handler.wait_for_status(
            handler.fetch(server_id), "ACTIVE", wait=self._waiting(timeout)
        )
        return _server(res)

    def delete_server(self, server_id: str, timeout: float) -> None:
        network = self.provider.conn.network
        ports = self._call(
            "network.ports(device)", lambda: list(network.ports(device_id=server_id))
        )
        try:
            self._servers.delete_call(server_id)
        except NotFoundError:
            pass  # gone already; a port of it may still linger
        else:
            self._servers.wait_for_delete(
                server_id, wait=self._waiting(timeout), failures=_ANY_STATUS
            )
        for port in ports:
            self.provider.handlers["port"].wait_for_delete(
                str(port.id), wait=self._waiting(PORT_RELEASE), failures=_ANY_STATUS
            )

    def console_log(self, server_id: str) -> str:
        compute = self.provider.conn.compute
        out = self._call(
            "compute.get_server_console_output",
            lambda: compute.get_server_console_output(server_id),
        )
        return str((out or {}).get("output") or "")

    # -- addresses ----------------------------------------------------------------------------
    def server_port(self, server_id: str, network_id: str) -> Port | None:
        network = self.provider.conn.network
        ports = self._call(
            "network.ports(device)",
            lambda: list(network.ports(device_id=server_id, network_id=network_id)),
        )
        return _port(ports[0]) if ports else None

    def _ip_description(self, server_name: str) -> str:
        return f"{MARKER}:{self.side}:{server_name}"

    def our_floating_ips(self, server_name: str) -> list[FloatingIp]:
        network = self.provider.conn.network
        project = self.provider.project_id
        wanted = self._ip_description(server_name)
        found = self._call("network.ips", lambda: list(network.ips(project_id=project)))
        return [_ip(ip) for ip in found if (ip.description or "") == wanted]

    def create_floating_ip(self, server_name: str, network_id: str, port_id: str) -> FloatingIp:
        network = self.provider.conn.network

        def made() -> FloatingIp | None:
            ours = self.our_floating_ips(server_name)
            return ours[0] if ours else None

        return self._call(
            "network.create_ip",
            lambda: _ip(
                network.create_ip(
                    floating_network_id=network_id,
                    port_id=port_id,
                    description=self._ip_description(server_name),
                )
            ),
            recover=made,
        )

    def attach_floating_ip(self, ip_id: str, port_id: str) -> FloatingIp:
        network = self.provider.conn.network
        return self._call(
            "network.update_ip", lambda: _ip(network.update_ip(ip_id, port_id=port_id))
        )

    def delete_floating_ip(self, ip_id: str) -> None:
        network = self.provider.conn.network
        self._call("network.delete_ip", lambda: network.delete_ip(ip_id, ignore_missing=True))
