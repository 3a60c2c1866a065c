"""Issue 4 end to end: the seeded ``src-tenant`` network resources migrated to ``dst-tenant`` on
the real local OpenStack, through the ``tenantshift`` command a user runs.

The tests in this module build on each other in file order (first apply, then drift, rename,
staleness, interruption), on one destination wiped at the start of the module.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest
from openstack.connection import Connection

from tenantshift.manifest import CloudRef, Manifest
from tenantshift.providers.openstack import OpenStackProvider
from tenantshift.resources import REGISTRY, Snapshot, derive_desired
from tenantshift.resources.marker import split_marker
from tests.integration.destination import wipe_destination

pytestmark = pytest.mark.devcloud

ROOT = Path(__file__).resolve().parents[2]
TENANTSHIFT = [sys.executable, "-m", "tenantshift"]


# -- helpers -----------------------------------------------------------------------------------
def tenantshift(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*TENANTSHIFT, *args], capture_output=True, text=True, timeout=900, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"tenantshift {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def plan_json(manifest: Path) -> dict[str, Any]:
    result = tenantshift("plan", "-m", str(manifest), "--json", check=True)
    return json.loads(result.stdout)


def pending(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["address"]: c for c in document["changes"] if c["action"] != "no-op"}


def snapshot(cloud: str) -> Snapshot:
    return OpenStackProvider.from_cloud_ref(CloudRef(cloud=cloud), label=cloud).snapshot()


def assert_migrated_equal(manifest: Manifest) -> None:
    """Field by field: every desired resource exists in the destination with the same params
    (a field the cloud chooses, a port's MAC without ``preserve_macs``, is not compared)."""
    desired = derive_desired(
        snapshot("devcloud-src"), manifest.select, manifest.map, workloads=manifest.workloads
    )
    actual = snapshot("devcloud-dst")
    missing = sorted(set(desired.resources) - set(actual.resources))
    assert not missing, f"not in the destination: {missing}"
    different = {
        address: (want.params, actual.resources[address].params)
        for address, want in desired.resources.items()
        if any(
            f.differs(actual.resources[address].params.get(f.name), want.params.get(f.name))
            for f in REGISTRY[want.kind].fields
        )
    }
    assert not different, different


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clouds(devcloud: Any) -> Iterator[dict[str, Connection]]:
    pair = {side: openstack.connect(cloud=f"devcloud-{side}") for side in ("src", "dst")}
    # Servers first: Neutron refuses a non-admin the deletion of a port bound to a server.
    wipe_destination(pair["dst"], devcloud.destination_host.server_id)
    yield pair
    wipe_destination(pair["dst"], devcloud.destination_host.server_id)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("netmig") / "migration.yaml"
    text = (ROOT / "examples" / "devcloud.yaml").read_text()
    # The network half only: workloads have their own modules (they need conversion hosts).
    text += "select:\n  volume: {include: []}\n  server: {include: []}\n"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def loaded(manifest: Path) -> Manifest:
    from tenantshift.manifest import load_manifest

    return load_manifest(manifest)


# -- the tests ---------------------------------------------------------------------------------
def test_first_plan_creates_every_network_resource(
    clouds: dict[str, Connection], manifest: Path
) -> None:
    document = plan_json(manifest)
    todo = pending(document)
    assert {c["action"] for c in todo.values()} == {"create"}, todo
    assert not any(c["reason"] for c in todo.values()), "nothing blocked, adopted or replaced"
    expected = {
        "network.app-net",
        "network.db-net",
        "network.mgmt-net",
        "subnet.app-net/app-subnet",
        "subnet.app-net/app-subnet-v6",
        "subnet.db-net/db-subnet",
        "subnet.db-net/db-subnet-v6",
        "subnet.mgmt-net/mgmt-subnet",
        "router.edge-router",
        "router.db-router",
        "security_group.web",
        "security_group.db",
        "security_group.mgmt",
        "keypair.seed-key",
    }
    assert expected <= set(todo), sorted(expected - set(todo))
    kinds = Counter(c["kind"] for c in todo.values())
    assert kinds["router_interface"] >= 2 and kinds["security_group_rule"] >= 3
    remote = [a for a in todo if a.startswith("security_group_rule.") and "/group:" in a]
    assert remote, "the seed has remote-group rules"


def test_missing_prerequisites_block_the_plan_before_anything_is_applied(
    clouds: dict[str, Connection], manifest: Path, tmp_path: Path
) -> None:
    unmapped = tmp_path / "unmapped.yaml"
    unmapped.write_text(
        manifest.read_text().replace("public: public", "public: no-such-external-network")
    )
    admin = openstack.connect(cloud="devcloud-admin")
    project = clouds["dst"].current_project_id
    before = admin.network.get_quota(project)
    used = admin.network.get_quota(project, details=True).networks["used"]
    admin.network.update_quota(project, networks=used + 2)
    try:
        document = plan_json(unmapped)
    finally:
        admin.network.update_quota(project, networks=before.networks)

    todo = pending(document)
    routers = {a: c for a, c in todo.items() if c["kind"] == "router"}
    assert routers and all(c["reason"] == "blocked_prerequisite" for c in routers.values())
    assert all("map.external_networks" in c["detail"] for c in routers.values())
    networks = [c for c in todo.values() if c["kind"] == "network"]
    assert networks and all(c["reason"] == "blocked_quota" for c in networks)
    assert "the quota allows 2 more" in networks[0]["detail"]
    assert document["summary"]["blocked"] == len(routers) + len(networks)
    # Nothing was applied by planning.
    assert not list(clouds["dst"].network.networks(project_id=project))


def test_apply_then_nothing_left_and_equal_field_by_field(
    clouds: dict[str, Connection], manifest: Path, loaded: Manifest
) -> None:
    applied = tenantshift("apply", "-m", str(manifest), "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Apply complete!" in applied.stdout

    again = tenantshift("plan", "-m", str(manifest), "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes." in again.stdout
    assert_migrated_equal(loaded)


def test_server_ports_migrate_with_their_addresses_and_groups(
    clouds: dict[str, Connection], manifest: Path
) -> None:
    """After the first apply: the seeded servers' ports exist in the destination, unattached,
    with the source's fixed IPs (a SLAAC address derived anew from the new MAC) and the copies
    of their security groups, tagged with their source; and a plan shows no port change."""
    src, dst = clouds["src"], clouds["dst"]

    def ports(conn: Connection) -> dict[str, Any]:
        return {
            p.name: p
            for p in conn.network.ports(project_id=conn.current_project_id)
            if p.name in ("vm-multinic-app", "vm-multinic-db")
        }

    def v4(port: Any) -> list[str]:
        return sorted(ip["ip_address"] for ip in port.fixed_ips if "." in ip["ip_address"])

    def groups(conn: Connection, port: Any) -> list[str]:
        return sorted(conn.network.get_security_group(g).name for g in port.security_group_ids)

    source, copies = ports(src), ports(dst)
    assert set(copies) == {"vm-multinic-app", "vm-multinic-db"}
    assert v4(copies["vm-multinic-app"]) == ["10.10.0.60"]
    assert v4(copies["vm-multinic-db"]) == ["10.20.0.60"]
    for name, copy in copies.items():
        assert groups(dst, copy) == groups(src, source[name]), name
        sources = [split_marker(t.partition(":")[2])[1] for t in copy.tags]
        assert sources == [source[name].id], copy.tags
        assert not copy.device_id  # the server migrates the attachment, not the port
        # The source had an address on every subnet of its network; so does the copy.
        assert len(copy.fixed_ips) == len(source[name].fixed_ips), name

    document = plan_json(manifest)
    assert not [a for a in pending(document) if a.startswith("port.")], pending(document)
    addresses = {c["address"] for c in document["changes"] if c["kind"] == "port"}
    assert {"port.app-net/vm-multinic-app", "port.db-net/vm-multinic-db"} <= addresses
    # Unnamed ports (the other servers') are keyed by their first address.
    assert any(re.fullmatch(r"port\.app-net/10\.10\.0\.\d+", a) for a in addresses), addresses


def test_drift_is_planned_exactly_and_converges(
    clouds: dict[str, Connection], manifest: Path, loaded: Manifest
) -> None:
    dst = clouds["dst"]
    subnet = dst.network.find_subnet("mgmt-subnet", ignore_missing=False)
    dst.network.update_subnet(subnet, dns_nameservers=["198.51.100.1"])
    web = dst.network.find_security_group("web", ignore_missing=False)
    rule = next(
        r
        for r in dst.network.security_group_rules(security_group_id=web.id)
        if r.direction == "ingress"
    )
    dst.network.delete_security_group_rule(rule)

    todo = pending(plan_json(manifest))

    assert sorted((c["action"], c["kind"]) for c in todo.values()) == [
        ("create", "security_group_rule"),
        ("update", "subnet"),
    ], todo
    update = todo["subnet.mgmt-net/mgmt-subnet"]
    assert [f["field"] for f in update["fields"]] == ["dns_nameservers"]
    assert tenantshift("apply", "-m", str(manifest), "--auto-approve").returncode == 0
    assert tenantshift("plan", "-m", str(manifest), "--detailed-exitcode").returncode == 0
    assert_migrated_equal(loaded)


def test_a_renamed_source_network_is_an_update_not_a_copy(
    clouds: dict[str, Connection], manifest: Path, loaded: Manifest
) -> None:
    src, dst = clouds["src"], clouds["dst"]
    network = src.network.find_network("mgmt-net", ignore_missing=False)
    src.network.update_network(network, name="mgmt-net-renamed")
    try:
        todo = pending(plan_json(manifest))
        assert list(todo) == ["network.mgmt-net-renamed"], todo
        assert todo["network.mgmt-net-renamed"]["action"] == "update"
        assert [f["field"] for f in todo["network.mgmt-net-renamed"]["fields"]] == ["name"]

        assert tenantshift("apply", "-m", str(manifest), "--auto-approve").returncode == 0
        names = Counter(n.name for n in dst.network.networks(project_id=dst.current_project_id))
        assert names["mgmt-net-renamed"] == 1 and names["mgmt-net"] == 0
        assert_migrated_equal(loaded)
    finally:
        src.network.update_network(network, name="mgmt-net")
    assert tenantshift("apply", "-m", str(manifest), "--auto-approve").returncode == 0


def test_a_router_with_static_routes_is_created_before_its_routes(
    clouds: dict[str, Connection], manifest: Path, loaded: Manifest
) -> None:
    """Neutron refuses a route whose nexthop is on no connected subnet: the routes must be set
    after the interfaces, on a router created from scratch."""
    src, dst = clouds["src"], clouds["dst"]
    router = src.network.find_router("edge-router", ignore_missing=False)
    route = {"destination": "192.0.2.0/24", "nexthop": "10.10.0.254"}
    src.network.update_router(router, routes=[route])
    copy = dst.network.find_router("edge-router", ignore_missing=False)
    for port in dst.network.ports(device_id=copy.id):
        dst.network.remove_interface_from_router(copy, port_id=port.id)
    dst.network.delete_router(copy)
    try:
        todo = pending(plan_json(manifest))
        assert todo["router.edge-router"]["action"] == "create"
        assert todo["router.edge-router"]["after"]["routes"] == [route]

        applied = tenantshift("apply", "-m", str(manifest), "--auto-approve")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "router.edge-router#late: set routes" in applied.stdout
        made = dst.network.find_router("edge-router", ignore_missing=False)
        assert made.routes == [route]
        assert_migrated_equal(loaded)
    finally:
        src.network.update_router(router, routes=[])
    assert tenantshift("apply", "-m", str(manifest), "--auto-approve").returncode == 0
    assert dst.network.find_router("edge-router", ignore_missing=False).routes == []


def test_a_stale_saved_plan_is_refused(
    clouds: dict[str, Connection], manifest: Path, tmp_path: Path
) -> None:
    dst = clouds["dst"]
    dst.network.create_network(name="by-hand-for-staleness")
    saved = tmp_path / "saved.plan"
    tenantshift("plan", "-m", str(manifest), "-o", str(saved), check=True)
    made = dst.network.find_network("by-hand-for-staleness", ignore_missing=False)
    dst.network.update_network(made, description="changed after the plan")
    try:
        refused = tenantshift("apply", "-m", str(manifest), str(saved))
        assert refused.returncode == 1
        assert "stale" in refused.stderr and "network.by-hand-for-staleness" in refused.stderr
    finally:
        dst.network.delete_network(made)


# -- interruption: SIGKILL in the middle of a large apply ----------------------------------------
@pytest.fixture()
def bulk(clouds: dict[str, Connection], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """104 resources in the source under a unique prefix, and a manifest selecting only them."""
    src = clouds["src"]
    prefix = f"bulk-{uuid.uuid4().hex[:6]}"
    for n in range(8):
        net = src.network.create_network(name=f"{prefix}-net-{n}")
        src.network.create_subnet(
            network_id=net.id, name="sub", ip_version=4, cidr=f"10.{200 + n}.0.0/24"
        )
        group = src.network.create_security_group(name=f"{prefix}-sg-{n}")
        for port in range(10):
            src.network.create_security_group_rule(
                security_group_id=group.id,
                direction="ingress",
                ethertype="IPv4",
                protocol="tcp",
                port_range_min=8000 + port,
                port_range_max=8000 + port,
                remote_ip_prefix="10.0.0.0/8",
            )
    manifest = tmp_path / "bulk.yaml"
    manifest.write_text(
        "version: 1\n"
        "source: {cloud: devcloud-src}\n"
        "destination: {cloud: devcloud-dst}\n"
        "select:\n"
        f"  network: {{include: ['{prefix}-.*']}}\n"
        f"  security_group: {{include: ['{prefix}-.*']}}\n"
        "  router: {include: []}\n"
        "  keypair: {include: []}\n"
        "  volume: {include: []}\n"
        "  server: {include: []}\n"
        "options: {parallelism: 4}\n"
    )
    yield prefix, manifest
    for conn in (src, clouds["dst"]):
        project = conn.current_project_id
        for group in conn.network.security_groups(project_id=project):
            if group.name.startswith(prefix):
                conn.network.delete_security_group(group)
        for net in conn.network.networks(project_id=project):
            if net.name.startswith(prefix):
                conn.network.delete_network(net)


def test_sigkill_mid_apply_then_rerun_converges_without_duplicates(
    clouds: dict[str, Connection], bulk: tuple[str, Path]
) -> None:
    prefix, manifest = bulk
    creates = [c for c in pending(plan_json(manifest)).values() if c["action"] == "create"]
    assert len(creates) >= 100

    process = subprocess.Popen(
        [*TENANTSHIFT, "apply", "-m", str(manifest), "--auto-approve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    done = 0
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip().startswith("done"):
            done += 1
        if done >= 25:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "killed mid-apply, not finished"

    rerun = tenantshift("apply", "-m", str(manifest), "--auto-approve")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "Resumed after interrupted run" in rerun.stdout

    dst = clouds["dst"]
    project = dst.current_project_id
    networks = Counter(
        n.name for n in dst.network.networks(project_id=project) if n.name.startswith(prefix)
    )
    groups = {
        g.name: g
        for g in dst.network.security_groups(project_id=project)
        if g.name.startswith(prefix)
    }
    assert networks == Counter({f"{prefix}-net-{n}": 1 for n in range(8)})
    assert sorted(groups) == sorted(f"{prefix}-sg-{n}" for n in range(8))
    subnets = [
        s
        for s in dst.network.subnets(project_id=project)
        if s.network_id
        in {n.id for n in dst.network.networks(project_id=project) if n.name.startswith(prefix)}
    ]
    assert len(subnets) == 8
    for group in groups.values():
        rules = list(dst.network.security_group_rules(security_group_id=group.id))
        assert len([r for r in rules if r.direction == "ingress"]) == 10, group.name
    assert tenantshift("plan", "-m", str(manifest), "--detailed-exitcode").returncode == 0
    journal = tenantshift("journal", "-m", str(manifest), check=True).stdout
    assert "interrupted" in journal and "resumed from" in journal
