"""The OpenStack side of deploying a conversion host: find what exists by name and our marker,
create what is missing, delete what is ours. Thin over openstacksdk; every decision about what
to create or delete is made by :mod:`.deploy`.

Markers (what makes a resource ours even when the local record is lost): the server's metadata
``tenantshift_conversion_host: <side>``; a security group's or floating IP's description
starting with ``tenantshift-conversion-host``, set in the create call itself, so no window
exists in which a resource of ours is unmarked. Keypairs carry no marker anywhere, so a keypair
is ours only when the record says this deploy created it.
"""

from __future__ import annotations

import ipaddress
import re
import time
from typing import Any

from tenantshift.manifest.schema import Deploy

__all__ = ["MARKER", "CloudOps", "DeployError"]

MARKER = "tenantshift-conversion-host"
SERVER_MARKER_KEY = "tenantshift_conversion_host"


class DeployError(Exception):
    """A deploy or remove step failed; the message says which resource and why."""


def _sdk_error(what: str, exc: Exception) -> DeployError:
    # openstacksdk's messages carry the cloud's own reason; never the request body.
    detail = getattr(exc, "details", None) or str(exc).splitlines()[0]
    return DeployError(f"{what}: {detail}")


class CloudOps:
    """One cloud's operations for one conversion host (``side``)."""

    def __init__(self, conn: Any, side: str, label: str) -> None:
        self.conn = conn
        self.side = side
        self.label = label
        self.project_id = conn.current_project_id

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DeployError:
            raise
        except Exception as exc:  # openstacksdk raises many kinds; each becomes one message
            raise _sdk_error(f"{self.label}: {what}", exc) from None

    # -- look-ups of what the manifest names ---------------------------------------------
    def image(self, name_or_id: str) -> Any:
        found = self._call("find image", self.conn.image.find_image, name_or_id)
        if found is None:
            raise DeployError(f"{self.label}: deploy.image {name_or_id!r} not found")
        return found

    def flavor(self, name_or_id: str) -> Any:
        found = self._call("find flavor", self.conn.compute.find_flavor, name_or_id)
        if found is None:
            raise DeployError(f"{self.label}: deploy.flavor {name_or_id!r} not found")
        return found

    def network(self, name_or_id: str, field: str) -> Any:
        found = self._call("find network", self.conn.network.find_network, name_or_id)
        if found is None:
            raise DeployError(f"{self.label}: deploy.{field} {name_or_id!r} not found")
        return found

    # -- keypair ---------------------------------------------------------------------------
    def keypair(self, name: str) -> Any:
        return self._call("find keypair", self.conn.compute.find_keypair, name)

    def create_keypair(self, name: str, public_key: str) -> Any:
        return self._call(
            f"create keypair {name!r}",
            self.conn.compute.create_keypair,
            name=name,
            public_key=public_key,
        )

    def delete_keypair(self, name: str) -> None:
        self._call(
            f"delete keypair {name!r}", self.conn.compute.delete_keypair, name, ignore_missing=True
        )

    # -- security group --------------------------------------------------------------------
    def security_groups(self, name: str) -> list[Any]:
        groups = self._call(
            "list security groups",
            lambda: list(self.conn.network.security_groups(name=name, project_id=self.project_id)),
        )
        return [g for g in groups if g.name == name]

    def security_group_by_id(self, group_id: str) -> Any:
        return self._call("find security group", self.conn.network.find_security_group, group_id)

    def create_security_group(self, name: str) -> Any:
        return self._call(
            f"create security group {name!r}",
            self.conn.network.create_security_group,
            name=name,
            description=f"{MARKER}: SSH to a conversion host (tenantshift conversion-hosts)",
        )

    def ensure_ssh_rules(self, group: Any, cidrs: list[str]) -> list[str]:
        """Ingress tcp/22 from each CIDR; returns the CIDRs a rule was added for."""
        have = {
            (r.remote_ip_prefix, r.port_range_min, r.port_range_max, r.protocol)
            for r in self._call(
                "list rules",
                lambda: list(self.conn.network.security_group_rules(security_group_id=group.id)),
            )
            if r.direction == "ingress"
        }
        added = []
        for cidr in cidrs:
            net = str(ipaddress.ip_network(cidr, strict=False))
            if (net, 22, 22, "tcp") in have:
                continue
            self._call(
                f"add an SSH rule for {net}",
                self.conn.network.create_security_group_rule,
                security_group_id=group.id,
                direction="ingress",
                ethertype="IPv6" if ":" in net else "IPv4",
                protocol="tcp",
                port_range_min=22,
                port_range_max=22,
                remote_ip_prefix=net,
                description=MARKER,
            )
            added.append(net)
        return added

    def delete_security_group(self, group_id: str, timeout: float = 60.0) -> None:
        """Deleted once no port uses it: the deleted server's port may linger a moment."""
        from openstack.exceptions import ConflictException  # ~1 s to import: only here

        deadline = time.monotonic() + timeout
        while True:
            try:
                self.conn.network.delete_security_group(group_id, ignore_missing=True)
                return
            except ConflictException as exc:
                if time.monotonic() >= deadline:
                    raise _sdk_error(f"{self.label}: delete security group", exc) from None
                time.sleep(2)
            except Exception as exc:
                raise _sdk_error(f"{self.label}: delete security group", exc) from None

    # -- server ----------------------------------------------------------------------------
    def servers(self, name: str) -> list[Any]:
        """Servers named exactly ``name``, ours (marker) and others."""
        found = self._call(
            "list servers",
            lambda: list(self.conn.compute.servers(name=f"^{re.escape(name)}$")),
        )
        return [s for s in found if s.name == name]

    def is_ours(self, server: Any) -> bool:
        return (server.metadata or {}).get(SERVER_MARKER_KEY) == self.side

    def create_server(self, name: str, deploy: Deploy, keypair: str, group_id: str) -> Any:
        image = self.image(deploy.image)
        flavor = self.flavor(deploy.flavor)
        network = self.network(deploy.network, "network")
        kwargs: dict[str, Any] = {
            "name": name,
            "flavor_id": flavor.id,
            "networks": [{"uuid": network.id}],
            "key_name": keypair,
            "security_groups": [{"name": group_id}],
            "metadata": {**deploy.metadata, SERVER_MARKER_KEY: self.side},
        }
        if deploy.volume_size is not None:
            kwargs["block_device_mapping"] = [
                {
                    "boot_index": 0,
                    "uuid": image.id,
                    "source_type": "image",
                    "destination_type": "volume",
                    "volume_size": deploy.volume_size,
                    "delete_on_termination": True,
                }
            ]
        else:
            kwargs["image_id"] = image.id
        if deploy.availability_zone is not None:
            kwargs["availability_zone"] = deploy.availability_zone
        return self._call(f"create server {name!r}", self.conn.compute.create_server, **kwargs)

    def wait_active(self, server: Any, timeout: float) -> Any:
        return self._call(
            f"wait for server {server.name!r} to be ACTIVE",
            self.conn.compute.wait_for_server,
            server,
            status="ACTIVE",
            failures=["ERROR"],
            wait=timeout,
            interval=2,
        )

    def delete_server(self, server_id: str, timeout: float) -> None:
        server = self._call("find server", self.conn.compute.find_server, server_id)
        if server is None:
            return
        self._call("delete server", self.conn.compute.delete_server, server)
        self._call(
            "wait for the server to be deleted",
            self.conn.compute.wait_for_delete,
            server,
            wait=timeout,
            interval=2,
        )

    def console_log(self, server: Any) -> str:
        out = self._call(
            "read the console log", self.conn.compute.get_server_console_output, server
        )
        return str((out or {}).get("output") or "")

    # -- addresses -------------------------------------------------------------------------
    def server_port(self, server: Any, network_id: str) -> Any:
        ports = self._call(
            "list the server's ports",
            lambda: list(self.conn.network.ports(device_id=server.id, network_id=network_id)),
        )
        if not ports:
            raise DeployError(f"{self.label}: server {server.name!r} has no port on its network")
        return ports[0]

    @staticmethod
    def fixed_ip(port: Any) -> str:
        ips = [ip["ip_address"] for ip in port.fixed_ips or []]
        ipv4 = [ip for ip in ips if ":" not in ip]
        if not (ipv4 or ips):
            raise DeployError(f"port {port.id} has no fixed IP")
        return (ipv4 or ips)[0]

    def floating_ip_description(self, server_name: str) -> str:
        return f"{MARKER}:{self.side}:{server_name}"

    def our_floating_ips(self, server_name: str) -> list[Any]:
        wanted = self.floating_ip_description(server_name)
        found = self._call(
            "list floating IPs",
            lambda: list(self.conn.network.ips(project_id=self.project_id)),
        )
        return [ip for ip in found if (ip.description or "") == wanted]

    def create_floating_ip(self, server_name: str, network_id: str, port_id: str) -> Any:
        return self._call(
            "create a floating IP",
            self.conn.network.create_ip,
            floating_network_id=network_id,
            port_id=port_id,
            description=self.floating_ip_description(server_name),
        )

    def attach_floating_ip(self, ip: Any, port_id: str) -> Any:
        return self._call(
            "associate the floating IP", self.conn.network.update_ip, ip, port_id=port_id
        )

    def delete_floating_ip(self, ip_id: str) -> None:
        self._call(
            "delete the floating IP", self.conn.network.delete_ip, ip_id, ignore_missing=True
        )
