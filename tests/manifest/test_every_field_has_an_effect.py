"""Every manifest field does something (issue 7: "no dead options").

The test walks the schema: each leaf field must match exactly one proof below, and each proof
changes that one field and shows what changes where the field is consumed (the connection
arguments, the desired state, the plan, the SSH transport, the apply settings). A field whose
effect needs a real cloud names the devcloud test that shows it. A new field without a proof
fails ``test_every_schema_field_has_a_proof``.
"""

from __future__ import annotations

import ast
import asyncio
import fnmatch
import re
import tempfile
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from tenantshift.engine.connect import open_provider
from tenantshift.engine.planning import _not_yet, conversion_host_ids, make_plan
from tenantshift.engine.walk.context import ApplySettings
from tenantshift.engine.workloads.plan import _conversion_host_problem
from tenantshift.manifest import Manifest
from tenantshift.plans import Action
from tenantshift.providers.memory import MemoryProvider
from tenantshift.providers.snapshot_file import SnapshotFileProvider, save_snapshot
from tenantshift.resources import Snapshot, derive_desired, normalize
from tenantshift.resources.marker import make_marker, migration_id
from tenantshift.transfer import ssh
from tenantshift.transfer.keyline import forced_command

ROOT = Path(__file__).resolve().parents[2]
VOLUME_ID = "11111111-2222-3333-4444-555555555555"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAH8ng/ENdqWiGFL/leFHwiwIDw1Z2z6ObaeWMRnDj+o"
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB8GM8QyKPsdiKIqQ6rQKrn+elZRbxLt+5QduDW0wxlv"


