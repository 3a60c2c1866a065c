"""The JSON plan document against its committed JSON Schema (docs/plan-schema.json)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest

from tenantshift.plans import Plan
from tenantshift.plans.render import plan_document, render_json
from tenantshift.views.plan import render_human
from tests.plans.plan_schema import REGENERATE, SCHEMA_PATH, render
from tests.plans.plans_data import full_plan, no_changes_plan


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


def test_committed_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text() == render(), (
        f"{SCHEMA_PATH.name} no longer matches the plan model; regenerate it with `{REGENERATE}`, "
        "review the diff, document it in docs/plan-format.md and bump PLAN_FORMAT_VERSION if "
        "readers of the old format would break"
    )


@pytest.mark.parametrize("build", [full_plan, no_changes_plan])
def test_real_plans_validate(schema: dict[str, Any], build: Any) -> None:
    jsonschema.validate(json.loads(render_json(build())), schema)


def _broken(mutate: Any) -> dict[str, Any]:
    doc = copy.deepcopy(plan_document(full_plan()))
    mutate(doc)
    return doc


def _change(doc: dict[str, Any], action: str) -> dict[str, Any]:
    return next(c for c in doc["changes"] if c["action"] == action)


BROKEN = {
    "create_with_before": lambda d: _change(d, "create").update(before={}),
    "update_without_before": lambda d: _change(d, "update").update(before=None),
    "delete_with_after": lambda d: _change(d, "delete").update(after={"name": "x"}),
    "replace_without_after": lambda d: _change(d, "replace").update(after=None),
    "unknown_action": lambda d: _change(d, "update").update(action="modify"),
    "unknown_reason": lambda d: _change(d, "delete").update(reason="because"),
    "missing_summary": lambda d: d.pop("summary"),
    "summary_missing_blocked": lambda d: d["summary"].pop("blocked"),
    "summary_extra_count": lambda d: d["summary"].update(moved=1),
    "other_format_version": lambda d: d.update(format_version=2),
    "change_missing_target_id": lambda d: _change(d, "update").pop("target_id"),
    "fingerprint_not_a_string": lambda d: d["source"].update(digest=1),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_schema_rejects(schema: dict[str, Any], case: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_broken(BROKEN[case]), schema)


def test_documented_example_validates(schema: dict[str, Any]) -> None:
    """The example in docs/plan-format.md is a valid document whose summary adds up."""
    text = (SCHEMA_PATH.parent / "plan-format.md").read_text()
    match = re.search(r"```json\n(.*?)```", text, re.DOTALL)
    assert match, "docs/plan-format.md has no JSON example"
    example = json.loads(match.group(1))
    jsonschema.validate(example, schema)
    plan = Plan.model_validate({k: v for k, v in example.items() if k != "summary"})
    assert plan.summary() == example["summary"]
    assert render_human(plan_document(plan)) == render_human(example)
