"""Saved plan files: round trip, and refusals that say which file and why."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tenantshift.plans.model import PLAN_FORMAT_VERSION
from tenantshift.plans.planfile import PlanFileError, inconsistency, load_plan, save_plan
from tenantshift.plans.render import render_json
from tests.plans.plans_data import full_plan, no_changes_plan


def test_round_trip(tmp_path: Path) -> None:
    plan = full_plan()
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    loaded = load_plan(path)
    assert loaded == plan
    assert render_json(loaded) == path.read_text()
    assert json.loads(path.read_text())["summary"] == plan.summary()
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]  # no temporary left behind


def test_save_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("old")
    save_plan(full_plan(), path)
    assert load_plan(path) == full_plan()


def _write(tmp_path: Path, body: object, name: str = "saved.plan") -> Path:
    path = tmp_path / name
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def test_wrong_format_version_refused(tmp_path: Path) -> None:
    body = json.loads(render_json(full_plan()))
    body["format_version"] = PLAN_FORMAT_VERSION + 1
    path = _write(tmp_path, body)
    with pytest.raises(PlanFileError) as info:
        load_plan(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert f"plan format {PLAN_FORMAT_VERSION + 1}" in message
    assert f"reads {PLAN_FORMAT_VERSION}" in message
    assert "make the plan again" in message


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("this is not json {", "invalid JSON"),
        ("", "invalid JSON"),
        ("[1, 2]", "not a tenantshift plan file"),
        ('{"hello": "world"}', "not a tenantshift plan file"),
        ('{"format_version": 1, "changes": "many"}', "damaged plan file"),
        ("\x00\x01binary", "invalid JSON"),
    ],
)
def test_garbage_refused_naming_the_file(tmp_path: Path, content: str, words: str) -> None:
    path = _write(tmp_path, content, name="garbage.json")
    with pytest.raises(PlanFileError) as info:
        load_plan(path)
    assert str(info.value).startswith(f"{path}: ")
    assert words in str(info.value)


def test_damaged_change_refused(tmp_path: Path) -> None:
    body = json.loads(render_json(full_plan()))
    body["changes"][0]["action"] = "explode"
    path = _write(tmp_path, body)
    with pytest.raises(PlanFileError, match=r"damaged plan file"):
        load_plan(path)


def test_missing_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(PlanFileError) as info:
        load_plan(path)
    assert str(info.value).startswith(f"{path}: cannot read the plan")


def test_a_plan_with_an_unknown_kind_is_refused_with_its_name(tmp_path: Path) -> None:
    body = {
        "format_version": 1,
        "tool_version": "0",
        "created_at": "now",
        "manifest_path": "m",
        "manifest_hash": "h",
        "source": {"digest": "a"},
        "destination": {"digest": "b"},
        "changes": [{"address": "gadget.x", "kind": "gadget", "action": "create"}],
    }
    path = tmp_path / "future.plan"
    path.write_text(json.dumps(body))
    with pytest.raises(PlanFileError, match="kinds this tenantshift does not know: gadget"):
        load_plan(path)


# -- hardening (security review M2, L9, L11) -------------------------------------------------


def _edited(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    body = json.loads(render_json(full_plan()))
    edit(body)
    return _write(tmp_path, body)


def _duplicate_first(body: dict[str, Any]) -> None:
    body["changes"].append(dict(body["changes"][0]))


def _unknown_dependency(body: dict[str, Any]) -> None:
    body["changes"][0]["depends_on"] = ["network.nowhere"]


def _create_without_after(body: dict[str, Any]) -> None:
    create = next(c for c in body["changes"] if c["action"] == "create")
    create["after"] = None


def _delete_with_after(body: dict[str, Any]) -> None:
    delete = next(c for c in body["changes"] if c["action"] == "delete")
    delete["after"] = {"name": "x"}


def _kind_not_address_prefix(body: dict[str, Any]) -> None:
    change = next(c for c in body["changes"] if c["kind"] == "network")
    change["kind"] = "router"


def _unknown_target(body: dict[str, Any]) -> None:
    body["targets"] = ["network.nowhere"]


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_duplicate_first, "appears twice"),
        (_unknown_dependency, "depends on network.nowhere, which the plan does not have"),
        (_create_without_after, "a create needs an after"),
        (_delete_with_after, "a delete needs a before and no after"),
        (_kind_not_address_prefix, "is not a router"),
        (_unknown_target, "target network.nowhere is not in the plan"),
    ],
)
def test_inconsistent_plan_refused(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], words: str
) -> None:
    path = _edited(tmp_path, edit)
    with pytest.raises(PlanFileError) as info:
        load_plan(path)
    assert str(info.value).startswith(f"{path}: inconsistent plan: ")
    assert words in str(info.value)


def test_every_plan_the_tool_writes_is_consistent() -> None:
    assert inconsistency(full_plan()) is None
    assert inconsistency(no_changes_plan()) is None


def test_deeply_nested_json_is_a_clean_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "[" * 100_000 + "]" * 100_000)
    with pytest.raises(PlanFileError, match="nested too deeply"):
        load_plan(path)


def test_plan_is_private_and_replaces_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    path = tmp_path / "next.plan"
    path.symlink_to(victim)
    (tmp_path / "next.plan.tmp").symlink_to(victim)  # the old predictable temporary name
    save_plan(full_plan(), path)
    assert victim.read_text() == "precious"
    assert not path.is_symlink()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_plan(path) == full_plan()


def test_plan_directory_created_private(tmp_path: Path) -> None:
    path = tmp_path / "plans" / "next.plan"
    save_plan(full_plan(), path)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["next.plan"]


def test_a_plan_migrating_a_new_and_a_resumed_volume_round_trips(tmp_path: Path) -> None:
    """A first migrate has no ``before``; a resumed one has the unverified copy's."""
    from tenantshift.plans import Action, Change

    plan = full_plan()
    migrating = plan.model_copy(
        update={
            "changes": [
                *plan.changes,
                Change(
                    address="volume.new", kind="volume", action=Action.MIGRATE, after={"size": 1}
                ),
                Change(
                    address="volume.half",
                    kind="volume",
                    action=Action.MIGRATE,
                    before={"size": 1},
                    after={"size": 1},
                    target_id="d1",
                ),
            ]
        }
    )
    assert inconsistency(migrating) is None
    save_plan(migrating, tmp_path / "m.plan")
    assert load_plan(tmp_path / "m.plan") == migrating
