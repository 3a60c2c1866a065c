"""`devcloud reset`: delete every tenant resource in both tenants.

Kept: the install, service users, flavors, the public image and network, quotas and each
tenant's `conversion-host` servers (and `-2`, `-3`, ... with DEVCLOUD_CONVERSION_PAIRS; their
volumes are detached, though). Runs as each tenant's own user, so it only ever sees that
tenant's resources; the admin connection is used only to un-stick volumes a tenant user cannot
reset.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from typing import Any

from openstack import exceptions

from .cloud import CONVERSION_HOST, IMAGE_NAME, TENANTS, connect, log, wait


def _is_conversion_host(name: str | None) -> bool:
    """`conversion-host`, and `conversion-host-2`, ... of DEVCLOUD_CONVERSION_PAIRS."""
    return bool(re.fullmatch(rf"{CONVERSION_HOST}(-\d+)?", name or ""))


def reset_tenant(key: str) -> None:
    conn = connect(f"devcloud-{key}")
    project_id = conn.current_project_id
    admin = connect("devcloud-admin")

    # Servers first: they hold ports and volume attachments.
    servers = list(conn.compute.servers())
    for s in servers:
        if _is_conversion_host(s.name):
            for att in conn.compute.volume_attachments(s):
                log(f"{key}: detaching {att.volume_id} from {s.name}")
                conn.compute.delete_volume_attachment(s, att.volume_id)
        else:
            conn.compute.delete_server(s, force=True)
    for s in servers:
        if not _is_conversion_host(s.name):
            conn.compute.wait_for_delete(s, wait=180)

    for img in conn.image.images(owner=project_id):
        if img.name != IMAGE_NAME or img.visibility != "public":
            conn.image.delete_image(img, ignore_missing=True)

    _delete_volumes(conn, admin, key)

    for kp in conn.compute.keypairs():
        conn.compute.delete_keypair(kp, ignore_missing=True)

    net = conn.network
    for fip in net.ips(project_id=project_id):
        net.delete_ip(fip, ignore_missing=True)
    for router in net.routers(project_id=project_id):
        if router.routes:  # Neutron keeps an interface while a static route goes through it
            net.update_router(router, routes=[])
        for port in net.ports(device_id=router.id):
            if port.device_owner in ("network:router_interface",
                                     "network:router_interface_distributed",
                                     "network:ha_router_replicated_interface"):
                net.remove_interface_from_router(router, port_id=port.id)
        if router.external_gateway_info:
            net.update_router(router, external_gateway_info={})
        net.delete_router(router, ignore_missing=True)
    for port in net.ports(project_id=project_id):
        if not port.device_owner.startswith("network:"):
            net.delete_port(port, ignore_missing=True)
    for network in net.networks(project_id=project_id):
        if network.is_router_external:
            continue
        for subnet in net.subnets(network_id=network.id):
            net.delete_subnet(subnet, ignore_missing=True)
        net.delete_network(network, ignore_missing=True)
    for sg in net.security_groups(project_id=project_id):
        if sg.name != "default":
            net.delete_security_group(sg, ignore_missing=True)
    for pool in net.subnet_pools(project_id=project_id):
        net.delete_subnet_pool(pool, ignore_missing=True)
    log(f"{key}: reset")


def _delete_volumes(conn: Any, admin: Any, key: str) -> None:
    bs = conn.block_storage
    for snap in bs.snapshots(details=True):
        bs.delete_snapshot(snap, ignore_missing=True)
    for snap in bs.snapshots(details=True):
        bs.wait_for_delete(snap, wait=120)
    volumes = list(bs.volumes(details=True))
    # Detaches requested above are asynchronous: wait for those volumes to be free.
    for vol in volumes:
        if vol.status in ("in-use", "detaching", "attaching"):
            try:
                wait(f"volume {vol.id} to detach",
                     lambda v=vol: bs.get_volume(v).status not in ("in-use", "detaching",
                                                                     "attaching"),
                     timeout=120)
            except TimeoutError:
                log(f"{key}: volume {vol.id} stuck; resetting its state as admin")
                admin.block_storage.reset_volume_status(vol, status="available",
                                                        attach_status="detached",
                                                        migration_status=None)
    for vol in volumes:
        vol = bs.get_volume(vol)
        if vol.status not in ("available", "error", "error_restoring", "error_extending"):
            admin.block_storage.reset_volume_status(vol, status="available",
                                                    attach_status="detached",
                                                    migration_status=None)
        try:
            bs.delete_volume(vol, ignore_missing=True, cascade=True)
        except exceptions.ConflictException as e:
            log(f"{key}: cannot delete volume {vol.id}: {e}")
            raise
    for vol in volumes:
        bs.wait_for_delete(vol, wait=180)


def main(argv: list[str]) -> int:
    keys = argv or list(TENANTS)
    os.environ.setdefault("OS_CLIENT_CONFIG_FILE",
                          os.path.join(os.environ["DEVCLOUD_STATE"], "clouds.yaml"))
    for key in keys:
        reset_tenant(key)
    if "src" in keys:  # the seed record no longer describes the tenant
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(os.environ["DEVCLOUD_STATE"], "seed.json"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
