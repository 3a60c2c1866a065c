"""Bootstrap steps run by `devcloud up` inside the venv (openstacksdk available).

    python -m devcloud_ext.bootstrap identity   # service users, catalog (Keystone only)
    python -m devcloud_ext.bootstrap wait       # nova-compute and cinder-volume report up
    python -m devcloud_ext.bootstrap cloud      # tenants, flavors, image, network, quotas,
                                                # conversion hosts + conversion-hosts.yaml
Every step is find-or-create, so re-running is cheap and safe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import yaml

from . import paths
from .cloud import (
    CONVERSION_HOST,
    CONVERSION_IMAGE,
    FLAVORS,
    IMAGE_NAME,
    PUBLIC_CIDR,
    PUBLIC_NET,
    TENANTS,
    connect,
    image_bytes,
    log,
    wait,
)

HOST = "127.0.0.1"
# Must match devcloud/harness/layout.py (PORTS, DEVCLOUD_PORT_OFFSET).
OFFSET = int(os.environ.get("DEVCLOUD_PORT_OFFSET") or 0)
SERVICE_PASSWORD = "devcloud-service"
# name, type, port, path
CATALOG = [
    ("glance", "image", 19292, ""),
    ("placement", "placement", 18778, ""),
    ("nova", "compute", 18774, "/v2.1"),
    ("neutron", "network", 19696, ""),
    ("cinderv3", "block-storage", 18776, "/v3/%(project_id)s"),
    # Nova's [cinder] catalog_info defaults to the legacy `volumev3` type.
    ("cinder-volumev3", "volumev3", 18776, "/v3/%(project_id)s"),
]
SERVICE_USERS = ["glance", "placement", "nova", "neutron", "cinder"]
SSH_PORTS = {"src": 2221, "dst": 2222}


def _role(conn: Any, name: str) -> Any:
    return conn.identity.find_role(name) or conn.identity.create_role(name=name)


def identity() -> None:
    conn = connect("devcloud-admin")
    ident = conn.identity
    domain = ident.find_domain("default")
    service_project = ident.find_project("service", domain_id=domain.id) or \
        ident.create_project(name="service", domain_id=domain.id)
    admin_role, service_role = _role(conn, "admin"), _role(conn, "service")
    _role(conn, "member")
    _role(conn, "reader")
    for name in SERVICE_USERS:
        user = ident.find_user(name, domain_id=domain.id)
        if user is None:
            user = ident.create_user(name=name, password=SERVICE_PASSWORD, domain_id=domain.id)
        for role in (admin_role, service_role):
            ident.assign_project_role_to_user(service_project, user, role)
    for name, stype, port, path in CATALOG:
        svc = next((s for s in ident.services() if s.type == stype), None)
        if svc is None:
            svc = ident.create_service(name=name, type=stype)
        have = {e.interface for e in ident.endpoints(service_id=svc.id)}
        for iface in ("public", "internal", "admin"):
            if iface not in have:
                url = f"http://{HOST}:{port + OFFSET}{path}"
                ident.create_endpoint(service_id=svc.id, interface=iface, url=url,
                                      region_id="RegionOne")
    log("identity: service users and catalog ready")


def wait_services(nova_manage: str, nova_conf: str) -> None:
    conn = connect("devcloud-admin")

    def compute_up() -> bool:
        return any(s.binary == "nova-compute" and s.state == "up"
                   for s in conn.compute.services())

    def volume_up() -> bool:
        return any(s.binary == "cinder-volume" and s.state == "up"
                   for s in conn.block_storage.services())

    wait("nova-compute to report up", compute_up, timeout=300, interval=2)

    def hypervisor_mapped() -> bool:
        if list(conn.compute.hypervisors()):
            return True
        # The scheduler only sees hosts mapped into a cell; don't wait for the periodic task.
        subprocess.run([nova_manage, "--config-file", nova_conf, "cell_v2", "discover_hosts"],
                       capture_output=True, check=False)
        return bool(list(conn.compute.hypervisors()))

    wait("the compute host to be mapped", hypervisor_mapped, timeout=120, interval=3)
    wait("cinder-volume to report up", volume_up, timeout=300, interval=2)
    log("wait: nova-compute and cinder-volume are up")


def _tenants(conn: Any) -> dict[str, Any]:
    ident = conn.identity
    domain = ident.find_domain("default")
    member = _role(conn, "member")
    projects = {}
    for key, t in TENANTS.items():
        proj = ident.find_project(t["project"], domain_id=domain.id) or ident.create_project(
            name=t["project"], domain_id=domain.id, description=f"devcloud {key} tenant")
        user = ident.find_user(t["user"], domain_id=domain.id)
        if user is None:
            user = ident.create_user(name=t["user"], password=t["password"],
                                     domain_id=domain.id, default_project_id=proj.id)
        ident.assign_project_role_to_user(proj, user, member)
        projects[key] = proj
    return projects


def _quotas(conn: Any, projects: dict[str, Any]) -> None:
    for proj in projects.values():
        conn.set_compute_quotas(proj.id, instances=100, cores=400, ram=409600,
                                key_pairs=100, server_groups=50)
        conn.set_network_quotas(proj.id, network=200, subnet=200, port=500, router=50,
                                floatingip=50, security_group=200, security_group_rule=2000)
        conn.set_volume_quotas(proj.id, volumes=100, snapshots=100, gigabytes=5000,
                               backups=0, backup_gigabytes=0)


def _flavors(conn: Any) -> None:
    for name, (vcpus, ram, disk) in FLAVORS.items():
        if conn.compute.find_flavor(name) is None:
            conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk,
                                       is_public=True)


def _image(conn: Any) -> Any:
    img = conn.image.find_image(IMAGE_NAME)
    if img is not None and img.status != "active":
        conn.image.delete_image(img)
        img = None
    if img is None:
        data = image_bytes()
        img = conn.image.create_image(
            name=IMAGE_NAME, disk_format="raw", container_format="bare", visibility="public",
            data=data, min_disk=1, allow_duplicates=True,
        )
        img = conn.image.wait_for_status(img, "active", wait=120)
    return img


def _conversion_image(conn: Any) -> Any:
    """`tenantshift-conversion`: what a conversion image is to the fake driver (a server booted
    from it gets an sshd, see guest_ssh). Its bytes are the bootstrap image's."""
    img = conn.image.find_image(CONVERSION_IMAGE)
    if img is not None and img.status != "active":
        conn.image.delete_image(img)
        img = None
    if img is None:
        img = conn.image.create_image(
            name=CONVERSION_IMAGE, disk_format="raw", container_format="bare",
            visibility="public", data=image_bytes(), min_disk=1, allow_duplicates=True,
            **{paths.CONVERSION_IMAGE_PROPERTY: "true"},
        )
        img = conn.image.wait_for_status(img, "active", wait=120)
    return img


