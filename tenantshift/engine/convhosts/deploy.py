"""``tenantshift conversion-hosts deploy | remove | status``: the conversion hosts a manifest
declares with ``deploy:``, created for the user, idempotently.

Each host is a small resumable state machine over four resources: keypair, security group,
server, floating IP. Before creating one, its kind is added to the record's ``owns`` list
(journal-like: the record is written first), so a run killed between the create call and the
next record write still knows the resource is its own, and ``remove`` deletes exactly what a
deploy created: never a security group or keypair of the user's that it found by name and used.
A re-run finds everything by name and marker and creates nothing twice.

The cloud is reached only through ``ConversionHostOps`` (``tenantshift.providers.convhost_ops``;
for OpenStack, the provider's retrying caller): a failed cloud call is a ``ProviderError``
naming the call, a ``DeployError`` is a deployment decision (a name not found, a server that is
not ours, a host key refused).

Host keys: the console log's cloud-init block, else trust on first use when the manifest allows
it (:mod:`.hostkeys`); recorded, and verified at every later connection, this one included.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from tenantshift.engine.connect import conversion_host_ops
from tenantshift.engine.convhosts import reach
from tenantshift.engine.convhosts.hostkeys import (
    HostKeyRefused,
    choose_host_key,
    console_host_keys,
    fingerprint,
)
from tenantshift.engine.state.lock import ApplyLock, LockedError
from tenantshift.errors import TenantshiftError
from tenantshift.manifest import ConversionHost, ConversionHosts, Manifest
from tenantshift.manifest.deployed import SIDES, read_record, write_record
from tenantshift.manifest.schema import Deploy
from tenantshift.providers.convhost_ops import (
    MARKER,
    ConversionHostOps,
    HostServer,
    Port,
    SecurityGroup,
    ServerSpec,
)

__all__ = ["DeployError", "HostReport", "deploy", "remove", "server_spec", "status"]

#: Seconds for a server to become ACTIVE, and then for its SSH to answer and accept the key.
TIMEOUT = 600.0

Say = Callable[[str], None]
OpsFor = Callable[[Manifest, str], ConversionHostOps]


class DeployError(TenantshiftError):
    """A deploy or remove decision failed; the message says which resource and why."""


@dataclass
class HostReport:
    side: str
    server: str
    server_id: str
    address: str
    """Where tenantshift connects (``host:port``)."""
    cloud_address: str
    """The floating IP (or fixed IP) the cloud gave the server."""
    fingerprint: str
    host_key_source: str
    actions: list[str] = field(default_factory=list)
    """What this run created or changed; empty when everything was already there."""


def _open_ops(manifest: Manifest, side: str) -> ConversionHostOps:
    ref = manifest.source if side == "source" else manifest.destination
    ops = conversion_host_ops(ref, side)
    if ops is None:
        raise DeployError(f"{side}: a snapshot file cannot hold a conversion host")
    return ops


def _found(label: str, field: str, value: str, found: str | None) -> str:
    if found is None:
        raise DeployError(f"{label}: deploy.{field} {value!r} not found")
    return found


def server_spec(
    ops: ConversionHostOps, side: str, name: str, deploy: Deploy, keypair: str, group_id: str
) -> ServerSpec:
    """The server to boot for ``deploy``, its image, flavor and network found by name or id."""
    return ServerSpec(
        name=name,
        image_id=_found(side, "image", deploy.image, ops.find_image(deploy.image)),
        flavor_id=_found(side, "flavor", deploy.flavor, ops.find_flavor(deploy.flavor)),
        network_id=_found(side, "network", deploy.network, ops.find_network(deploy.network)),
        keypair=keypair,
        security_group_id=group_id,
        metadata=dict(deploy.metadata),
        volume_size=deploy.volume_size,
        availability_zone=deploy.availability_zone,
    )


def _fixed_ip(port: Port) -> str:
    """The port's first IPv4 address, else its first address (where the host is reached)."""
    ipv4 = [ip for ip in port.fixed_ips if ":" not in ip]
    if not (ipv4 or port.fixed_ips):
        raise DeployError(f"port {port.id} has no fixed IP")
    return (ipv4 or list(port.fixed_ips))[0]


