"""What ``conversion-hosts deploy`` created in the source project for the source host (its
security group with its rules, its keypair) is left out of the migration without the user
excluding it; a group or keypair of the user's that the deploy only used still migrates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tenantshift.engine.planning import make_plan
from tenantshift.manifest import Manifest
from tenantshift.manifest.deployed import write_record
from tenantshift.providers.memory import MemoryProvider


def _manifest(tmp_path: Path) -> Manifest:
    return Manifest.model_validate(
        {
            "version": 1,
            "source": {"cloud": "src"},
            "destination": {"cloud": "dst"},
            "options": {"state_dir": str(tmp_path / "state")},
        }
    )


def _group(cloud: MemoryProvider, name: str) -> dict[str, Any]:
    group = cloud.create("security_group", {"name": name}, None)
    rule = {"security_group": group["id"], "direction": "ingress", "ethertype": "IPv4",
            "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
            "remote_ip_prefix": "192.0.2.7/32"}  # fmt: skip
    cloud.create("security_group_rule", rule, None)
    return group


def _planned(manifest: Manifest, source: MemoryProvider) -> tuple[set[str], str]:
    result = make_plan(manifest, source, MemoryProvider("dst"))
    return {c.address for c in result.plan.changes}, "\n".join(result.plan.warnings)


def test_the_deploys_own_group_and_keypair_stay_home(tmp_path: Path) -> None:
    source = MemoryProvider("src")
    ours = _group(source, "tenantshift-conversion")
    _group(source, "web")
    for name in ("tenantshift-conversion", "ops"):
        source.create("keypair", {"name": name, "public_key": f"ssh-ed25519 AAAA{name}"}, None)
    manifest = _manifest(tmp_path)

    before, _ = _planned(manifest, source)
    assert {"security_group.tenantshift-conversion", "keypair.tenantshift-conversion"} <= before

    write_record(manifest.state_dir, {"source": {
        "server": "conversion-host", "owns": ["keypair", "security_group", "server"],
        "keypair": "tenantshift-conversion", "security_group_id": ours["id"]}})  # fmt: skip
    after, warnings = _planned(manifest, source)
    assert not any("tenantshift-conversion" in address for address in after), after
    assert "security_group.web" in after and "keypair.ops" in after
    # every other change is as before: the web group's rules still migrate
    assert after == {a for a in before if "tenantshift-conversion" not in a}
    assert "created by `tenantshift conversion-hosts deploy`" in warnings


def test_a_group_and_keypair_the_deploy_only_used_still_migrate(tmp_path: Path) -> None:
    source = MemoryProvider("src")
    theirs = _group(source, "admin-ssh")
    source.create("keypair", {"name": "ops", "public_key": "ssh-ed25519 AAAAops"}, None)
    manifest = _manifest(tmp_path)
    write_record(manifest.state_dir, {"source": {
        "server": "conversion-host", "owns": ["server"], "keypair": "ops",
        "security_group_id": theirs["id"]}})  # fmt: skip
    after, _ = _planned(manifest, source)
    assert {"security_group.admin-ssh", "keypair.ops"} <= after