def _public_network(conn: Any) -> None:
    net = conn.network.find_network(PUBLIC_NET)
    if net is None:
        net = conn.network.create_network(
            name=PUBLIC_NET, is_router_external=True, is_shared=True,
            provider_network_type="flat", provider_physical_network="public")
    if not list(conn.network.subnets(network_id=net.id)):
        conn.network.create_subnet(
            name="public-subnet", network_id=net.id, ip_version=4, cidr=PUBLIC_CIDR,
            gateway_ip="172.24.4.1", is_dhcp_enabled=False,
            allocation_pools=[{"start": "172.24.4.10", "end": "172.24.4.250"}])


#: DEVCLOUD_CONVERSION_PAIRS (see devcloud/harness/layout.py): pairs 2.. add an sshd per
#: tenant (keys src2/dst2, ...; ports 2223/2224, ...) and a `conversion-host-2`, ... server.
MAX_PAIRS = 8


def _pair_count() -> int:
    return int(os.environ.get("DEVCLOUD_CONVERSION_PAIRS") or 1)


def _host_name(k: int) -> str:
    return CONVERSION_HOST if k == 1 else f"{CONVERSION_HOST}-{k}"


def _conversion_host(key: str, image_id: str, name: str = CONVERSION_HOST) -> Any:
    """The tenant's conversion host server `name` (created by its non-admin user)."""
    conn = connect(f"devcloud-{key}")
    servers = list(conn.compute.servers(name=f"^{name}$"))
    keep = None
    for s in servers:
        # power_state 1 = RUNNING: an ACTIVE server its compute host forgot reads 0 (NOSTATE)
        if keep is None and s.status == "ACTIVE" and s.power_state in (1, None):
            keep = s
        else:  # ERROR/SHUTOFF ghosts or duplicates: replace
            log(f"{key}: removing stale {name} {s.id} ({s.status})")
            conn.compute.delete_server(s, force=True)
            conn.compute.wait_for_delete(s, wait=120)
    if keep is not None:
        return keep
    flavor = conn.compute.find_flavor("m1.tiny")
    server = conn.compute.create_server(
        name=name, image_id=image_id, flavor_id=flavor.id, networks="none",
        metadata={"devcloud": "conversion-host"})
    return conn.compute.wait_for_server(server, status="ACTIVE", wait=300, interval=2)


