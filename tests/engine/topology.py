"""A realistic source tenant in the memory provider, large enough to exercise the walker."""

from __future__ import annotations

from tenantshift.providers.memory import MemoryProvider


def build_source(networks: int = 30, groups: int = 12) -> MemoryProvider:
    """``networks`` networks with two subnets each, one router per five networks with an interface
    per subnet and a static route, ``groups`` security groups with rules (some remote-group),
    two keypairs. 30/12 gives 270 resources, 241 of them to create."""
    cloud = MemoryProvider("source")
    routers = [
        cloud.create("router", {"name": f"router-{r}", "external_network": "public"}, None)
        for r in range(max(1, networks // 5))
    ]
    for n in range(networks):
        net = cloud.create("network", {"name": f"net-{n:02d}", "mtu": 1450}, None)
        for s in range(2):
            subnet = cloud.create(
                "subnet",
                {
                    "network": net["id"],
                    "name": f"sub-{s}",
                    "cidr": f"10.{n}.{s}.0/24",
                    "gateway_ip": f"10.{n}.{s}.1",
                    "allocation_pools": [{"start": f"10.{n}.{s}.10", "end": f"10.{n}.{s}.200"}],
                    "dns_nameservers": ["192.0.2.53", "192.0.2.54"],
                },
                None,
            )
            router = routers[n // 5 % len(routers)]
            cloud.create("router_interface", {"router": router["id"], "subnet": subnet["id"]}, None)
    for r, router in enumerate(routers):
        route = {"destination": f"172.16.{r}.0/24", "nexthop": f"10.{r * 5}.0.5"}
        cloud.update("router", router["id"], {"routes": [route]})
    sg_ids = []
    for g in range(groups):
        group = cloud.create("security_group", {"name": f"sg-{g}", "description": f"g{g}"}, None)
        sg_ids.append(group["id"])
        for port in (22, 80, 443):
            cloud.create(
                "security_group_rule",
                {
                    "security_group": group["id"],
                    "direction": "ingress",
                    "ethertype": "IPv4",
                    "protocol": "tcp",
                    "port_range_min": port,
                    "port_range_max": port,
                    "remote_ip_prefix": "0.0.0.0/0",
                },
                None,
            )
    for g, group_id in enumerate(sg_ids[1:], start=1):
        cloud.create(
            "security_group_rule",
            {
                "security_group": group_id,
                "direction": "ingress",
                "ethertype": "IPv4",
                "protocol": "tcp",
                "port_range_min": 5432,
                "port_range_max": 5432,
                "remote_group": sg_ids[g - 1],
            },
            None,
        )
    for k in range(2):
        cloud.create("keypair", {"name": f"key-{k}", "public_key": f"ssh-ed25519 AAAA{k}"}, None)
    return cloud
