"""A source tenant of any size in the memory provider, for the plan path at scale.

The same mix as the devcloud benchmark (``benchmarks/control_plane.py``): networks with a
subnet each, routers with an interface per subnet, security groups with rules (some
remote-group), keypairs, and a few duplicate names. Records are inserted directly (the memory
provider's own create checks scan every record of the kind, which is quadratic when seeding
thousands) and the cloud's automatic egress rules are added as ``create`` would.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenantshift.providers.memory import MemoryProvider
from tenantshift.providers.memory_kinds import add_egress_rules
from tenantshift.resources import REGISTRY
from tenantshift.resources.marker import make_marker
from tenantshift.resources.snapshot import params_from_record

#: A network, its subnet, and its router interface (a router serves ``NETS_PER_ROUTER``).
NETS_PER_ROUTER = 8
#: A group's own rules besides the two egress rules the cloud adds.
RULES_PER_GROUP = 4


@dataclass(frozen=True)
class Mix:
    """How many of each kind make about ``total`` resources (the project's ``default`` group and
    its 4 rules included)."""

    networks: int
    routers: int
    groups: int
    keypairs: int
    duplicates: int

    @classmethod
    def of(cls, total: int) -> Mix:
        keypairs = max(2, min(50, total // 100))
        rest = max(0, total - keypairs - 5)
        # Half the budget on networking (3 resources per network, plus the routers), half on
        # security groups (1 + 2 egress + RULES_PER_GROUP each).
        networks = max(1, int(rest / 2 / (3 + 1 / NETS_PER_ROUTER)))
        routers = max(1, -(-networks // NETS_PER_ROUTER))
        groups = max(1, (rest - 3 * networks - routers) // (3 + RULES_PER_GROUP))
        return cls(networks, routers, groups, keypairs, duplicates=min(3, networks // 10))

    @property
    def total(self) -> int:
        return (
            3 * self.networks
            + self.routers
            + self.groups * (3 + RULES_PER_GROUP)
            + self.keypairs
            + 5  # the default group and its rules
        )


def prefix(n: int) -> str:
    """The first three octets of the ``n``-th /24 of 10.0.0.0/8 (65,536 of them)."""
    return f"10.{n // 256}.{n % 256}"


def network_name(n: int, mix: Mix) -> str:
    # The first few networks share a name pairwise: addresses ``net-00000`` and ``~2``.
    return f"net-{(n - 1 if 0 < n <= 2 * mix.duplicates and n % 2 else n):05d}"


def rule_params(group_id: str, g: int, r: int, groups: list[str]) -> dict[str, object]:
    if r == 0 and g > 0:  # a remote-group rule: an edge to another group
        return {
            "security_group": group_id,
            "direction": "ingress",
            "ethertype": "IPv4",
            "protocol": "tcp",
            "port_range_min": 5432,
            "port_range_max": 5432,
            "remote_group": groups[g - 1],
        }
    port = 1000 + r
    return {
        "security_group": group_id,
        "direction": "ingress",
        "ethertype": "IPv4" if r % 2 else "IPv6",
        "protocol": "tcp",
        "port_range_min": port,
        "port_range_max": port,
        "remote_ip_prefix": "0.0.0.0/0" if r % 2 else "::/0",
    }


def build_large_source(total: int) -> tuple[MemoryProvider, Mix]:
    mix = Mix.of(total)
    cloud = MemoryProvider("source")
    routers = [
        cloud.insert(
            "router",
            {
                "name": f"router-{r:04d}",
                # Every other router has a gateway (each takes an address of the shared
                # external network, a /24 on the devcloud).
                "external_network": "public" if r % 2 == 0 else None,
                # Through its first subnet: a late field (after the interfaces).
                "routes": [
                    {
                        "destination": f"172.16.{r // 256}.{r % 256}/32",
                        "nexthop": f"{prefix(r * NETS_PER_ROUTER)}.5",
                    }
                ],
            },
        )
        for r in range(mix.routers)
    ]
    for n in range(mix.networks):
        net = cloud.insert("network", {"name": network_name(n, mix), "mtu": 1450})
        p = prefix(n)
        subnet = cloud.insert(
            "subnet",
            {
                "network": net["id"],
                "name": "sub",
                "cidr": f"{p}.0/24",
                "gateway_ip": f"{p}.1",
                "allocation_pools": [{"start": f"{p}.10", "end": f"{p}.200"}],
                "dns_nameservers": ["192.0.2.53"],
            },
        )
        router = routers[n // NETS_PER_ROUTER]
        cloud.insert("router_interface", {"router": router["id"], "subnet": subnet["id"]})
    groups: list[str] = []
    for g in range(mix.groups):
        name = f"sg-{(g - 1 if 0 < g <= 2 * mix.duplicates and g % 2 else g):05d}"
        group = cloud.insert("security_group", {"name": name, "description": f"group {g}"})
        add_egress_rules(cloud, group["id"])
        groups.append(group["id"])
        for r in range(RULES_PER_GROUP):
            cloud.insert("security_group_rule", rule_params(group["id"], g, r, groups))
    for k in range(mix.keypairs):
        cloud.insert("keypair", {"name": f"key-{k:03d}", "public_key": f"ssh-ed25519 AAAA{k}"})
    return cloud, mix


def copy_of(source: MemoryProvider, migration: str) -> MemoryProvider:
    """A destination holding a marked copy of every source resource, as an apply would leave
    it (built directly: applying thousands of creates to the memory double is quadratic in
    its ``find``). A group's rules, the cloud's egress ones included, are copied as they are."""
    destination = MemoryProvider("destination")
    ids: dict[str, str] = {}
    builtin: set[str] = set()  # source ids of the project's own ``default`` group
    for kind in REGISTRY:
        for record in list(source.records_of(kind.name).values()):
            params = params_from_record(kind, record)
            name = kind.name_field.name if kind.name_field else None
            if name and params.get(name) in kind.builtin_names:
                # The destination has its own default group, with its own default rules.
                ids[record["id"]] = next(
                    r["id"]
                    for r in destination.records_of(kind.name).values()
                    if r.get(name) == params[name]
                )
                builtin.add(record["id"])
                continue
            if kind.owner and record.get(kind.owner) in builtin:
                continue
            marker = make_marker(migration, record["id"]) if kind.provenance else None
            mapped = kind.map_references(params, ids.__getitem__)
            ids[record["id"]] = destination.insert(kind.name, mapped, provenance=marker)["id"]
    return destination