def _deployed_hosts(manifest: Manifest) -> list[tuple[str, ConversionHost]]:
    hosts = manifest.conversion_hosts
    # Only the one-pair form deploys (a pool's hosts are declared; the schema refuses deploy).
    found = [(s, getattr(hosts, s)) for s in SIDES] if isinstance(hosts, ConversionHosts) else []
    chosen = [(side, host) for side, host in found if host.deploy is not None]
    if not chosen:
        raise DeployError("no conversion host in the manifest declares 'deploy:'")
    return chosen


@contextlib.contextmanager
def _locked(manifest: Manifest) -> Iterator[None]:
    # The apply lock: a deploy or remove must not change hosts an apply is copying through.
    try:
        with ApplyLock(manifest.state_dir):
            yield
    except LockedError as exc:
        raise DeployError(str(exc)) from None


class _Host:
    """One side's deploy, its record entry saved after every step."""

    def __init__(
        self,
        manifest: Manifest,
        side: str,
        host: ConversionHost,
        ops: ConversionHostOps,
        record: dict[str, Any],
        say: Say,
    ) -> None:
        assert host.deploy is not None and host.server is not None
        self.manifest, self.side, self.host, self.ops, self.say = manifest, side, host, ops, say
        self.deploy, self.name = host.deploy, host.server
        self.record = record
        entry = record.get(side)
        if not isinstance(entry, dict) or entry.get("server") != self.name:
            # A record of another server name is another deployment: its resources are left
            # to `remove` under that manifest, never adopted here.
            if isinstance(entry, dict) and entry.get("owns"):
                raise DeployError(
                    f"{side}: the record holds a deployment of server "
                    f"{entry.get('server')!r}; run 'conversion-hosts remove' with the manifest "
                    "that deployed it first"
                )
            entry = {"server": self.name, "owns": []}
            record[side] = entry
        self.entry: dict[str, Any] = entry
        self.actions: list[str] = []

    def save(self) -> None:
        write_record(self.manifest.state_dir, self.record)

    def own(self, kind: str) -> None:
        """Record that this deploy is about to create ``kind``: written before the create."""
        if kind not in self.entry["owns"]:
            self.entry["owns"].append(kind)
            self.save()

    def did(self, action: str) -> None:
        self.actions.append(action)
        self.say(f"{self.side}: {action}")

    # -- steps -----------------------------------------------------------------------------
    def keypair(self) -> str:
        name = self.deploy.keypair
        try:
            public = reach.public_key_of(str(self.host.key_file))
        except (OSError, asyncssh.KeyImportError) as exc:
            # key_file is the manifest's: a path that is wrong or a file that is no key.
            raise DeployError(
                f"{self.side}: key_file {self.host.key_file}: cannot read a private key: {exc}"
            ) from None
        found = self.ops.keypair(name)
        if found is None:
            self.own("keypair")
            self.ops.create_keypair(name, public)
            self.did(f"created keypair {name!r}")
        elif found.public_key.split()[:2] != public.split()[:2]:
            raise DeployError(
                f"{self.side}: keypair {name!r} exists with another public key than key_file's; "
                "name another deploy.keypair"
            )
        self.entry["keypair"] = name
        return name

    def security_group(self) -> SecurityGroup:
        name = self.deploy.security_group
        groups = self.ops.security_groups(name)
        if len(groups) > 1:
            raise DeployError(
                f"{self.side}: {len(groups)} security groups are named {name!r}; name one "
                "that is unique in deploy.security_group"
            )
        if groups:
            group = groups[0]
        else:
            self.own("security_group")
            group = self.ops.create_security_group(name)
            self.did(f"created security group {name!r}")
        self.entry["security_group_id"] = group.id
        return group

    def server(self, group: SecurityGroup, keypair: str) -> HostServer:
        servers = self.ops.servers(self.name)
        ours = [s for s in servers if self.ops.is_ours(s)]
        if servers and not ours:
            raise DeployError(
                f"{self.side}: a server named {self.name!r} exists that tenantshift did not "
                "create; choose another conversion_hosts.{side}.server"
            )
        recorded = self.entry.get("server_id")
        ours.sort(key=lambda s: (s.id != recorded, s.status != "ACTIVE"))
        server = ours[0] if ours else None
        if server is not None and server.status == "ERROR":
            self.did(f"deleting server {self.name!r} in ERROR")
            self.ops.delete_server(server.id, TIMEOUT)
            server = None
        if server is None:
            self.own("server")
            spec = server_spec(self.ops, self.side, self.name, self.deploy, keypair, group.id)
            server = self.ops.create_server(spec)
            self.did(f"created server {self.name!r} ({server.id})")
        if server.id != self.entry.get("server_id"):
            # A new server has a new host key: what was recorded was another machine's.
            for stale in ("host_key", "fingerprint", "host_key_source", "address"):
                self.entry.pop(stale, None)
            self.entry["server_id"] = server.id
            self.save()
        if server.status != "ACTIVE":
            server = self.ops.wait_active(server.id, TIMEOUT)
        return server

    def address(self, server: HostServer) -> str:
        network = self.deploy.network
        network_id = _found(self.side, "network", network, self.ops.find_network(network))
        port = self.ops.server_port(server.id, network_id)
        if port is None:
            raise DeployError(f"{self.side}: server {server.name!r} has no port on its network")
        self.entry["fixed_ip"] = _fixed_ip(port)
        if self.deploy.floating_ip_network is None:
            return str(self.entry["fixed_ip"])
        ours = self.ops.our_floating_ips(self.name)
        ip = next((i for i in ours if i.port_id == port.id), None) or (ours[0] if ours else None)
        if ip is None:
            external = self.deploy.floating_ip_network
            found = self.ops.find_network(external)
            external_id = _found(self.side, "floating_ip_network", external, found)
            self.own("floating_ip")
            ip = self.ops.create_floating_ip(self.name, external_id, port.id)
            self.did(f"created floating IP {ip.floating_ip_address}")
        elif ip.port_id != port.id:
            ip = self.ops.attach_floating_ip(ip.id, port.id)
            self.did(f"associated floating IP {ip.floating_ip_address}")
        for extra in ours:
            if extra.id != ip.id:  # a second one of ours (never made by us twice, but...)
                self.ops.delete_floating_ip(extra.id)
                self.did(f"deleted extra floating IP {extra.floating_ip_address}")
        self.entry["floating_ip_id"] = ip.id
        return str(ip.floating_ip_address)

    def host_key(self, server: HostServer, connect: str) -> None:
        where = f"{self.side} conversion host {self.name!r} at {connect}:{self.host.port}"
        try:
            offered = asyncio.run(reach.offered_host_key(connect, self.host.port, TIMEOUT))
        except TimeoutError as exc:
            raise DeployError(f"{where}: {exc}") from None
        recorded = self.entry.get("host_key")
        console = [] if recorded else console_host_keys(self.ops.console_log(server.id))
        try:
            pinned = choose_host_key(
                offered,
                recorded=recorded,
                console=console,
                trust_first_use=self.deploy.trust_first_use,
                server=f"{self.side} conversion host {self.name!r}",
            )
        except HostKeyRefused as exc:
            raise DeployError(str(exc)) from None
        if pinned.source == "first-use":
            self.say(
                f"{self.side}: WARNING: no host key in the console log of {self.name!r}; "
                f"trusting the key offered at the first connection: {pinned.key.split()[0]} "
                f"{pinned.fingerprint} (deploy.trust_first_use)"
            )
        # Logging in is verified against the key just pinned; a failure records nothing.
        try:
            asyncio.run(
                reach.login_works(
                    connect,
                    self.host.port,
                    self.host.user,
                    str(self.host.key_file),
                    pinned.key,
                    TIMEOUT,
                )
            )
        except asyncssh.HostKeyNotVerifiable:
            raise DeployError(f"{where}: the host key changed during the deploy") from None
        except (OSError, asyncssh.Error) as exc:
            raise DeployError(
                f"{where}: login as {self.host.user!r} with key_file failed: {exc}"
            ) from None
        if pinned.source != "recorded":
            self.entry.update(
                host_key=pinned.key, fingerprint=pinned.fingerprint, host_key_source=pinned.source
            )
            self.did(f"pinned host key {pinned.fingerprint} (from the {pinned.source})")

    def run(self) -> HostReport:
        keypair = self.keypair()
        group = self.security_group()
        self.save()
        server = self.server(group, keypair)
        cloud_address = self.address(server)
        self.entry["cloud_address"] = cloud_address
        self.save()
        connect = self.host.address or cloud_address
        self.host_key(server, connect)
        # Last: a record with an address and a host key is a usable host (see deployed.py).
        self.entry["address"] = cloud_address
        self.save()
        return HostReport(
            side=self.side,
            server=self.name,
            server_id=str(server.id),
            address=f"{connect}:{self.host.port}",
            cloud_address=cloud_address,
            fingerprint=str(self.entry["fingerprint"]),
            host_key_source=str(self.entry["host_key_source"]),
            actions=self.actions,
        )


