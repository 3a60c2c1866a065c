"""Loading good manifests: defaults, rendering, path resolution, secrets, hashing."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from tenantshift.errors import UsageError
from tenantshift.manifest import (
    KINDS,
    CloudRef,
    Manifest,
    ManifestError,
    Select,
    load_manifest,
    manifest_hash,
    manifest_json,
    parse_vars,
)
from tenantshift.manifest.loader import parse_yaml

Write = Callable[..., Path]

MINIMAL = """\
version: 1
source: {cloud: devcloud-src}
destination: {cloud: devcloud-dst}
"""

PASSWORD = "pa55-word-xyzzy"
APP_SECRET = "app-cred-secret-plugh"

INLINE = """\
version: 1
source:
  auth:
    auth_url: https://src.example.com:5000/v3
    username: migrator
    password: "{{ env.SRC_PASSWORD }}"
    project_name: web
destination:
  project: 0123456789abcdef0123456789abcdef
  auth:
    auth_url: https://dst.example.com:5000/v3
    username: migrator
    password: "{{ env.SRC_PASSWORD }}"
    user_domain_id: default
"""

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl host"


def test_minimal_defaults(write: Write) -> None:
    path = write(MINIMAL)
    m = load_manifest(path, environ={})
    assert m.version == 1
    assert m.source.cloud == "devcloud-src" and m.source.auth is None
    assert m.source.verify is True and m.source.region is None and m.source.project is None
    assert m.conversion_hosts is None
    assert m.map.names == "{name}" and m.map.flavors == {} and m.map.external_networks == {}
    assert (m.options.parallelism, m.options.copy_parallelism, m.options.prune) == (10, 2, False)
    w = m.workloads
    assert not w.stop_source_servers and not w.start_destination_servers
    assert w.preserve_fixed_ips and not w.preserve_macs
    assert all(m.select.selects(kind, "anything-at-all") for kind in KINDS)
    assert m.path == path.resolve()
    assert m.state_dir == path.parent.resolve() / ".tenantshift" / "migration"


def test_kinds() -> None:
    assert KINDS == (
        "network", "subnet", "router", "router_interface", "security_group",
        "security_group_rule", "port", "keypair", "volume", "server", "image",
    )  # fmt: skip
    assert tuple(Select.model_fields) == KINDS


def test_env_and_var_render(write: Write) -> None:
    path = write(
        "version: 1\n"
        "source: {cloud: '{{ env.SRC_CLOUD }}', region: \"{{ var.region }}\"}\n"
        "destination: {cloud: \"{{ var.dst | default('fallback') }}\"}\n"
        "options: {parallelism: {{ var.par }}}\n"
    )
    m = load_manifest(path, variables={"region": "R2", "par": "7"}, environ={"SRC_CLOUD": "x"})
    assert (m.source.cloud, m.source.region) == ("x", "R2")
    assert m.destination.cloud == "fallback"
    assert m.options.parallelism == 7


def test_environ_defaults_to_os_environ(write: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(MINIMAL.replace("devcloud-src", "'{{ env.TENANTSHIFT_TEST_CLOUD }}'"))
    monkeypatch.setenv("TENANTSHIFT_TEST_CLOUD", "from-os-environ")
    assert load_manifest(path).source.cloud == "from-os-environ"
    monkeypatch.delenv("TENANTSHIFT_TEST_CLOUD")
    with pytest.raises(ManifestError, match=r"undefined variable 'env.TENANTSHIFT_TEST_CLOUD'"):
        load_manifest(path)


@pytest.mark.parametrize("name", ["CI_JOB_TOKEN", "AWS_SECRET_ACCESS_KEY", "HOME"])
def test_templates_see_only_allowed_environment_variables(
    write: Write, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A shared manifest must not copy unrelated secrets into names the plan shows (L8)."""
    path = write(MINIMAL.replace("devcloud-src", f"'x-{{{{ env.{name} }}}}'"))
    monkeypatch.setenv(name, "glpat-XXXXsecretXXXX")
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    message = str(info.value)
    assert f"undefined variable 'env.{name}'" in message
    assert f"pass --env {name}" in message
    assert "glpat" not in message
    assert load_manifest(path, env_names=[name]).source.cloud == "x-glpat-XXXXsecretXXXX"


