"""Issue 12's smaller items, where a user sees them: on the real local OpenStack, through the CLI.

- a plan warns about duplicate names only among the resources the manifest selects;
- with ``prune``, a router interface removed at the source is removed at the destination;
- ``map.names`` renames keypairs too;
- a saved plan still applies after its manifest's directory moved (relative paths).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest
from openstack.connection import Connection

from tenantshift.manifest.schema import KINDS
from tests.integration.conftest import Devcloud, run_cli
from tests.integration.keypairs import public_key

pytestmark = pytest.mark.devcloud

NOTHING_ELSE = dict.fromkeys(KINDS, "{include: []}")


def manifest(path: Path, source: str, select: dict[str, str], extra: str = "") -> Path:
    """Only what ``select`` names migrates (every other kind: nothing)."""
    lines = "".join(f"  {kind}: {rule}\n" for kind, rule in {**NOTHING_ELSE, **select}.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"version: 1\nsource: {source}\ndestination: {{cloud: devcloud-dst}}\n"
        f"select:\n{lines}{extra}"
    )
    return path


def cli(*args: str) -> Any:
    result = run_cli(*args)
    assert result.returncode in (0, 2), f"{args}: {result.stdout}\n{result.stderr}"
    return result


def plan_document(path: Path) -> dict[str, Any]:
    return json.loads(cli("plan", "-m", str(path), "--json").stdout)


def remove_prefixed(conn: Connection, prefix: str) -> None:
    net = conn.network
    project = conn.current_project_id
    for router in net.routers(project_id=project):
        if router.name.startswith(prefix):
            for port in net.ports(device_id=router.id):
                if port.device_owner.startswith("network:router_interface"):
                    net.remove_interface_from_router(router, port_id=port.id)
            net.delete_router(router)
    for network in net.networks(project_id=project):
        if network.name.startswith(prefix):
            net.delete_network(network)
    for keypair in conn.compute.keypairs():
        if prefix in keypair.name:
            conn.compute.delete_keypair(keypair)


@pytest.fixture
def ends(devcloud: Devcloud) -> Iterator[tuple[Connection, Connection, str]]:
    src, dst = (openstack.connect(cloud=f"devcloud-{side}") for side in ("src", "dst"))
    prefix = f"si-{uuid.uuid4().hex[:6]}"
    yield src, dst, prefix
    for conn in (src, dst):
        remove_prefixed(conn, prefix)


def test_warnings_name_only_selected_duplicates(
    ends: tuple[Connection, Connection, str], tmp_path: Path
) -> None:
    src, dst, prefix = ends
    for name in ("sel", "sel", "other", "other"):
        src.network.create_network(name=f"{prefix}-{name}")
    for _ in range(2):
        dst.network.create_network(name=f"{prefix}-theirs")
    path = manifest(
        tmp_path / "m.yaml", "{cloud: devcloud-src}", {"network": f"{{include: [{prefix}-sel]}}"}
    )
    warnings = "\n".join(plan_document(path)["warnings"])
    assert f"'{prefix}-sel'" in warnings, warnings
    assert f"{prefix}-other" not in warnings and f"{prefix}-theirs" not in warnings, warnings
    human = cli("plan", "-m", str(path)).stdout
    assert f"{prefix}-sel" in human and f"{prefix}-other" not in human


def _legs(conn: Connection, router_name: str) -> list[str]:
    net = conn.network
    router = next(
        r for r in net.routers(project_id=conn.current_project_id) if r.name == router_name
    )
    subnets = {s.id: s.name for s in net.subnets(project_id=conn.current_project_id)}
    return sorted(
        subnets[ip["subnet_id"]]
        for port in net.ports(device_id=router.id)
        if port.device_owner.startswith("network:router_interface")
        for ip in port.fixed_ips
    )


def test_prune_removes_an_interface_the_source_removed(
    ends: tuple[Connection, Connection, str], tmp_path: Path
) -> None:
    src, dst, prefix = ends
    net = src.network
    network = net.create_network(name=f"{prefix}-net")
    subnets = {
        name: net.create_subnet(
            network_id=network.id, name=f"{prefix}-{name}", ip_version=4, cidr=cidr
        )
        for name, cidr in (("a", "10.211.0.0/24"), ("b", "10.211.1.0/24"))
    }
    router = net.create_router(name=f"{prefix}-r")
    for subnet in subnets.values():
        net.add_interface_to_router(router, subnet=subnet.id)
    everything = f"{{include: ['{prefix}-.*']}}"
    select = {k: everything for k in ("network", "subnet", "router", "router_interface")}
    path = manifest(
        tmp_path / "m.yaml",
        "{cloud: devcloud-src}",
        select,
        f"options: {{prune: true, state_dir: {tmp_path / 'state'}}}\n",
    )
    cli("apply", "-m", str(path), "--auto-approve")
    assert _legs(dst, f"{prefix}-r") == [f"{prefix}-a", f"{prefix}-b"]

    net.remove_interface_from_router(router, subnet=subnets["b"].id)
    changes = {c["address"]: c for c in plan_document(path)["changes"] if c["action"] != "no-op"}
    leg = f"router_interface.{prefix}-r/{prefix}-net/{prefix}-b"
    assert list(changes) == [leg], changes
    assert (changes[leg]["action"], changes[leg]["reason"]) == ("delete", "prune")
    cli("apply", "-m", str(path), "--auto-approve")
    assert _legs(dst, f"{prefix}-r") == [f"{prefix}-a"]
    assert "No changes" in cli("plan", "-m", str(path)).stdout


def test_names_template_renames_keypairs(
    ends: tuple[Connection, Connection, str], tmp_path: Path
) -> None:
    src, dst, prefix = ends
    key = public_key()
    src.compute.create_keypair(name=f"{prefix}-key", public_key=key)
    path = manifest(
        tmp_path / "m.yaml",
        "{cloud: devcloud-src}",
        {"keypair": f"{{include: [{prefix}-key]}}"},
        f"map: {{names: 'mig-{{name}}'}}\noptions: {{state_dir: {tmp_path / 'state'}}}\n",
    )
    changes = [c for c in plan_document(path)["changes"] if c["action"] != "no-op"]
    assert [(c["address"], c["action"]) for c in changes] == [
        (f"keypair.mig-{prefix}-key", "create")
    ]
    cli("apply", "-m", str(path), "--auto-approve")
    copy = dst.compute.find_keypair(f"mig-{prefix}-key")
    assert copy is not None and copy.public_key.split()[:2] == key.split()[:2]
    assert "No changes" in cli("plan", "-m", str(path)).stdout


def test_a_saved_plan_applies_after_its_manifest_moved(
    ends: tuple[Connection, Connection, str], tmp_path: Path
) -> None:
    """The manifest names its source snapshot by a relative path; the directory moves between
    ``plan -o`` and ``apply``."""
    src, dst, prefix = ends
    src.compute.create_keypair(name=f"{prefix}-moved", public_key=public_key())
    here = tmp_path / "here"
    here.mkdir()
    cli("snapshot", "--cloud", "devcloud-src", "-o", str(here / "src.json"))
    manifest(here / "m.yaml", "{snapshot: src.json}", {"keypair": f"{{include: [{prefix}-moved]}}"})
    cli("plan", "-m", str(here / "m.yaml"), "-o", str(here / "plan.json"))
    there = tmp_path / "elsewhere" / "there"
    there.parent.mkdir()
    shutil.move(here, there)
    applied = run_cli(
        "apply", str(there / "plan.json"), "-m", str(there / "m.yaml"), "--auto-approve"
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "stale" not in applied.stdout + applied.stderr
    assert dst.compute.find_keypair(f"{prefix}-moved") is not None
    # Editing a path is still a change of the manifest.
    (there / "src.json").rename(there / "src2.json")
    text = (there / "m.yaml").read_text().replace("src.json", "src2.json")
    (there / "m.yaml").write_text(text)
    refused = run_cli(
        "apply", str(there / "plan.json"), "-m", str(there / "m.yaml"), "--auto-approve"
    )
    assert refused.returncode != 0 and "manifest changed" in refused.stdout + refused.stderr
