"""The human renderer against golden text, and its markup safety.

``tests/fixtures/render/<case>.txt`` holds the plain text a 100-column terminal shows for
``render_human(plan_document(plan))`` (rendered through ``rich.console.Console(record=True,
width=100, no_color=True)`` and ``export_text()``). After an intended change of the layout, rewrite
them with::

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/plans/test_render.py

and review the diff of the .txt files before committing it.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from tenantshift.plans import Action, Change, Plan, Reason
from tenantshift.plans.render import plan_document, render_json
from tenantshift.views.plan import render_human
from tests.plans.plans_data import full_plan, make_plan, no_changes_plan

GOLDEN = Path(__file__).parent.parent / "fixtures" / "render"

CASES: dict[str, tuple[Callable[[], Plan], bool]] = {
    "full": (full_plan, False),
    "full_verbose": (full_plan, True),
    "no_changes": (no_changes_plan, False),
}


def plain(markup: str, **console: object) -> str:
    out = Console(record=True, width=100, file=io.StringIO(), **console)  # type: ignore[arg-type]
    out.print(markup, end="")
    return out.export_text(styles=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    build, verbose = CASES[case]
    text = plain(render_human(plan_document(build()), verbose=verbose), no_color=True)
    path = GOLDEN / f"{case}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(), f"{case}: rerun with UPDATE_GOLDEN=1 if the change is intended"


def test_golden_files_are_all_used() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.txt")) == sorted(CASES)


def test_full_plan_covers_every_kind_of_block() -> None:
    """The golden plan must keep exercising what it claims to (the diff could change under it)."""
    plan = full_plan()
    actions = {c.action for c in plan.changes}
    assert {Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE, Action.NOOP} <= actions
    assert any(c.blocked for c in plan.changes)
    assert any(f.forces_replacement for c in plan.changes for f in c.fields)
    assert any(c.action is Action.NOOP and c.reason for c in plan.changes)
    assert plan.warnings
    assert not no_changes_plan().has_changes


def test_verbose_lists_reasoned_noops_only_when_asked() -> None:
    doc = plan_document(full_plan())
    assert "created by the cloud with security_group.api" not in render_human(doc)
    assert "created by the cloud with security_group.api" in render_human(doc, verbose=True)


NASTY = [
    "net[bold]x",
    "[/]",
    "[red]",
    "b\\[x]",
    "[link=https://example.com]y",
    "ends-with-bracket[",
]


@pytest.mark.parametrize("name", NASTY)
def test_markup_is_escaped(name: str) -> None:
    """Names come from the cloud: whatever they hold, the markup stays valid and shows them."""
    src = {"network": [{"id": "n1", "name": name, "description": f"about [b]{name}"}]}
    dst = {"network": [{"id": "d1", "name": name, "description": "", "provenance": "n1"}]}
    changes = [*make_plan(src, dst, warnings=(f"warning about {name} [i]",)).changes]
    changes.append(
        Change(
            address=f"network.{name}-blocked",
            kind="network",
            action=Action.CREATE,
            reason=Reason.BLOCKED_PREREQUISITE,
            detail=f"needs [{name}]",
            after={"name": name},
        )
    )
    plan = make_plan(src, dst, warnings=(f"warning about {name} [i]",)).model_copy(
        update={"changes": changes}
    )
    markup = render_human(plan_document(plan), verbose=True)
    for console in ({"no_color": True}, {"force_terminal": True, "color_system": "truecolor"}):
        text = plain(markup, **console)  # a MarkupError would raise here
        assert f"~ network.{name}\n" in text
        assert f"+ network.{name}-blocked\n" in text
        assert f"network.{name}-blocked is blocked: needs [{name}]" in text
        assert f"warning about {name} [i]" in text
        assert f'"about [b]{name}"'.replace("\\", "\\\\") in text
    # colour and plain output show the same characters
    assert plain(markup, no_color=True) == plain(
        markup, force_terminal=True, color_system="truecolor"
    )


def test_json_is_the_document() -> None:
    plan = full_plan()
    assert json.loads(render_json(plan)) == plan_document(plan)
    assert plan_document(plan)["summary"] == plan.summary()