def _ssh_rules(hosts: list[_Host], reports: dict[str, HostReport]) -> None:
    """Each security group we created lets in the other host and ``allow_ssh_from``."""
    for h in hosts:
        if "security_group" not in h.entry["owns"]:
            continue  # a group of the user's: used as it is, never changed
        others = [
            f"{r.cloud_address}/{128 if ':' in r.cloud_address else 32}"
            for side, r in reports.items()
            if side != h.side
        ]
        group = h.ops.security_group(h.entry["security_group_id"])
        if group is None:
            raise DeployError(f"{h.side}: security group {h.deploy.security_group!r} vanished")
        for cidr in h.ops.ensure_ssh_rules(group.id, [*others, *h.deploy.allow_ssh_from]):
            reports[h.side].actions.append(f"allowed SSH from {cidr}")
            h.say(f"{h.side}: allowed SSH from {cidr} in {h.deploy.security_group!r}")


def deploy(
    manifest: Manifest, *, say: Say = lambda _: None, ops_for: OpsFor = _open_ops
) -> list[HostReport]:
    """Deploy (or find, or finish deploying) every host that declares ``deploy``."""
    chosen = _deployed_hosts(manifest)
    with _locked(manifest):
        record = read_record(manifest.state_dir)
        hosts = [
            _Host(manifest, side, host, ops_for(manifest, side), record, say)
            for side, host in chosen
        ]
        reports = {h.side: h.run() for h in hosts}
        _ssh_rules(hosts, reports)
        return list(reports.values())


