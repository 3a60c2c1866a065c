"""The JSON plan document: the contract (docs/plan-format.md). The human view
(``tenantshift.views.plan``) is rendered from this document, so it can never show something the
JSON does not hold."""

from __future__ import annotations

import json
from typing import Any

from tenantshift.plans.model import Plan


def plan_document(plan: Plan) -> dict[str, Any]:
    """The JSON view: the plan itself plus its summary."""
    body = plan.model_dump(mode="json")
    body["summary"] = plan.summary()
    return body


def render_json(plan: Plan) -> str:
    return json.dumps(plan_document(plan), indent=2, sort_keys=True) + "\n"
