"""Wiping a devcloud project back to empty before a test migrates into it."""

from __future__ import annotations

from openstack.connection import Connection


def wipe_network_resources(conn: Connection) -> None:
    """Everything tenantshift migrates, gone from the project; ``default`` back to its rules."""
    project = conn.current_project_id
    for router in conn.network.routers(project_id=project):
        if router.routes:
            # Neutron keeps an interface while a static route goes through it.
            conn.network.update_router(router, routes=[])
        for port in conn.network.ports(device_id=router.id):
            if port.device_owner.startswith("network:router_interface"):
                conn.network.remove_interface_from_router(router, port_id=port.id)
        conn.network.delete_router(router)
    for network in conn.network.networks(project_id=project):
        for port in conn.network.ports(network_id=network.id):
            # DHCP and other service ports go with the network (and policy keeps them).
            if not port.device_owner.startswith("network:"):
                conn.network.delete_port(port)
        conn.network.delete_network(network)
    for group in conn.network.security_groups(project_id=project):
        if group.name != "default":
            conn.network.delete_security_group(group)
            continue
        for rule in conn.network.security_group_rules(security_group_id=group.id):
            pristine = (rule.direction == "ingress" and rule.remote_group_id == group.id) or (
                rule.direction == "egress"
                and not rule.protocol
                and not rule.remote_ip_prefix
                and not rule.remote_group_id
            )
            if not pristine:
                conn.network.delete_security_group_rule(rule)
    for keypair in conn.compute.keypairs():
        conn.compute.delete_keypair(keypair)


def wipe_destination(conn: Connection, keep_server: str) -> None:
    """Servers (but the conversion host), their volumes, then the network resources."""
    servers = [s for s in conn.compute.servers() if s.id != keep_server]
    for server in servers:
        conn.compute.delete_server(server)
    for server in servers:
        conn.compute.wait_for_delete(server, wait=300)
    for volume in conn.block_storage.volumes(details=True):
        for attachment in volume.attachments or []:
            conn.compute.delete_volume_attachment(attachment["server_id"], volume.id)
        conn.block_storage.wait_for_status(volume, "available", wait=300)
        conn.block_storage.delete_volume(volume)
    wipe_network_resources(conn)