def leaf_paths(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, info in model.model_fields.items():
        args = typing.get_args(info.annotation) or (info.annotation,)
        nested = _models_in(args)
        if nested:
            # Every model of a union (conversion_hosts: one pair, or a pool of pairs).
            seen = set()
            for model_type in nested:
                for path in leaf_paths(model_type, f"{prefix}{name}."):
                    if path not in seen:
                        seen.add(path)
                        yield path
        else:
            yield prefix + name


def _models_in(args: tuple[Any, ...]) -> list[type[BaseModel]]:
    """The models in a field's type arguments, looking through ``Annotated`` (tagged union
    members) and nested unions."""
    out: list[type[BaseModel]] = []
    for arg in args:
        if typing.get_origin(arg) is typing.Annotated:
            arg = typing.get_args(arg)[0]
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            out.append(arg)
        elif typing.get_args(arg):
            out.extend(_models_in(typing.get_args(arg)))
    return out


def manifest(**sections: Any) -> Manifest:
    body: dict[str, Any] = {"version": 1, "source": {"cloud": "a"}, "destination": {"cloud": "b"}}
    body.update(sections)
    return Manifest.model_validate(body)


def with_value(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``body`` with the dotted ``path`` set to ``value``."""
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in body.items()}
    node = out
    parts = path.split(".")
    for part in parts[:-1]:
        node[part] = dict(node.get(part) or {})
        node = node[part]
    node[parts[-1]] = value
    return out


# -- a source tenant with one of everything ------------------------------------------------

RECORDS: dict[str, list[dict[str, Any]]] = {
    "network": [{"id": "n1", "name": "app"}, {"id": "n2", "name": "db"}],
    "subnet": [{"id": "s1", "network": "n1", "name": "app-sub", "cidr": "10.0.1.0/24"}],
    "router": [{"id": "r1", "name": "edge", "external_network": "ext-old"}],
    "router_interface": [{"id": "ri1", "router": "r1", "subnet": "s1"}],
    "security_group": [{"id": "g1", "name": "web"}],
    "security_group_rule": [
        {"id": "sr1", "security_group": "g1", "direction": "ingress", "protocol": "tcp",
         "port_range_min": 443, "port_range_max": 443},
    ],
    "keypair": [{"id": "ops", "name": "ops", "public_key": "ssh-ed25519 AAAA ops"}],
    "port": [
        {"id": "p1", "network": "n1", "name": "vm-port", "mac_address": "fa:16:3e:00:00:01",
         "fixed_ips": [{"subnet": "s1", "ip_address": "10.0.1.5"}], "security_groups": ["g1"]},
    ],
    "volume": [
        {"id": "v1", "name": "data", "size": 1, "volume_type": "fast", "availability_zone": "az1",
         "attached_to": []},
    ],
    "server": [
        {"id": "vm1", "name": "vm", "flavor": "m1.small", "availability_zone": "az1",
         "keypair": "ops", "ports": ["p1"]},
    ],
    "image": [
        {"id": "i1", "name": "golden", "disk_format": "qcow2", "container_format": "bare",
         "status": "active", "properties": {"os_distro": "cirros"}},
    ],
}  # fmt: skip


def source() -> Snapshot:
    return normalize(
        "src",
        RECORDS,
        externals={"external_network": ["ext-old"], "flavor": ["m1.small"]},
    )


def desired_of(m: Manifest) -> dict[str, Any]:
    desired = derive_desired(source(), m.select, m.map, workloads=m.workloads)
    return {
        "resources": {a: dict(r.params) for a, r in desired.resources.items()},
        "warnings": list(desired.warnings),
    }


# -- proofs: each gets the leaf path and asserts a difference --------------------------------


def connect_kwargs(path: str) -> None:
    side, _, field = path.partition(".")
    password_auth = {
        "auth_url": "https://keystone.example:5000/v3", "username": "u", "password": "p",
        "user_domain_name": "Default", "project_name": "p1", "project_domain_name": "Default",
    }  # fmt: skip
    appcred_auth = {
        "auth_url": "https://keystone.example:5000/v3",
        "application_credential_id": "ac1",
        "application_credential_secret": "s",
    }
    base_cloud = {"cloud": "a"}
    candidates = []
    if field.startswith("auth."):
        leaf = field.removeprefix("auth.")
        for auth in (password_auth, appcred_auth):
            changed = dict(auth, **{leaf: "changed-value"})
            if leaf == "auth_url":
                changed[leaf] = "https://other.example:5000/v3"
            candidates.append(({"auth": auth}, {"auth": changed}))
    elif field == "cloud":
        candidates.append((base_cloud, {"cloud": "other"}))
    elif field == "project":
        candidates.append((base_cloud, {"cloud": "a", "project": "tenant-b"}))
    elif field == "region":
        candidates.append((base_cloud, {"cloud": "a", "region": "RegionTwo"}))
    elif field == "verify":
        candidates.append((base_cloud, {"cloud": "a", "verify": False}))
    for before, after in candidates:
        try:
            a, b = manifest(**{side: before}), manifest(**{side: after})
        except ValidationError:
            continue  # e.g. a user name beside an application credential: not a valid pair
        ref_a, ref_b = getattr(a, side), getattr(b, side)
        assert ref_a.to_connect_kwargs() != ref_b.to_connect_kwargs(), path
        return
    raise AssertionError(f"{path}: no valid manifest pair to compare")


def snapshot_file(path: str) -> None:
    side = path.partition(".")[0]
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "source.json"
        save_snapshot(source(), saved)
        m = manifest(**{side: {"snapshot": str(saved)}})
        provider = open_provider(getattr(m, side), side)
        assert isinstance(provider, SnapshotFileProvider)
        assert set(provider.snapshot().resources) == set(source().resources)
    assert getattr(manifest(), side).snapshot is None  # otherwise: a cloud connection


def version(path: str) -> None:
    with pytest.raises(ValidationError, match="unsupported manifest version 2"):
        Manifest.model_validate({"version": 2, "source": {"cloud": "a"}, "destination": {}})


def selection(path: str) -> None:
    _, kind, which = path.split(".")
    everything = desired_of(manifest())["resources"]
    key = next(iter(r for r in everything if r.startswith(kind + ".")))
    name = everything[key].get("name") or key.partition(".")[2]  # what the patterns match
    rule = {"include": ["never-matches"]} if which == "include" else {"exclude": [re.escape(name)]}
    narrowed = desired_of(manifest(select={kind: rule}))["resources"]
    assert key in everything and key not in narrowed, (path, key)


def mapping(path: str) -> None:
    field = path.split(".")[1]
    changed = {
        "flavors": {"m1.small": "m2.small"},
        "availability_zones": {"az1": "az9"},
        "volume_types": {"fast": "ssd"},
        "external_networks": {"ext-old": "ext-new"},
        "names": "{name}-moved",
    }[field]
    assert desired_of(manifest()) != desired_of(manifest(map={field: changed})), path


def not_supported_yet(path: str) -> None:
    section, field = path.split(".")
    value: Any = {"app": "other-net"} if field == "networks" else False
    warnings = _not_yet(manifest(**{section: {field: value}}))
    assert any(path in w for w in warnings) and not _not_yet(manifest()), (path, warnings)


def preserve_macs(path: str) -> None:
    kept = desired_of(manifest(workloads={"preserve_macs": True}))["resources"]
    chosen = desired_of(manifest())["resources"]
    assert kept["port.app/vm-port"]["mac_address"] == "fa:16:3e:00:00:01"
    assert chosen["port.app/vm-port"]["mac_address"] is None


def apply_setting(path: str) -> None:
    field = path.split(".")[1]
    value = {"parallelism": 37, "copy_parallelism": 5}[field]
    settings = ApplySettings.from_manifest(manifest(options={field: value}))
    assert (
        getattr(settings, field) == value != getattr(ApplySettings.from_manifest(manifest()), field)
    )


def state_dir(path: str) -> None:
    base = Path("/srv/migrations/m.yaml")
    m = manifest(options={"state_dir": "journals"})
    assert m.options.resolve_state_dir(base) == Path("/srv/migrations/journals")
    assert manifest().options.resolve_state_dir(base) == Path("/srv/migrations/.tenantshift/m")


def prune(path: str) -> None:
    source_cloud, destination = MemoryProvider("src"), MemoryProvider("dst")
    source_cloud.create("network", {"name": "kept"}, None)
    mine = make_marker(migration_id(source_cloud.snapshot()), "deleted-source-id")
    destination.create("network", {"name": "gone"}, mine)

    def deletes(m: Manifest) -> list[str]:
        plan = make_plan(m, source_cloud, destination).plan
        return [c.address for c in plan.changes if c.action is Action.DELETE]

    assert deletes(manifest(options={"prune": True})) == ["network.gone"]
    assert deletes(manifest()) == []


# -- the conversion hosts: what the SSH transport does with each field ---------------------


def host_body(**overrides: Any) -> dict[str, Any]:
    host = {"address": "127.0.0.1", "key_file": "/dev/null", "host_key": KEY}
    return {"source": {**host, **overrides}, "destination": host}


class _Captured(Exception):
    pass


def transport(hosts: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What tenantshift would do with the source host: connect (captured, not sent), the
    command lines it runs, the volume key's forced command."""
    configured = manifest(conversion_hosts=hosts).conversion_hosts
    assert configured is not None
    host = configured.all_pairs[0]
    captured: dict[str, Any] = {}

    async def fake_connect(*args: Any, **kwargs: Any) -> None:
        captured.update(kwargs, args=args)
        raise _Captured

    monkeypatch.setattr(ssh.asyncssh, "connect", fake_connect)
    with pytest.raises(_Captured):
        asyncio.run(ssh.connect(host.source, "source", 5.0))
    known = captured.pop("known_hosts")
    captured["known_hosts"] = repr(known) if not isinstance(known, tuple) else str(known[0])
    return {
        "connect": {k: str(v) for k, v in captured.items()},
        "agent": ssh.agent_command(host.source, "/tmp/tenantshift-transfer-x", "info", root=True),
        "forced": forced_command(host.source, "/tmp/tenantshift-transfer-x", 0, [VOLUME_ID]),
    }


def conversion_host_transport(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    field = path.rpartition(".")[2]
    changed: dict[str, Any] = {
        "address": {"address": "192.0.2.7"},
        "port": {"port": 2200},
        "user": {"user": "root"},
        "key_file": {"key_file": "/etc/other-key"},
        "host_key": {"host_key": OTHER_KEY},
        "known_hosts": {"host_key": None, "known_hosts": "/etc/ssh/ssh_known_hosts"},
        "host_key_policy": {"host_key": None, "host_key_policy": "insecure-skip"},
        "device_dir": {"device_dir": "/dev/disk/by-path"},
        "python": {"python": "/usr/libexec/platform-python"},
    }[field]
    hosts = host_body()
    # Proven on the source host's side; the destination's fields are the same model.
    if ".destination." in path:
        hosts = {"source": hosts["destination"], "destination": hosts["source"]}
    before = transport(in_form(path, hosts), monkeypatch)
    after = transport(in_form(path, host_body(**changed)), monkeypatch)
    assert before != after, path


def in_form(path: str, pair: dict[str, Any]) -> dict[str, Any]:
    """``pair`` as the one-pair form, or as a pool of one (for ``conversion_hosts.pairs.*``)."""
    if path.startswith("conversion_hosts.pairs."):
        return {"pairs": [{"name": "p1", **pair}]}
    return pair


def conversion_host_server(path: str) -> None:
    """The source host's server is left out of the workloads; both are checked ACTIVE."""
    side = path.split(".")[-2]

    class Servers:
        def id_of(self, name: str) -> str:
            return f"id-of-{name}"

        def status(self, name: str) -> str:
            return "ACTIVE" if side == "destination" and name == "conv-a" else "SHUTOFF"

    class Verbs:
        server = Servers()

    class Cloud:
        label = "cloud"
        workloads = Verbs()

    def effect(name: str) -> tuple[frozenset[str], str | None]:
        hosts = host_body()
        hosts["source"]["server"] = "conv-a"
        hosts["destination"] = dict(hosts["destination"], server="conv-b")
        hosts[side]["server"] = name
        m = manifest(conversion_hosts=in_form(path, hosts))
        cloud: Any = Cloud()
        return conversion_host_ids(m, cloud), _conversion_host_problem(m, cloud, cloud)

    first, second = effect("conv-x"), effect("conv-y")
    assert first != second, path
    assert "'conv-x' is SHUTOFF, not ACTIVE" in str(first[1])


# -- deployed conversion hosts: what deploy asks the cloud for ----------------------------


def server_request(deploy: dict[str, Any]) -> dict[str, Any]:
    """The create_server request deploy sends for ``deploy`` (over a fake connection)."""
    from tenantshift.engine.convhosts.deploy import server_spec
    from tenantshift.manifest.schema import Deploy
    from tests.providers.convhost_sdk_fake import SdkFake, ops_over

    fake = SdkFake()
    ops = ops_over(fake, "source")
    ops.create_server(server_spec(ops, "source", "conv", Deploy(**deploy), "kp", "sg"))
    return dict(fake.requests[-1])


def deploy_effect(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tenantshift.engine.convhosts import deploy as convhosts
    from tenantshift.engine.convhosts.deploy import DeployError
    from tests.engine.convhosts_fakes import clouds, deployed_manifest, fake_reach

    field = path.rpartition(".")[2]
    side = path.split(".")[1]
    changed: dict[str, Any] = {
        "image": "other-image",
        "flavor": "m1.large",
        "network": "other-net",
        "availability_zone": "az-2",
        "volume_size": 20,
        "metadata": {"owner": "ops"},
        "floating_ip_network": "other-ext",
        "security_group": "other-group",
        "allow_ssh_from": ["198.51.100.0/24"],
        "keypair": "other-keypair",
        "trust_first_use": True,
    }[field]
    base = {"image": "conv", "flavor": "m1", "network": "net", "floating_ip_network": "ext"}
    if field in ("image", "flavor", "network", "availability_zone", "volume_size", "metadata"):
        assert server_request(base) != server_request({**base, field: changed}), path
        return

    def effect(spec: dict[str, Any]) -> Any:
        fake_reach(monkeypatch)
        made, ops_for = clouds(console_keys=field != "trust_first_use")
        with tempfile.TemporaryDirectory() as tmp:
            m = deployed_manifest(Path(tmp), **spec)
            try:
                convhosts.deploy(m, ops_for=ops_for)
            except DeployError as exc:
                return str(exc)
        cloud = made[side]
        return (
            sorted(cloud.keypairs),
            sorted(g.name for g in cloud.groups.values()),
            sorted(c for _, c in cloud.rules if not c.startswith("203.0.113.")),
            sorted(ip.floating_network_id for ip in cloud.ips.values()),
        )

    overrides = {k: v for k, v in base.items() if k in ("floating_ip_network",)}
    assert effect(overrides) != effect({**overrides, field: changed}), path


def deploy_not_in_a_pool(path: str) -> None:
    """``deploy:`` belongs to the one-pair form; in a pool it is refused, not ignored."""
    body = host_body()
    body["source"] = dict(body["source"], deploy={"image": "i", "flavor": "f", "network": "n"})
    body["source"].pop("host_key")
    with pytest.raises(ValidationError, match="deploy"):
        manifest(conversion_hosts={"pairs": [{"name": "p1", **body}]})


def pair_name(path: str) -> None:
    """A pool's pair names are what the plan schedules each copying migration on."""
    from tenantshift.engine.workloads.plan import assign_pairs
    from tenantshift.plans import Change

    def planned(names: list[str]) -> list[str | None]:
        pool = {
            "pairs": [
                {
                    "name": name,
                    "source": dict(host_body()["source"], port=2200 + i),
                    "destination": dict(host_body()["destination"], port=2300 + i),
                }
                for i, name in enumerate(names)
            ]
        }
        change = Change(
            address="volume.v", kind="volume", action=Action.MIGRATE, after={}, bytes_to_move=1
        )
        return [c.conversion_pair for c in assign_pairs([change], manifest(conversion_hosts=pool))]

    assert planned(["fast", "slow"]) == ["fast"]
    assert planned(["other", "slow"]) == ["other"], path


# -- fields shown on the devcloud ------------------------------------------------------------


def assert_test_mentions(file: str, test: str, word: str) -> None:
    tree = ast.parse((ROOT / file).read_text())
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == test]
    assert found, f"{file}::{test} is gone: prove the field's effect elsewhere"
    assert word in ast.unparse(found[0]), f"{file}::{test} no longer uses {word}"


def on_the_devcloud(file: str, test: str) -> Callable[[str], None]:
    def proof(path: str) -> None:
        assert_test_mentions(file, test, path.rpartition(".")[2])

    return proof


WORKLOADS_TESTS = "tests/integration/test_workload_migration.py"
WARM_TESTS = "tests/engine/test_warm.py"


def warm_fields(path: str) -> None:
    """Each warm field changes what the next apply does with a server (the plan's
    ``Change.warm``, which the migration's phases follow: tests/engine/test_warm.py)."""
    field = path.rpartition(".")[2]
    changed = {
        "mode": ({"mode": "cold"}, {"mode": "warm"}),
        "warm_servers": ({"mode": "warm"}, {"mode": "warm", "warm_servers": ["db"]}),
        "cutover": ({"mode": "warm"}, {"mode": "warm", "cutover": ["vm"]}),
    }[field]
    phases = [manifest(workloads=w).workloads.warm_phase("vm") for w in changed]
    assert phases[0] != phases[1], path
    assert_test_mentions(WARM_TESTS, "test_a_warm_server_syncs_then_cuts_over", field)


PROOFS: dict[str, Callable[..., None]] = {
    "version": version,
    "*.cloud": connect_kwargs,
    "*.auth.*": connect_kwargs,
    "*.project": connect_kwargs,
    "*.region": connect_kwargs,
    "*.verify": connect_kwargs,
    "*.snapshot": snapshot_file,
    "select.*.include": selection,
    "select.*.exclude": selection,
    "map.flavors": mapping,
    "map.availability_zones": mapping,
    "map.volume_types": mapping,
    "map.external_networks": mapping,
    "map.names": mapping,
    "map.networks": not_supported_yet,
    "workloads.preserve_fixed_ips": not_supported_yet,
    "workloads.preserve_macs": preserve_macs,
    "workloads.mode": warm_fields,
    "workloads.warm_servers": warm_fields,
    "workloads.cutover": warm_fields,
    "workloads.stop_source_servers": on_the_devcloud(
        WORKLOADS_TESTS, "test_a_running_server_migrates_when_allowed_and_runs_again_at_both_ends"
    ),
    "workloads.start_destination_servers": on_the_devcloud(
        WORKLOADS_TESTS, "test_a_running_server_migrates_when_allowed_and_runs_again_at_both_ends"
    ),
    "conversion_hosts.*.server": conversion_host_server,
    "conversion_hosts.source.deploy.*": deploy_effect,
    "conversion_hosts.destination.deploy.*": deploy_effect,
    "conversion_hosts.pairs.*.server": conversion_host_server,
    "conversion_hosts.pairs.name": pair_name,
    "conversion_hosts.pairs.source.deploy.*": deploy_not_in_a_pool,
    "conversion_hosts.pairs.destination.deploy.*": deploy_not_in_a_pool,
    "conversion_hosts.*": conversion_host_transport,
    "options.parallelism": apply_setting,
    "options.copy_parallelism": apply_setting,
    "options.prune": prune,
    "options.state_dir": state_dir,
}


def proof_for(path: str) -> Callable[..., None]:
    matches = [p for p in PROOFS if fnmatch.fnmatchcase(path, p)]
    # The most specific pattern wins (``conversion_hosts.*.server`` over ``conversion_hosts.*``).
    matches.sort(key=lambda p: (p.count("*"), -len(p)))
    assert matches, f"manifest field {path} has no proof that it does anything"
    return PROOFS[matches[0]]


ALL_FIELDS = sorted(leaf_paths(Manifest))


def test_every_schema_field_has_a_proof() -> None:
    assert len(ALL_FIELDS) > 60  # the walk reaches the nested sections
    for path in ALL_FIELDS:
        proof_for(path)
    unused = [p for p in PROOFS if not any(fnmatch.fnmatchcase(f, p) for f in ALL_FIELDS)]
    assert unused == [], "proofs for fields that no longer exist"


@pytest.mark.parametrize("path", ALL_FIELDS)
def test_the_field_has_an_effect(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    proof = proof_for(path)
    if proof in (conversion_host_transport, deploy_effect):
        proof(path, monkeypatch)
    else:
        proof(path)
