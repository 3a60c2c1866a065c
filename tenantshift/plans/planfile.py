"""Saved plans: versioned JSON. Loading checks the format before trusting anything inside."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from tenantshift.errors import TenantshiftError
from tenantshift.fileio import write_private
from tenantshift.plans.model import PLAN_FORMAT_VERSION, Action, Plan
from tenantshift.plans.render import render_json
from tenantshift.resources import REGISTRY


class PlanFileError(TenantshiftError):
    pass


def save_plan(plan: Plan, path: Path) -> None:
    """Atomic and private (0600): a plan holds the inventory and decides what apply does."""
    write_private(path, render_json(plan))


def load_plan(path: Path) -> Plan:
    try:
        body = json.loads(path.read_text())
    except OSError as exc:
        raise PlanFileError(f"{path}: cannot read the plan: {exc.strerror}") from exc
    except ValueError as exc:
        raise PlanFileError(f"{path}: not a plan file (invalid JSON: {exc})") from exc
    except RecursionError:
        # json's C parser recurses once per nesting level; no plan is nested that deep.
        raise PlanFileError(f"{path}: not a plan file (nested too deeply)") from None
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
    problem = inconsistency(plan)
    if problem:
        raise PlanFileError(f"{path}: inconsistent plan: {problem}")
    return plan


def inconsistency(plan: Plan) -> str | None:
    """The first way ``plan`` contradicts itself, or None. The diff never makes such a plan, so
    one of these means the file was edited or damaged; apply must not guess what was meant."""
    seen: set[str] = set()
    for change in plan.changes:
        if change.address in seen:
            return f"{change.address} appears twice"
        seen.add(change.address)
    for change in plan.changes:
        if change.address.partition(".")[0] != change.kind:
            return f"{change.address} is not a {change.kind}"
        problem = _change_inconsistency(change.action, change.before, change.after)
        if problem:
            return f"{change.address}: {problem}"
        unknown = [d for d in change.depends_on if d not in seen]
        if unknown:
            return f"{change.address} depends on {unknown[0]}, which the plan does not have"
    unknown_targets = [t for t in plan.targets if t not in seen]
    if unknown_targets:
        return f"target {unknown_targets[0]} is not in the plan"
    return None


def _change_inconsistency(action: Action, before: object, after: object) -> str | None:
    """The invariant of docs/plan-format.md: ``before`` is None for creates (and for a migrate
    whose copy does not exist yet), ``after`` exactly for deletes."""
    if action is Action.CREATE and (after is None or before is not None):
        return "a create needs an after and no before"
    if action is Action.DELETE and (before is None or after is not None):
        return "a delete needs a before and no after"
    if action is Action.MIGRATE:
        return "a migrate needs an after" if after is None else None
    if action not in (Action.CREATE, Action.DELETE) and (before is None or after is None):
        return f"{action.value} needs both before and after"
    return None
