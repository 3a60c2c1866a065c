"""Saved plans: versioned JSON. Loading checks the format before trusting anything inside."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from tenantshift.plans.model import PLAN_FORMAT_VERSION, Plan
from tenantshift.plans.render import render_json
from tenantshift.resources import REGISTRY


class PlanFileError(Exception):
    pass


def save_plan(plan: Plan, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_json(plan))
    tmp.replace(path)  # never leave a half-written plan behind


def load_plan(path: Path) -> Plan:
    try:
        body = json.loads(path.read_text())
    except OSError as exc:
        raise PlanFileError(f"{path}: cannot read the plan: {exc.strerror}") from exc
    except ValueError as exc:
        raise PlanFileError(f"{path}: not a plan file (invalid JSON: {exc})") from exc
    if not isinstance(body, dict) or "format_version" not in body:
        raise PlanFileError(f"{path}: not a tenantshift plan file")
    if body["format_version"] != PLAN_FORMAT_VERSION:
        raise PlanFileError(
            f"{path}: plan format {body['format_version']!r}, this tenantshift reads "
            f"{PLAN_FORMAT_VERSION}; make the plan again with this version"
        )
    body.pop("summary", None)
    try:
        plan = Plan.model_validate(body)
    except ValidationError as exc:
        raise PlanFileError(f"{path}: damaged plan file: {exc.errors()[0]['msg']}") from exc
    unknown = sorted({c.kind for c in plan.changes} - set(REGISTRY.names()))
    if unknown:
        raise PlanFileError(
            f"{path}: the plan has kinds this tenantshift does not know: {', '.join(unknown)}"
        )
    return plan
