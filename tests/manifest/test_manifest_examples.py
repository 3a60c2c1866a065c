"""The shipped examples load."""

from __future__ import annotations

from pathlib import Path

from tenantshift.manifest import load_manifest

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_migration_example() -> None:
    m = load_manifest(
        EXAMPLES / "migration.yaml", environ={"TENANTSHIFT_DST_PASSWORD": "pw-from-env"}
    )
    assert m.source.cloud == "prod-old" and m.source.project == "web-team"
    assert m.destination.auth is not None and m.destination.auth.password is not None
    assert m.destination.auth.password.get_secret_value() == "pw-from-env"
    assert m.destination.region == "RegionOne"  # the var's default
    assert m.select.selects("network", "web-1") and not m.select.selects("network", "web-tmp-1")
    assert not m.select.selects("network", "other")
    assert not m.select.selects("server", "x-scratch") and m.select.selects("server", "x")
    assert m.map.flavors == {"m1.small": "m1.medium"}
    assert m.conversion_hosts is not None
    assert m.conversion_hosts.destination.key_file == EXAMPLES.resolve() / "keys" / "tenantshift"
    region = load_manifest(
        EXAMPLES / "migration.yaml",
        variables={"dst_region": "RegionTwo"},
        environ={"TENANTSHIFT_DST_PASSWORD": "x"},
    ).destination.region
    assert region == "RegionTwo"


def test_devcloud_example() -> None:
    m = load_manifest(EXAMPLES / "devcloud.yaml", environ={})
    assert m.source.to_connect_kwargs() == {"cloud": "devcloud-src"}
    assert m.destination.to_connect_kwargs() == {"cloud": "devcloud-dst"}
    assert m.map.external_networks == {"public": "public"}
    assert m.conversion_hosts is None
