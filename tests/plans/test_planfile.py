"""Saved plan files: round trip, and refusals that say which file and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenantshift.plans.model import PLAN_FORMAT_VERSION
from tenantshift.plans.planfile import PlanFileError, load_plan, save_plan
from tenantshift.plans.render import render_json
from tests.plans.plans_data import full_plan


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