def test_openstack_client_variables_are_allowed(
    write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OS_CLOUD", "from-os-cloud")
    path = write(MINIMAL.replace("devcloud-src", "'{{ env.OS_CLOUD }}'"))
    assert load_manifest(path).source.cloud == "from-os-cloud"


def test_shared_aliases_are_marked_once() -> None:
    """Ten aliases of ten aliases of ...: the collector must not walk every expansion (L5)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 7):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    doc, diagnostics = parse_yaml("\n".join(lines) + "\n", "bomb.yaml")
    assert not diagnostics and doc is not None
    assert len(doc.marks) < 200


def test_a_recursive_alias_does_not_loop() -> None:
    doc, diagnostics = parse_yaml("a: &a [*a]\n", "loop.yaml")
    assert not diagnostics and doc is not None


def test_deep_template_nesting_is_a_clean_error(write: Write) -> None:
    path = write(MINIMAL + "# {{ " + "(" * 5000 + "1" + ")" * 5000 + " }}\n")
    with pytest.raises(ManifestError, match="nested too deeply"):
        load_manifest(path, environ={})


def test_block_tags_keep_line_numbers(write: Write) -> None:
    path = write(
        "version: 1\n"
        "{% if var.inline %}\n"
        "source: {cloud: a}\n"
        "{% else %}\n"
        "source: {cloud: b}\n"
        "{% endif %}\n"
        "destination: {cloud: c}\n"
        "options: {parallelism: 0}\n"
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(path, variables={"inline": ""}, environ={})
    (diag,) = info.value.diagnostics
    assert (diag.line, diag.column, diag.field) == (8, 24, "options.parallelism")
    assert diag.file == str(path)


def test_diagnostic_fields(write: Write) -> None:
    path = write(MINIMAL + "select:\n  network:\n    exclud: [x]\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(path, environ={})
    (diag,) = info.value.diagnostics
    assert (diag.line, diag.column) == (6, 5)
    assert diag.field == "select.network.exclud"
    assert diag.message == "unknown key 'exclud'"
    assert diag.hint == "did you mean 'exclude'?"


def test_relative_key_file_resolves_against_manifest(
    write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        MINIMAL + "conversion_hosts:\n"
        "  source: {address: a, key_file: keys/id, known_hosts: ../kh}\n"
        "  destination: {address: b, key_file: ~/.ssh/id, host_key: '" + HOST_KEY + "'}\n",
        name="sub/migration.yaml",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the current directory must not matter
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    m = load_manifest(path, environ={})
    assert m.conversion_hosts is not None
    src, dst = m.conversion_hosts.source, m.conversion_hosts.destination
    assert src.key_file == tmp_path / "sub" / "keys" / "id"
    assert src.known_hosts == tmp_path / "sub" / ".." / "kh"
    assert dst.key_file == tmp_path / "home" / ".ssh" / "id"
    assert (src.port, src.user, src.host_key_policy) == (22, "cloud-user", "verify")
    assert (src.device_dir, src.python) == ("/dev/disk/by-id", "python3")
    assert dst.host_key == HOST_KEY


def test_insecure_skip_needs_no_host_key(write: Write) -> None:
    host = "{address: a, key_file: k, host_key_policy: insecure-skip}"
    path = write(MINIMAL + f"conversion_hosts:\n  source: {host}\n  destination: {host}\n")
    m = load_manifest(path, environ={})
    assert m.conversion_hosts is not None
    assert m.conversion_hosts.source.host_key_policy == "insecure-skip"


def test_state_dir_override(write: Write, tmp_path: Path) -> None:
    m = load_manifest(write(MINIMAL + "options: {state_dir: state/here}\n"), environ={})
    assert m.state_dir == tmp_path.resolve() / "state" / "here"
    m = load_manifest(write(MINIMAL + "options: {state_dir: /abs/state}\n"), environ={})
    assert m.state_dir == Path("/abs/state")


def test_secrets_never_shown(write: Write) -> None:
    path = write(INLINE)
    m = load_manifest(path, environ={"SRC_PASSWORD": PASSWORD})
    assert m.source.auth is not None and m.source.auth.password is not None
    assert m.source.auth.password.get_secret_value() == PASSWORD
    for text in (repr(m), str(m), m.model_dump_json(), str(m.model_dump()), manifest_json(m)):
        assert PASSWORD not in text
    assert "password" not in manifest_json(m)  # excluded, not even masked


def test_hash_ignores_secrets_and_location(write: Write, tmp_path: Path) -> None:
    a = load_manifest(write(INLINE), environ={"SRC_PASSWORD": PASSWORD})
    b = load_manifest(write(INLINE, name="other/x.yaml"), environ={"SRC_PASSWORD": "changed"})
    assert manifest_hash(a) == manifest_hash(b)
    assert len(manifest_hash(a)) == 64
    c = load_manifest(
        write(INLINE + "options: {parallelism: 3}\n", name="c.yaml"),
        environ={"SRC_PASSWORD": PASSWORD},
    )
    assert manifest_hash(c) != manifest_hash(a)


def test_moving_a_manifest_with_its_files_keeps_its_hash(write: Write, tmp_path: Path) -> None:
    """Issue 12: relative paths are hashed as written, so a saved plan survives the move of
    its manifest's directory; pointing one at another file still changes the hash."""
    body = (
        MINIMAL + "conversion_hosts:\n"
        "  source: {address: a, key_file: keys/id, known_hosts: ../kh, host_key_policy: verify}\n"
        "  destination: {address: b, key_file: /etc/tenantshift/id, host_key: '" + HOST_KEY + "'}\n"
    )
    here = load_manifest(write(body, name="here/m.yaml"), environ={})
    moved = load_manifest(write(body, name="there/deeper/m.yaml"), environ={})
    assert here.conversion_hosts is not None and moved.conversion_hosts is not None
    assert here.conversion_hosts.source.key_file != moved.conversion_hosts.source.key_file
    assert manifest_hash(here) == manifest_hash(moved)
    other = load_manifest(write(body.replace("keys/id", "keys/id2"), name="o/m.yaml"), environ={})
    assert manifest_hash(other) != manifest_hash(here)
    # An absolute path is the same file wherever the manifest is: hashed as it is.
    assert "/etc/tenantshift/id" in manifest_json(here, tmp_path / "here")


def test_connect_kwargs_password() -> None:
    ref = CloudRef.model_validate(
        {
            "auth": {
                "auth_url": "https://k/v3",
                "username": "u",
                "password": PASSWORD,
                "project_name": "p",
            },
            "region": "R1",
        }
    )
    assert ref.to_connect_kwargs() == {
        "auth_type": "password",
        "auth": {
            "auth_url": "https://k/v3",
            "username": "u",
            "password": PASSWORD,
            "project_name": "p",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": "R1",
        "verify": True,
    }


def test_connect_kwargs_project_override(write: Write) -> None:
    m = load_manifest(write(INLINE), environ={"SRC_PASSWORD": PASSWORD})
    auth = m.destination.to_connect_kwargs()["auth"]
    assert auth["project_id"] == "0123456789abcdef0123456789abcdef"
    assert auth["user_domain_id"] == "default" and "user_domain_name" not in auth


def test_connect_kwargs_app_credential() -> None:
    ref = CloudRef.model_validate(
        {
            "auth": {
                "auth_url": "https://k/v3",
                "application_credential_id": "abc",
                "application_credential_secret": APP_SECRET,
            },
            "verify": False,
        }
    )
    assert ref.to_connect_kwargs() == {
        "auth_type": "v3applicationcredential",
        "auth": {
            "auth_url": "https://k/v3",
            "application_credential_id": "abc",
            "application_credential_secret": APP_SECRET,
        },
        "verify": False,
    }
    assert APP_SECRET not in repr(ref) and APP_SECRET not in ref.model_dump_json()


def test_connect_kwargs_cloud(write: Write, tmp_path: Path) -> None:
    ref = CloudRef(cloud="c")
    # An omitted `verify` must not override what clouds.yaml says.
    assert ref.to_connect_kwargs() == {"cloud": "c"}
    m = load_manifest(
        write(MINIMAL.replace("{cloud: devcloud-src}", "{cloud: c, project: web, verify: ca.pem}")),
        environ={},
    )
    assert m.source.to_connect_kwargs() == {
        "cloud": "c",
        "project_name": "web",
        "verify": True,
        "cacert": str(tmp_path.resolve() / "ca.pem"),
    }


def test_select_semantics() -> None:
    select = Select.model_validate(
        {"network": {"include": ["osm_.*", "db"], "exclude": ["osm_tmp.*"]}}
    )
    assert select.selects("network", "osm_a")
    assert select.selects("network", "db")
    assert not select.selects("network", "db2")  # anchored: a full match is needed
    assert not select.selects("network", "x_osm_a")
    assert not select.selects("network", "osm_tmp1")  # exclude wins over include
    assert select.selects("subnet", "whatever")  # unlisted kinds are taken whole
    exclude_only = Select.model_validate({"server": {"exclude": [".*-scratch"]}})
    assert exclude_only.selects("server", "web") and not exclude_only.selects("server", "a-scratch")
    with pytest.raises(ValueError, match="unknown kind 'netwrok'"):
        select.selects("netwrok", "x")


def test_names_template(write: Write) -> None:
    m = load_manifest(write(MINIMAL + "map: {names: 'mig-{kind}-{name}'}\n"), environ={})
    assert m.map.rename("network", "web") == "mig-network-web"
    m = load_manifest(write(MINIMAL + "map: {names: '{name:.3}-x'}\n"), environ={})
    assert m.map.rename("network", "abcdef") == "abc-x"


def test_merge_keys_are_not_duplicates(write: Write) -> None:
    path = write(
        "version: 1\n"
        "source: &common {cloud: a, region: R1}\n"
        "destination:\n"
        "  <<: *common\n"
        "  cloud: b\n"
    )
    m = load_manifest(path, environ={})
    assert (m.destination.cloud, m.destination.region) == ("b", "R1")


def test_sandboxed_template(write: Write) -> None:
    path = write(MINIMAL + "# {{ ''.__class__.__mro__[1].__subclasses__() }}\n")
    with pytest.raises(ManifestError, match=r"migration.yaml:4: "):
        load_manifest(path, environ={})


def test_models_are_frozen_and_strict(write: Write) -> None:
    m = load_manifest(write(MINIMAL), environ={})
    with pytest.raises(ValidationError):
        m.options.parallelism = 3  # type: ignore[misc]
    seen: set[type[BaseModel]] = set()
    todo: list[type[BaseModel]] = [Manifest]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        assert cls.model_config.get("frozen") is True, cls
        assert cls.model_config.get("extra") == "forbid", cls
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no description"
        for sub in _submodels(cls):
            todo.append(sub)
    assert len(seen) >= 10


def _submodels(cls: type[BaseModel]) -> list[type[BaseModel]]:
    import typing

    out = []

    def visit(arg: object) -> None:  # through unions, Annotated (tagged members), lists
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            out.append(arg)
        for inner in typing.get_args(arg):
            visit(inner)

    for field in cls.model_fields.values():
        visit(field.annotation)
    return out


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read manifest"):
        load_manifest(tmp_path / "nope.yaml")


def test_parse_vars() -> None:
    assert parse_vars(["a=1", "b=x=y", "a=2"]) == {"a": "2", "b": "x=y"}
    with pytest.raises(UsageError, match="key=value"):
        parse_vars(["novalue"])


ROOT_MODULES = ("tenantshift.canonical", "tenantshift.errors", "tenantshift.fileio")


def test_manifest_layer_imports_nothing_above_it() -> None:
    package = Path(__file__).parents[2] / "tenantshift" / "manifest"
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                # The package-root helpers (canonical, errors, fileio) sit below every layer.
                if name.startswith("tenantshift") and name not in ROOT_MODULES:
                    assert name.startswith("tenantshift.manifest"), f"{source.name}: {name}"


def test_line_map_after_multiline_expansion(write: Write) -> None:
    path = write(
        "version: 1\nsource:\n{{ var.block }}\ndestination: {cloud: c}\noptions: {prune: maybe}\n"
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(
            path, variables={"block": "  cloud: a\n  region: r\n  project: p"}, environ={}
        )
    (diag,) = info.value.diagnostics
    assert (diag.line, diag.field) == (5, "options.prune")


def test_verify_quoted_booleans(write: Write) -> None:
    text = MINIMAL.replace("{cloud: devcloud-src}", '{cloud: a, verify: "{{ var.v }}"}')
    assert load_manifest(write(text), variables={"v": "False"}, environ={}).source.verify is False
    assert load_manifest(write(text), variables={"v": "true"}, environ={}).source.verify is True
