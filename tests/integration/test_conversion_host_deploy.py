"""Conversion hosts deployed by tenantshift, from tenants without any, on the real local
OpenStack: ``conversion-hosts deploy`` boots a server from the devcloud's conversion image in
each tenant (whose fake hypervisor starts a real sshd for it, prints its host key into the
console log, and shows its attached volumes at one device directory), then ``plan``/``apply``
migrate a server with its volumes through those hosts, bytes identical. A second deploy changes
nothing; ``remove`` leaves nothing of ours; a deploy killed midway converges when run again.

The source host's key comes from its console log; the destination's console shows none (server
metadata ``devcloud_console_host_keys: "false"``), so its key is pinned on first use, which its
manifest allows (``trust_first_use``). The tests build on each other in file order.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest
import yaml
from openstack.connection import Connection

from tenantshift.engine.convhosts.hostkeys import console_host_keys, fingerprint
from tenantshift.providers.convhost_ops import MARKER, SERVER_MARKER_KEY
from tests.integration.conftest import Devcloud, run_cli
from tests.integration.destination import wipe_destination

pytestmark = pytest.mark.devcloud

SERVERS = {"source": "tenantshift-conv-src", "destination": "tenantshift-conv-dst"}
GROUP = KEYPAIR = "tenantshift-conversion"
OFFSET = int(os.environ.get("DEVCLOUD_PORT_OFFSET") or 0)
#: The devcloud's documented mapping: a conversion-image server answers SSH on 127.0.0.1 at
#: its metadata's devcloud_ssh_port (docs/devcloud.md). Unique per devcloud via the offset.
PORTS = {"source": 24000 + OFFSET, "destination": 24001 + OFFSET}
MIGRATED_VOLUMES = ("boot-vol", "data-vol")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def ensure_routed_network(conn: Connection, name: str, cidr: str) -> None:
    """A network whose ports can hold a floating IP from `public` (the destination tenant has
    no network of its own: the migration's come later)."""
    if conn.network.find_network(name) is not None:
        return
    net = conn.network.create_network(name=name)
    subnet = conn.network.create_subnet(network_id=net.id, ip_version=4, cidr=cidr, name=name)
    public = conn.network.find_network("public")
    router = conn.network.create_router(name=name, external_gateway_info={"network_id": public.id})
    conn.network.add_interface_to_router(router, subnet=subnet.id)


def host_section(devcloud: Devcloud, key: Path, side: str, network: str) -> dict[str, Any]:
    deploy: dict[str, Any] = {
        "image": "tenantshift-conversion",
        "flavor": "m1.tiny",
        "network": network,
        "floating_ip_network": "public",
        "allow_ssh_from": ["127.0.0.1/32"],
        "metadata": {"devcloud_ssh_port": str(PORTS[side])},
    }
    if side == "destination":
        deploy["metadata"]["devcloud_console_host_keys"] = "false"
        deploy["trust_first_use"] = True
        deploy["volume_size"] = 1  # volume-backed, the other one image-backed
    return {
        "server": SERVERS[side],
        # The devcloud maps the floating IP to a loopback port: connect there.
        "address": "127.0.0.1",
        "port": PORTS[side],
        "user": "cloud-user",
        "key_file": str(key),
        "device_dir": str(devcloud.state / "guest" / "by-id"),
        "python": "/usr/bin/python3",
        "deploy": deploy,
    }


@pytest.fixture(scope="module")
def clouds(devcloud: Devcloud) -> Iterator[dict[str, Connection]]:
    pair = {side: openstack.connect(cloud=f"devcloud-{side}") for side in ("src", "dst")}
    wipe_destination(pair["dst"], devcloud.destination_host.server_id)
    ensure_routed_network(pair["dst"], "chost-net", "10.99.0.0/24")
    yield pair
    wipe_destination(pair["dst"], devcloud.destination_host.server_id)
    # The migration through the deployed hosts stopped and touched the seeded source tenant:
    # later modules (the demo report, the workload tests) count on the seed as it was.
    devcloud.run("seed")


@pytest.fixture(scope="module")
def manifest(
    tmp_path_factory: pytest.TempPathFactory, devcloud: Devcloud, clouds: Any
) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("convhosts")
    key = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    body = {
        "version": 1,
        "source": {"cloud": "devcloud-src"},
        "destination": {"cloud": "devcloud-dst"},
        "map": {"external_networks": {"public": "public"}},
        "select": {
            "server": {"include": ["vm-bfv"]},
            "volume": {"include": list(MIGRATED_VOLUMES)},
            "image": {"include": []},
            # The source host's own group and keypair live in the source tenant too, not
            # excluded here: the plan leaves them out by itself (the deploy record).
        },
        "conversion_hosts": {
            "source": host_section(devcloud, key, "source", "app-net"),
            "destination": host_section(devcloud, key, "destination", "chost-net"),
        },
        "options": {"state_dir": str(directory / "state")},
    }
    path = directory / "migration.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    yield path
    # Whatever a failed test left: other modules read the source tenant's servers.
    run_cli("conversion-hosts", "remove", "-m", str(path))


def ours(conn: Connection, side: str) -> dict[str, list[str]]:
    """Everything of ours in one tenant: servers, floating IPs, their ports, group, keypair."""
    servers = [
        s
        for s in conn.compute.servers(name=f"^{SERVERS[side]}$")
        if (s.metadata or {}).get(SERVER_MARKER_KEY) == side
    ]
    ports = [p.id for s in servers for p in conn.network.ports(device_id=s.id)]
    return {
        "servers": [s.id for s in servers],
        "floating_ips": [
            ip.id
            for ip in conn.network.ips(project_id=conn.current_project_id)
            if (ip.description or "").startswith(MARKER)
        ],
        "ports": ports,
        "groups": [g.id for g in conn.network.security_groups(name=GROUP)],
        "keypairs": [k.name for k in conn.compute.keypairs() if k.name == KEYPAIR],
    }


def status(manifest: Path) -> dict[str, dict[str, Any]]:
    out = run_cli("conversion-hosts", "status", "-m", str(manifest), "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    return {row["side"]: row for row in json.loads(out.stdout)}


def test_deploy_creates_both_hosts_and_pins_their_keys(
    manifest: Path, clouds: dict[str, Connection]
) -> None:
    for conn, side in ((clouds["src"], "source"), (clouds["dst"], "destination")):
        assert ours(conn, side)["servers"] == [], "a conversion host is left from another run"
    started = time.monotonic()
    out = run_cli("conversion-hosts", "deploy", "-m", str(manifest))
    assert out.returncode == 0, out.stdout + out.stderr
    print(f"deployed in {time.monotonic() - started:.0f}s")
    assert "Conversion hosts deployed." in out.stdout
    rows = status(manifest)
    for conn, side in ((clouds["src"], "source"), (clouds["dst"], "destination")):
        row = rows[side]
        found = ours(conn, side)
        assert row["state"] == "deployed" and [row["server_id"]] == found["servers"]
        assert len(found["floating_ips"]) == 1 and found["groups"] and found["keypairs"]
        ip = conn.network.get_ip(found["floating_ips"][0])
        assert ip.floating_ip_address == row["cloud_address"] and ip.port_id in found["ports"]
        assert f"{row['address']}:{row['port']}" in out.stdout and row["fingerprint"] in out.stdout
        server = conn.compute.get_server(row["server_id"])
        assert server.status == "ACTIVE"
        console = conn.compute.get_server_console_output(server)["output"]
        keys = console_host_keys(console)
        if side == "source":
            assert row["host_key_source"] == "console-log"
            assert [fingerprint(k) for k in keys] == [row["fingerprint"]]
        else:
            assert keys == [] and row["host_key_source"] == "first-use"
            assert f"WARNING: no host key in the console log of {SERVERS[side]!r}" in out.stdout
    # Only the other host and allow_ssh_from may SSH in, on port 22.
    src_group = clouds["src"].network.find_security_group(GROUP)
    cidrs = sorted(
        r.remote_ip_prefix
        for r in clouds["src"].network.security_group_rules(security_group_id=src_group.id)
        if r.port_range_min == 22
    )
    assert cidrs == sorted(["127.0.0.1/32", f"{rows['destination']['cloud_address']}/32"])


def test_a_second_deploy_changes_nothing(manifest: Path, clouds: dict[str, Connection]) -> None:
    before = {s: ours(c, s) for c, s in ((clouds["src"], "source"), (clouds["dst"], "destination"))}
    out = run_cli("conversion-hosts", "deploy", "-m", str(manifest))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No changes: already deployed." in out.stdout
    after = {s: ours(c, s) for c, s in ((clouds["src"], "source"), (clouds["dst"], "destination"))}
    assert after == before


def test_a_server_migrates_through_the_deployed_hosts(
    devcloud: Devcloud, manifest: Path, clouds: dict[str, Connection]
) -> None:
    plan = run_cli("plan", "-m", str(manifest), "--json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    changes = {c["address"]: c for c in json.loads(plan.stdout)["changes"]}
    assert changes["server.vm-bfv"]["action"] == "migrate", changes["server.vm-bfv"]
    assert not any(SERVERS["source"] in address for address in changes)
    assert not any(GROUP in address for address in changes), sorted(changes)  # nor its tools
    applied = run_cli("apply", "-m", str(manifest), "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    seed = json.loads(devcloud.seed_json.read_text())
    copies = {
        (v.metadata or {}).get("tenantshift-src", "").rpartition(":")[2]: v
        for v in clouds["dst"].block_storage.volumes(details=True)
    }
    for name in MIGRATED_VOLUMES:
        source = seed["volumes"][name]
        copy = next(v for marker, v in copies.items() if source["id"] in marker)
        path = devcloud.state / "volumes" / f"volume-{copy.id}"
        assert sha256_file(path) == source["sha256"], name
    # The deployed hosts are left with nothing of the migration attached (the volume-backed
    # destination host keeps its own boot volume).
    migrated = {v.id for marker, v in copies.items() if marker} | {
        v["id"] for v in seed["volumes"].values()
    }
    for conn, side in ((clouds["src"], "source"), (clouds["dst"], "destination")):
        (server_id,) = ours(conn, side)["servers"]
        attached = {a.volume_id for a in conn.compute.volume_attachments(server_id)}
        assert not attached & migrated, side
        assert len(attached) == (1 if side == "destination" else 0), attached


def test_remove_then_a_killed_deploy_converges_and_remove_leaves_nothing(
    manifest: Path, clouds: dict[str, Connection]
) -> None:
    removed = run_cli("conversion-hosts", "remove", "-m", str(manifest))
    assert removed.returncode == 0, removed.stdout + removed.stderr
    pairs = ((clouds["src"], "source"), (clouds["dst"], "destination"))
    empty = {"servers": [], "floating_ips": [], "ports": [], "groups": [], "keypairs": []}
    assert {side: ours(conn, side) for conn, side in pairs} == {
        "source": empty,
        "destination": empty,
    }

    # Killed once the source server exists (the record says so), before its floating IP.
    record = manifest.parent / "state" / "conversion-hosts.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenantshift", "conversion-hosts", "deploy", "-m", str(manifest)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            hosts = json.loads(record.read_text())["hosts"]
        except (OSError, ValueError, KeyError):
            hosts = {}
        if "server_id" in hosts.get("source", {}):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the deploy ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    again = run_cli("conversion-hosts", "deploy", "-m", str(manifest))
    assert again.returncode == 0, again.stdout + again.stderr
    for conn, side in pairs:
        found = ours(conn, side)
        assert len(found["servers"]) == 1 and len(found["floating_ips"]) == 1, (side, found)
        assert len(found["groups"]) == 1 and found["keypairs"] == [KEYPAIR]
    assert {row["state"] for row in status(manifest).values()} == {"deployed"}

    removed = run_cli("conversion-hosts", "remove", "-m", str(manifest))
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert {side: ours(conn, side) for conn, side in pairs} == {
        "source": empty,
        "destination": empty,
    }
    assert not record.exists() or json.loads(record.read_text())["hosts"] == {}
    assert {row["state"] for row in status(manifest).values()} == {"not deployed"}
