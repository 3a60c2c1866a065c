"""Issue 8, on the real local OpenStack: many duplicate network names at high parallelism. Each
copy keeps its own marker (one per destination network), subnets land on the right network,
and a second plan has nothing to do."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import openstack
import pytest

from tenantshift.resources.marker import split_marker
from tests.integration.conftest import Devcloud, run_cli

pytestmark = pytest.mark.devcloud

PAIRS = 10


@pytest.mark.parametrize(
    ("pairs", "kill"),
    [
        (PAIRS, None),
        # Second reproduction of the kill issue: killed after a network's POST, before its
        # tags. No other same-named source may adopt it: never two markers on one network.
        (2, "network.set_tags(network)"),
    ],
    ids=["parallel", "killed-before-the-marker"],
)
def test_duplicate_names_keep_their_own_copies(
    devcloud: Devcloud, tmp_path: Path, pairs: int, kill: str | None
) -> None:
    src = openstack.connect(cloud="devcloud-src")
    dst = openstack.connect(cloud="devcloud-dst")
    prefix = f"dup-{uuid.uuid4().hex[:6]}"
    network_of_subnet_cidr: dict[str, str] = {}
    for i in range(pairs):
        for copy in range(2):  # two networks with one name, each with its own subnet
            net = src.network.create_network(name=f"{prefix}-{i}")
            cidr = f"10.{150 + i}.{copy}.0/24"
            src.network.create_subnet(network_id=net.id, name="s", ip_version=4, cidr=cidr)
            network_of_subnet_cidr[cidr] = net.id
    manifest = tmp_path / "dup.yaml"
    manifest.write_text(
        "version: 1\n"
        "source: {cloud: devcloud-src}\n"
        "destination: {cloud: devcloud-dst}\n"
        "select:\n"
        f"  network: {{include: ['{prefix}-.*']}}\n"
        "  router: {include: []}\n"
        "  security_group: {include: []}\n"
        "  port: {include: []}\n"
        "  keypair: {include: []}\n"
        "  volume: {include: []}\n"
        "  server: {include: []}\n"
        f"options: {{parallelism: 40, state_dir: {tmp_path / 'state'}}}\n"
    )
    try:
        if kill is not None:
            env = {"TENANTSHIFT_FAULT_KILL_AT_CALL": kill}
            killed = run_cli("apply", "-m", str(manifest), "--auto-approve", env=env)
            assert killed.returncode == -9, killed.stdout + killed.stderr
        applied = run_cli("apply", "-m", str(manifest), "--auto-approve")
        assert applied.returncode == 0, applied.stdout + applied.stderr

        project = dst.current_project_id
        copies = [n for n in dst.network.networks(project_id=project) if n.name.startswith(prefix)]
        assert len(copies) == 2 * pairs
        markers = {n.id: [t for t in n.tags if t.startswith("tenantshift-src:")] for n in copies}
        assert all(len(m) == 1 for m in markers.values()), markers  # never two markers
        source_of = {n.id: split_marker(markers[n.id][0].partition(":")[2])[1] for n in copies}
        assert Counter(source_of.values()) == Counter(set(network_of_subnet_cidr.values()))
        for subnet in dst.network.subnets(project_id=project):
            if subnet.cidr in network_of_subnet_cidr:
                # On the copy of the very network it sits on at the source.
                assert source_of[subnet.network_id] == network_of_subnet_cidr[subnet.cidr]

        again = run_cli("plan", "-m", str(manifest), "--detailed-exitcode")
        assert again.returncode == 0, again.stdout
    finally:
        for conn in (src, dst):
            project = conn.current_project_id
            for net in conn.network.networks(project_id=project):
                if net.name.startswith(prefix):
                    for port in conn.network.ports(network_id=net.id):
                        conn.network.delete_port(port)
                    conn.network.delete_network(net)