def remove(
    manifest: Manifest, *, say: Say = lambda _: None, ops_for: OpsFor = _open_ops
) -> list[str]:
    """Delete what deploy created for every host that declares ``deploy``: its server and
    floating IP (found by marker even without a record), and the security group and keypair
    only when this deploy created them."""
    chosen = _deployed_hosts(manifest)
    done: list[str] = []

    def note(text: str) -> None:
        done.append(text)
        say(text)

    with _locked(manifest):
        record = read_record(manifest.state_dir)
        for side, host in chosen:
            assert host.deploy is not None and host.server is not None
            ops = ops_for(manifest, side)
            entry = record.get(side) if isinstance(record.get(side), dict) else None
            if entry is not None and entry.get("server") != host.server:
                entry = None  # another server name's deployment: not this manifest's
            owns = set(entry.get("owns", [])) if entry else set()
            for ip in ops.our_floating_ips(host.server):
                ops.delete_floating_ip(ip.id)
                note(f"{side}: deleted floating IP {ip.floating_ip_address}")
            for server in ops.servers(host.server):
                if ops.is_ours(server):
                    ops.delete_server(server.id, TIMEOUT)
                    note(f"{side}: deleted server {host.server!r} ({server.id})")
            if "security_group" in owns:
                for group in ops.security_groups(host.deploy.security_group):
                    if group.description.startswith(MARKER):
                        ops.delete_security_group(group.id)
                        note(f"{side}: deleted security group {group.name!r}")
            if "keypair" in owns and ops.keypair(host.deploy.keypair) is not None:
                ops.delete_keypair(host.deploy.keypair)
                note(f"{side}: deleted keypair {host.deploy.keypair!r}")
            if entry is not None:
                record.pop(side, None)
                write_record(manifest.state_dir, record)
    return done


def status(manifest: Manifest) -> list[dict[str, Any]]:
    """What the record says of each host that declares ``deploy`` (no cloud is read)."""
    record = read_record(manifest.state_dir)
    out = []
    for side, host in _deployed_hosts(manifest):
        entry = record.get(side)
        entry = entry if isinstance(entry, dict) and entry.get("server") == host.server else {}
        deployed = bool(entry.get("address") and entry.get("host_key"))
        out.append(
            {
                "side": side,
                "server": host.server,
                "state": "deployed" if deployed else ("partial" if entry else "not deployed"),
                "server_id": entry.get("server_id"),
                "address": host.address or entry.get("address"),
                "port": host.port,
                "cloud_address": entry.get("cloud_address"),
                "fingerprint": entry.get("fingerprint")
                or (fingerprint(entry["host_key"]) if entry.get("host_key") else None),
                "host_key_source": entry.get("host_key_source"),
                "owns": entry.get("owns", []),
            }
        )
    return out
