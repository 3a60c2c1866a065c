"""The cloud verbs deploying a conversion host needs (``conversion-hosts deploy|remove``):
keypair, security group and its SSH rules, the server, its port and floating IP, its console.

A cloud offers them as an object satisfying ``ConversionHostOps``, one per conversion host
(``side``: ``source`` or ``destination``, the value of the server's marker). Every decision
about what to create or delete is the engine's; these only find, create, delete and wait, and
a failed call is a ``ProviderError`` naming the call. Values come back as the small records
below, so the engine never sees an SDK object.

Markers (what makes a resource ours even when the local record is lost): the server's metadata
``tenantshift_conversion_host: <side>``; a security group's or floating IP's description
starting with ``tenantshift-conversion-host``, set in the create call itself, so no window
exists in which a resource of ours is unmarked. Keypairs carry no marker anywhere, so a keypair
is ours only when the engine's record says its deploy created it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "MARKER",
    "SERVER_MARKER_KEY",
    "ConversionHostOps",
    "FloatingIp",
    "HostServer",
    "Keypair",
    "Port",
    "SecurityGroup",
    "ServerSpec",
]

MARKER = "tenantshift-conversion-host"
SERVER_MARKER_KEY = "tenantshift_conversion_host"


@dataclass(frozen=True)
class Keypair:
    name: str
    public_key: str


@dataclass(frozen=True)
class SecurityGroup:
    id: str
    name: str
    description: str = ""


@dataclass(frozen=True)
class HostServer:
    id: str
    name: str
    status: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Port:
    id: str
    #: Its fixed addresses, in the cloud's order.
    fixed_ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class FloatingIp:
    id: str
    floating_ip_address: str
    port_id: str | None
    floating_network_id: str
    description: str = ""


@dataclass(frozen=True)
class ServerSpec:
    """A conversion host to boot, every name already resolved to an id by the engine."""

    name: str
    image_id: str
    flavor_id: str
    network_id: str
    keypair: str
    security_group_id: str
    #: The user's extra metadata (``deploy.metadata``); the marker is added by the cloud side.
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: Boot from a new volume of this many GiB made from the image; ``None``: from the image.
    volume_size: int | None = None
    availability_zone: str | None = None


class ConversionHostOps(Protocol):
    """One cloud's operations for one conversion host. Look-ups return ``None`` for what is
    not there; everything else raises ``ProviderError`` when the cloud refuses or fails."""

    # -- what the manifest names (ids; None when not found) -----------------------------------
    def find_image(self, name_or_id: str) -> str | None: ...

    def find_flavor(self, name_or_id: str) -> str | None: ...

    def find_network(self, name_or_id: str) -> str | None: ...

    # -- keypair ------------------------------------------------------------------------------
    def keypair(self, name: str) -> Keypair | None: ...

    def create_keypair(self, name: str, public_key: str) -> Keypair: ...

    def delete_keypair(self, name: str) -> None:
        """Deleting what is gone is not an error (as for every delete here)."""
        ...

    # -- security group -------------------------------------------------------------------------
    def security_groups(self, name: str) -> list[SecurityGroup]:
        """The project's groups named exactly ``name``, ours and the user's."""
        ...

    def security_group(self, group_id: str) -> SecurityGroup | None: ...

    def create_security_group(self, name: str) -> SecurityGroup:
        """Created with our marker in its description."""
        ...

    def ensure_ssh_rules(self, group_id: str, cidrs: list[str]) -> list[str]:
        """Ingress tcp/22 from each CIDR; returns the CIDRs (normalized) a rule was added for."""
        ...

    def delete_security_group(self, group_id: str) -> None: ...

    # -- server -----------------------------------------------------------------------------------
    def servers(self, name: str) -> list[HostServer]:
        """Servers named exactly ``name``, ours (marker) and others."""
        ...

    def is_ours(self, server: HostServer) -> bool:
        """The server carries this side's marker."""
        ...

    def create_server(self, spec: ServerSpec) -> HostServer:
        """Send the boot request (with our marker); does not wait for ACTIVE."""
        ...

    def wait_active(self, server_id: str, timeout: float) -> HostServer:
        """Wait until ACTIVE (ERROR fails at once), at most ``timeout`` seconds."""
        ...

    def delete_server(self, server_id: str, timeout: float) -> None:
        """Delete and wait until the server and its ports are gone (a port that lingers still
        holds the security group)."""
        ...

    def console_log(self, server_id: str) -> str: ...

    # -- addresses ----------------------------------------------------------------------------
    def server_port(self, server_id: str, network_id: str) -> Port | None:
        """The server's (first) port on that network."""
        ...

    def our_floating_ips(self, server_name: str) -> list[FloatingIp]:
        """The project's floating IPs carrying this side's marker for that server name."""
        ...

    def create_floating_ip(self, server_name: str, network_id: str, port_id: str) -> FloatingIp:
        """From external network ``network_id``, associated with ``port_id``, marked."""
        ...

    def attach_floating_ip(self, ip_id: str, port_id: str) -> FloatingIp: ...

    def delete_floating_ip(self, ip_id: str) -> None: ...
