"""Issue 12, on the real local OpenStack: a manifest whose source and destination are one project
is refused at plan, with the clouds.yaml entry as both ends and with two spellings of it."""

from __future__ import annotations

from pathlib import Path

import openstack
import pytest
import yaml

from tests.integration.conftest import Devcloud, run_cli

pytestmark = pytest.mark.devcloud


def _tags_in(conn: openstack.connection.Connection) -> set[str]:
    project = conn.current_project_id
    tags: set[str] = set()
    for lister in (conn.network.networks, conn.network.routers, conn.network.security_groups):
        for res in lister(project_id=project):
            tags.update(res.tags or [])
    return tags


def test_one_clouds_yaml_entry_as_both_ends_is_refused(devcloud: Devcloud, tmp_path: Path) -> None:
    manifest = tmp_path / "self.yaml"
    manifest.write_text(
        "version: 1\nsource: {cloud: devcloud-src}\ndestination: {cloud: devcloud-src}\n"
    )
    src = openstack.connect(cloud="devcloud-src")
    before = _tags_in(src)
    for command in ("plan", "apply"):
        args = ["--auto-approve"] if command == "apply" else []
        result = run_cli(command, "-m", str(manifest), *args)
        assert result.returncode == 1, result.stdout + result.stderr
        out = result.stdout + result.stderr
        assert "are the same project" in out and src.current_project_id in out, out
        assert "Traceback" not in out
    assert _tags_in(src) == before  # nothing was stamped on the source


def test_another_spelling_of_the_same_keystone_is_refused(
    devcloud: Devcloud, tmp_path: Path
) -> None:
    """``localhost`` for ``127.0.0.1`` and a trailing ``/v3/``: still the same project."""
    clouds = yaml.safe_load(devcloud.clouds_yaml.read_text())
    entry = clouds["clouds"]["devcloud-src"]
    url = str(entry["auth"]["auth_url"]).rstrip("/")
    alias = {**entry, "auth": {**entry["auth"], "auth_url": url.replace("127.0.0.1", "localhost")}}
    if not alias["auth"]["auth_url"].endswith("/v3"):
        alias["auth"]["auth_url"] += "/v3"
    alias["auth"]["auth_url"] += "/"
    clouds["clouds"]["devcloud-src-alias"] = alias
    config = tmp_path / "clouds.yaml"
    config.write_text(yaml.safe_dump(clouds))
    config.chmod(0o600)
    manifest = tmp_path / "alias.yaml"
    manifest.write_text(
        "version: 1\nsource: {cloud: devcloud-src}\ndestination: {cloud: devcloud-src-alias}\n"
    )
    result = run_cli("plan", "-m", str(manifest), env={"OS_CLIENT_CONFIG_FILE": str(config)})
    out = result.stdout + result.stderr
    assert result.returncode == 1 and "are the same project" in out, out


def test_two_projects_of_one_cloud_still_plan(devcloud: Devcloud, tmp_path: Path) -> None:
    manifest = tmp_path / "two.yaml"
    manifest.write_text(
        "version: 1\nsource: {cloud: devcloud-src}\ndestination: {cloud: devcloud-dst}\n"
        "map: {external_networks: {public: public}}\n"
    )
    result = run_cli("plan", "-m", str(manifest))
    assert result.returncode == 0, result.stdout + result.stderr