def _remove_surplus_hosts(key: str, pairs: int) -> None:
    """Servers of pairs beyond DEVCLOUD_CONVERSION_PAIRS (an earlier `up` asked for more)."""
    conn = connect(f"devcloud-{key}")
    surplus = {_host_name(k) for k in range(pairs + 1, MAX_PAIRS + 1)}
    gone = [s for s in conn.compute.servers() if s.name in surplus]
    for s in gone:
        for att in conn.compute.volume_attachments(s):
            conn.compute.delete_volume_attachment(s, att.volume_id)
        log(f"{key}: removing {s.name} (beyond DEVCLOUD_CONVERSION_PAIRS)")
        conn.compute.delete_server(s, force=True)
    for s in gone:
        conn.compute.wait_for_delete(s, wait=120)


def cloud() -> None:
    admin = connect("devcloud-admin")
    projects = _tenants(admin)
    _quotas(admin, projects)
    _flavors(admin)
    image = _image(admin)
    _conversion_image(admin)
    _public_network(admin)
    ssh = os.path.join(paths.state_dir(), "ssh")
    known_hosts = os.path.join(ssh, "known_hosts")
    # The conversion hosts' helper runs on "the host": Debian's own python3 (stdlib only).
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
    count = _pair_count()
    for key in ("src", "dst"):
        _remove_surplus_hosts(key, count)
    pairs: list[dict[str, Any]] = []
    detail_pairs: list[dict[str, Any]] = []
    for k in range(1, count + 1):
        manifest: dict[str, Any] = {}
        details: dict[str, Any] = {}
        for key, label in (("src", "source"), ("dst", "destination")):
            sshd = key if k == 1 else f"{key}{k}"
            server = _conversion_host(key, image.id, _host_name(k))
            by_id = paths.by_id_dir(server.id)
            os.makedirs(by_id, exist_ok=True)
            with open(os.path.join(ssh, sshd, "ssh_host_ed25519_key.pub")) as f:
                host_key = " ".join(f.read().split()[:2])
            port = SSH_PORTS[key] + 2 * (k - 1) + OFFSET
            # Exactly tenantshift's manifest `conversion_hosts.<side>` keys (extra keys are
            # rejected there), so the file can be pasted or loaded as is.
            manifest[label] = {
                "server": _host_name(k),
                "address": HOST,
                "port": port,
                "user": "root",
                "key_file": os.path.join(ssh, "id_ed25519"),
                "host_key": host_key,
                "known_hosts": known_hosts,
                "device_dir": by_id,
                "python": python,
            }
            details[label] = {
                **manifest[label],
                "server_id": server.id,
                "cloud": f"devcloud-{key}",
                "project": TENANTS[key]["project"],
                "known_hosts_line": f"[{HOST}]:{port} {host_key}",
            }
        pairs.append({"name": f"pair-{k}", **manifest})
        detail_pairs.append({"name": f"pair-{k}", **details})
    # One pair: today's form (source/destination). Several: `pairs`, each named.
    document: dict[str, Any] = (
        {k: v for k, v in pairs[0].items() if k != "name"} if count == 1 else {"pairs": pairs}
    )
    # The .json keeps pair 1 as source/destination (what the tests' fixture reads) and
    # lists every pair under `pairs`.
    all_details = {
        "source": detail_pairs[0]["source"],
        "destination": detail_pairs[0]["destination"],
        "pairs": detail_pairs,
    }
    with open(known_hosts + ".tmp", "w") as f:
        f.writelines(
            p[side]["known_hosts_line"] + "\n"
            for p in detail_pairs for side in ("source", "destination")
        )
    os.replace(known_hosts + ".tmp", known_hosts)
    base = os.path.join(paths.state_dir(), "conversion-hosts")
    with open(base + ".yaml.tmp", "w") as f:
        f.write("# written by `devcloud up`: a tenantshift manifest's `conversion_hosts:`\n")
        yaml.safe_dump(document, f, sort_keys=False, default_flow_style=False)
    os.replace(base + ".yaml.tmp", base + ".yaml")
    with open(base + ".json.tmp", "w") as f:
        json.dump(all_details, f, indent=2)
    os.replace(base + ".json.tmp", base + ".json")
    log(f"cloud: tenants, flavors, image, public network, {count} conversion host pair(s) "
        f"ready ({base}.yaml)")


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else ""
    if cmd == "identity":
        identity()
    elif cmd == "wait":
        wait_services(argv[1], argv[2])
    elif cmd == "cloud":
        cloud()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
