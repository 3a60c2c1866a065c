"""A saved plan is applied only as the diff would make it now (security review M2)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tenantshift.engine.planning import (
    PlanError,
    StalePlanError,
    TamperedPlanError,
    check_fresh,
    make_plan,
    plan_manifest,
)
from tenantshift.manifest import Manifest
from tenantshift.plans.planfile import load_plan, save_plan
from tenantshift.providers.memory import MemoryProvider
from tests.engine.topology import build_source

MANIFEST = Manifest.model_validate(
    {"version": 1, "source": {"cloud": "src"}, "destination": {"cloud": "dst"}}
)


def _clouds() -> tuple[MemoryProvider, MemoryProvider]:
    source, destination = build_source(networks=2, groups=1), MemoryProvider("destination")
    destination.create("network", {"name": "prod-db-net"}, None)  # no marker: not ours
    return source, destination


def _saved_then_edited(
    tmp_path: Path,
    source: MemoryProvider,
    destination: MemoryProvider,
    edit: Callable[[dict[str, Any]], None],
) -> Path:
    path = tmp_path / "next.plan"
    save_plan(make_plan(MANIFEST, source, destination).plan, path)
    body = json.loads(path.read_text())
    edit(body)
    body["changes"].sort(key=lambda c: c["address"])
    path.write_text(json.dumps(body))
    return path


def test_an_untouched_saved_plan_passes(tmp_path: Path) -> None:
    source, destination = _clouds()
    path = tmp_path / "next.plan"
    made = make_plan(MANIFEST, source, destination).plan
    save_plan(made, path)
    saved = load_plan(path)
    assert saved.changes == made.changes
    src, dst = check_fresh(saved, MANIFEST, source, destination)
    # Checked against what both clouds hold now, which is what the plan recorded.
    assert (src.fingerprint(), dst.fingerprint()) == (saved.source.digest, saved.destination.digest)
    assert set(src.resources) == set(source.snapshot().resources)
    # The same file is refused once the destination moves: the pass above was a real check.
    destination.create("network", {"name": "by-hand"}, None)
    with pytest.raises(StalePlanError, match=r"network\.by-hand"):
        check_fresh(saved, MANIFEST, source, destination)


def test_an_added_delete_of_a_resource_not_ours_is_refused(tmp_path: Path) -> None:
    source, destination = _clouds()
    victim = destination.snapshot().resources["network.prod-db-net"]

    def add_delete(body: dict[str, Any]) -> None:
        body["changes"].append(
            {
                "address": "network.prod-db-net",
                "kind": "network",
                "action": "delete",
                "before": victim.params,
                "target_id": victim.id,
            }
        )

    saved = load_plan(_saved_then_edited(tmp_path, source, destination, add_delete))
    with pytest.raises(TamperedPlanError, match=r"network\.prod-db-net is not a change"):
        check_fresh(saved, MANIFEST, source, destination)


def _rename_a_create(body: dict[str, Any]) -> None:
    create = next(c for c in body["changes"] if c["action"] == "create")
    create["after"]["name"] = "evil"


def _drop_a_change(body: dict[str, Any]) -> None:
    body["changes"].pop(0)


@pytest.mark.parametrize(
    ("edit", "words"),
    [(_rename_a_create, "differs from what"), (_drop_a_change, "is missing from the saved plan")],
)
def test_an_edited_or_shortened_plan_is_refused(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], words: str
) -> None:
    source, destination = _clouds()
    saved = load_plan(_saved_then_edited(tmp_path, source, destination, edit))
    with pytest.raises(TamperedPlanError, match=words):
        check_fresh(saved, MANIFEST, source, destination)


def test_a_targeted_plan_is_checked_against_the_same_targets(tmp_path: Path) -> None:
    source, destination = _clouds()
    plan = make_plan(MANIFEST, source, destination, targets=("network.net-00",)).plan
    check_fresh(plan, MANIFEST, source, destination)


def test_the_plan_never_chooses_the_manifest() -> None:
    saved = make_plan(MANIFEST, *_clouds()).plan.model_copy(
        update={"manifest_path": "/elsewhere/other.yaml"}
    )
    with pytest.raises(PlanError, match=r"-m .*made from /elsewhere/other\.yaml"):
        plan_manifest(saved, None)
    assert plan_manifest(saved, Path("mine.yaml")) == Path("mine.yaml")
