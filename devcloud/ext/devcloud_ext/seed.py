"""`devcloud seed`: reset both tenants, then fill src-tenant with a realistic topology.

Everything is created by src-tenant's non-admin user. Volume contents are written straight
into the volume files (we are the harness) as random, compressible and explicit-zero regions
with holes between them, and the sha256 of each volume's full logical content is recorded in
<state>/seed.json for tests and demos to verify copies against.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from typing import Any

from . import paths, reset
from .cloud import IMAGE_NAME, PUBLIC_NET, connect, image_bytes, log, sha256_file, volume_file

MiB = 1024 * 1024
GiB = 1024 * MiB

NETWORKS: list[dict[str, Any]] = [
    {"name": "app-net", "subnets": [
        {"name": "app-subnet", "ip_version": 4, "cidr": "10.10.0.0/24",
         "gateway_ip": "10.10.0.1",
         "allocation_pools": [{"start": "10.10.0.50", "end": "10.10.0.200"}],
         "dns_nameservers": ["10.10.0.2", "10.10.0.3"],
         "host_routes": [{"destination": "192.168.100.0/24", "nexthop": "10.10.0.254"}]},
        {"name": "app-subnet-v6", "ip_version": 6, "cidr": "2001:db8:10::/64",
         "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac",
         "dns_nameservers": ["2001:db8:10::53"]},
    ]},
    {"name": "db-net", "subnets": [
        {"name": "db-subnet", "ip_version": 4, "cidr": "10.20.0.0/24",
         "gateway_ip": "10.20.0.1",
         "allocation_pools": [{"start": "10.20.0.10", "end": "10.20.0.99"},
                              {"start": "10.20.0.150", "end": "10.20.0.199"}],
         "dns_nameservers": ["10.20.0.2"]},
        {"name": "db-subnet-v6", "ip_version": 6, "cidr": "2001:db8:20::/64",
         "ipv6_ra_mode": "dhcpv6-stateful", "ipv6_address_mode": "dhcpv6-stateful"},
    ]},
    {"name": "mgmt-net", "subnets": [
        {"name": "mgmt-subnet", "ip_version": 4, "cidr": "10.30.0.0/24",
         "gateway_ip": None, "is_dhcp_enabled": False,
         "host_routes": [{"destination": "10.99.0.0/16", "nexthop": "10.30.0.254"}]},
    ]},
]
ROUTERS = {"edge-router": ["app-subnet", "app-subnet-v6"], "db-router": ["db-subnet"]}

# (offset, length, kind) regions; everything else stays a hole.
DATA_LAYOUT = [(0, 4 * MiB, "random"), (64 * MiB, 8 * MiB, "text"),
               (200 * MiB, 4 * MiB, "zero"), (300 * MiB, 2 * MiB, "random"),
               (2 * GiB - 1 * MiB, 1 * MiB, "text")]
BOOT_EXTRA = [(100 * MiB, 2 * MiB, "random"), (400 * MiB, 3 * MiB, "text")]
# A detached volume (no server): it migrates on its own.
ARCHIVE_LAYOUT = [(0, 2 * MiB, "text"), (128 * MiB, 3 * MiB, "random"),
                  (1 * GiB - 1 * MiB, 1 * MiB, "random")]


def region_bytes(kind: str, length: int, salt: str) -> bytes:
    if kind == "zero":
        return b"\0" * length
    if kind == "text":
        line = f"devcloud seed {salt}: the quick brown fox jumps over the lazy dog\n".encode()
        return (line * (length // len(line) + 1))[:length]
    out = bytearray()
    counter = 0
    seed = hashlib.sha256(salt.encode()).digest()
    while len(out) < length:  # deterministic "random" (sha256 counter stream)
        out += hashlib.sha256(seed + counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:length])


def fill(path: str, layout: list[tuple[int, int, str]], salt: str) -> None:
    with open(path, "r+b") as f:
        for i, (off, length, kind) in enumerate(layout):
            os.pwrite(f.fileno(), region_bytes(kind, length, f"{salt}-{i}"), off)
        f.flush()
        os.fsync(f.fileno())


def _networks(conn: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"networks": {}, "subnets": {}}
    for spec in NETWORKS:
        net = conn.network.create_network(name=spec["name"], description="seeded by devcloud")
        out["networks"][spec["name"]] = net.id
        for sub in spec["subnets"]:
            s = conn.network.create_subnet(network_id=net.id, **sub)
            out["subnets"][sub["name"]] = s.id
    public = conn.network.find_network(PUBLIC_NET)
    out["routers"] = {}
    for name, subnets in ROUTERS.items():
        r = conn.network.create_router(name=name,
                                       external_gateway_info={"network_id": public.id})
        for sub in subnets:
            conn.network.add_interface_to_router(r, subnet_id=out["subnets"][sub])
        out["routers"][name] = r.id
    return out


def _security_groups(conn: Any) -> dict[str, str]:
    net = conn.network
    web = net.create_security_group(name="web", description="web tier")
    db = net.create_security_group(name="db", description="database tier")
    mgmt = net.create_security_group(name="mgmt", description="management access")
    rules = [
        dict(security_group_id=web.id, direction="ingress", ethertype="IPv4",
             protocol="tcp", port_range_min=80, port_range_max=80,
             remote_ip_prefix="0.0.0.0/0"),
        dict(security_group_id=web.id, direction="ingress", ethertype="IPv4",
             protocol="tcp", port_range_min=443, port_range_max=443,
             remote_ip_prefix="0.0.0.0/0"),
        dict(security_group_id=web.id, direction="ingress", ethertype="IPv6",
             protocol="tcp", port_range_min=443, port_range_max=443, remote_ip_prefix="::/0"),
        dict(security_group_id=web.id, direction="ingress", ethertype="IPv4",
             protocol="icmp", remote_ip_prefix="10.0.0.0/8"),
        # remote-group rules: web may reach db; db members talk to each other
        dict(security_group_id=db.id, direction="ingress", ethertype="IPv4",
             protocol="tcp", port_range_min=5432, port_range_max=5432,
             remote_group_id=web.id),
        dict(security_group_id=db.id, direction="ingress", ethertype="IPv4",
             remote_group_id=db.id),
        dict(security_group_id=db.id, direction="egress", ethertype="IPv4",
             protocol="udp", port_range_min=53, port_range_max=53,
             remote_ip_prefix="10.20.0.2/32"),
        dict(security_group_id=mgmt.id, direction="ingress", ethertype="IPv4",
             protocol="tcp", port_range_min=22, port_range_max=22,
             remote_ip_prefix="10.30.0.0/24"),
        dict(security_group_id=mgmt.id, direction="ingress", ethertype="IPv6",
             protocol="ipv6-icmp", remote_ip_prefix="::/0"),
    ]
    for r in rules:
        net.create_security_group_rule(**r)
    return {"web": web.id, "db": db.id, "mgmt": mgmt.id}


def _keypair(conn: Any) -> dict[str, str]:
    key = os.path.join(paths.state_dir(), "ssh", "seed-key")
    if not os.path.exists(key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "seed-key",
                        "-f", key], check=True)
    with open(key + ".pub") as f:
        pub = f.read().strip()
    kp = conn.compute.create_keypair(name="seed-key", public_key=pub)
    return {"name": kp.name, "fingerprint": kp.fingerprint, "public_key": pub}


def _wait_volume(conn: Any, vol: Any, status: str = "available") -> Any:
    return conn.block_storage.wait_for_status(vol, status=status, failures=["error"],
                                              interval=1, wait=300)


def seed() -> dict[str, Any]:
    t0 = time.monotonic()
    reset.main([])
    conn = connect("devcloud-src")
    bs, compute = conn.block_storage, conn.compute
    image = conn.image.find_image(IMAGE_NAME)
    tiny, small = compute.find_flavor("m1.tiny"), compute.find_flavor("m1.small")
    topo = _networks(conn)
    sgs = _security_groups(conn)
    keypair = _keypair(conn)
    nets = topo["networks"]

    # Volumes: a bootable one from the image, a data volume; contents written in place.
    boot = bs.create_volume(name="boot-vol", size=1, image_id=image.id,
                            description="boot volume of vm-bfv")
    data = bs.create_volume(name="data-vol", size=2, description="data volume of vm-bfv")
    archive = bs.create_volume(name="archive-vol", size=1, description="detached archive",
                               metadata={"retention": "7y"})
    boot, data = _wait_volume(conn, boot), _wait_volume(conn, data)
    archive = _wait_volume(conn, archive)
    fill(volume_file(boot.id), BOOT_EXTRA, "boot-vol")
    fill(volume_file(data.id), DATA_LAYOUT, "data-vol")
    fill(volume_file(archive.id), ARCHIVE_LAYOUT, "archive-vol")

    common = {"key_name": "seed-key"}
    bfv = compute.create_server(
        name="vm-bfv", flavor_id=small.id, networks=[{"uuid": nets["app-net"]}],
        security_groups=[{"name": "web"}],
        block_device_mapping=[
            {"boot_index": 0, "uuid": boot.id, "source_type": "volume",
             "destination_type": "volume", "delete_on_termination": False},
            {"boot_index": -1, "uuid": data.id, "source_type": "volume",
             "destination_type": "volume", "delete_on_termination": False},
        ], metadata={"role": "app", "boot": "volume"}, **common)
    img_vm = compute.create_server(
        name="vm-image", flavor_id=tiny.id, image_id=image.id,
        networks=[{"uuid": nets["app-net"]}], security_groups=[{"name": "web"}],
        metadata={"role": "web", "boot": "image"}, **common)
    p1 = conn.network.create_port(name="vm-multinic-app", network_id=nets["app-net"],
                                  fixed_ips=[{"subnet_id": topo["subnets"]["app-subnet"],
                                              "ip_address": "10.10.0.60"}],
                                  security_group_ids=[sgs["web"]])
    p2 = conn.network.create_port(name="vm-multinic-db", network_id=nets["db-net"],
                                  fixed_ips=[{"subnet_id": topo["subnets"]["db-subnet"],
                                              "ip_address": "10.20.0.60"}],
                                  security_group_ids=[sgs["db"]])
    multi = compute.create_server(
        name="vm-multinic", flavor_id=tiny.id, image_id=image.id,
        networks=[{"port": p1.id}, {"port": p2.id}], metadata={"role": "db"}, **common)
    active = compute.create_server(
        name="vm-active", flavor_id=tiny.id, image_id=image.id,
        networks=[{"uuid": nets["mgmt-net"]}], security_groups=[{"name": "mgmt"}],
        metadata={"role": "mgmt"}, **common)
    servers = {s.name: s for s in (bfv, img_vm, multi, active)}
    for name, s in servers.items():
        servers[name] = compute.wait_for_server(s, status="ACTIVE", wait=300, interval=1)
    for name in ("vm-bfv", "vm-image", "vm-multinic"):
        compute.stop_server(servers[name])
    for name in ("vm-bfv", "vm-image", "vm-multinic"):
        servers[name] = compute.wait_for_server(servers[name], status="SHUTOFF", wait=300,
                                                interval=1)

    volumes = {}
    for name, vol, attached, layout in (("boot-vol", boot, "vm-bfv", BOOT_EXTRA),
                                        ("data-vol", data, "vm-bfv", DATA_LAYOUT),
                                        ("archive-vol", archive, None, ARCHIVE_LAYOUT)):
        path = volume_file(vol.id)
        st = os.stat(path)
        volumes[name] = {"id": vol.id, "size_gb": vol.size, "bootable": name == "boot-vol",
                         "attached_to": attached, "sha256": sha256_file(path),
                         "allocated_bytes": st.st_blocks * 512,
                         "regions": [{"offset": o, "length": n, "kind": k}
                                     for o, n, k in layout]}
    result = {
        "cloud": "devcloud-src",
        "project": "src-tenant",
        "project_id": conn.current_project_id,
        "image": {"name": IMAGE_NAME, "id": image.id,
                  "sha256": hashlib.sha256(image_bytes()).hexdigest()},
        **topo,
        "security_groups": sgs,
        "keypair": keypair,
        "ports": {"vm-multinic-app": {"id": p1.id, "ip": "10.10.0.60"},
                  "vm-multinic-db": {"id": p2.id, "ip": "10.20.0.60"}},
        "servers": {name: {"id": s.id, "status": s.status,
                           "boot": "volume" if name == "vm-bfv" else "image",
                           "flavor": "m1.small" if name == "vm-bfv" else "m1.tiny"}
                    for name, s in servers.items()},
        "volumes": volumes,
        "seconds": round(time.monotonic() - t0, 1),
    }
    out = os.path.join(paths.state_dir(), "seed.json")
    with open(out + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(out + ".tmp", out)
    log(f"seed: src-tenant seeded in {result['seconds']}s; see {out}")
    return result


def main(argv: list[str]) -> int:
    seed()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
