"""A plan warns only about what the manifest selects (issue 12): duplicate names among
resources that do not migrate are noise, and a user with a large shared project drowned in it."""

from __future__ import annotations

from typing import Any

from tenantshift.engine.planning import make_plan
from tenantshift.manifest import Manifest
from tenantshift.providers.memory import MemoryProvider


def _manifest(**sections: Any) -> Manifest:
    return Manifest.model_validate(
        {"version": 1, "source": {"cloud": "src"}, "destination": {"cloud": "dst"}, **sections}
    )


def _clouds() -> tuple[MemoryProvider, MemoryProvider]:
    source, destination = MemoryProvider("src"), MemoryProvider("dst")
    for name in ("app", "app", "scratch", "scratch"):
        source.create("network", {"name": name}, None)
    for name in ("legacy", "legacy", "app", "app"):
        destination.create("network", {"name": name}, None)
    return source, destination


def test_duplicates_outside_the_selection_are_not_warned_about() -> None:
    source, destination = _clouds()
    warnings = make_plan(
        _manifest(select={"network": {"include": ["app"]}}), source, destination
    ).plan.warnings
    text = "\n".join(warnings)
    assert "'app'" in text, warnings  # selected: the user must know app~2 exists
    assert "scratch" not in text and "legacy" not in text, warnings
    assert len(warnings) == len(set(warnings)), warnings  # said once, not per snapshot


def test_destination_duplicates_count_when_a_desired_resource_has_their_name() -> None:
    source, destination = _clouds()
    warnings = make_plan(
        _manifest(select={"network": {"include": ["scratch"]}}), source, destination
    ).plan.warnings
    text = "\n".join(warnings)
    assert "'scratch'" in text and "'app'" not in text and "legacy" not in text, warnings


def test_everything_selected_warns_about_every_source_duplicate() -> None:
    source, destination = _clouds()
    text = "\n".join(make_plan(_manifest(), source, destination).plan.warnings)
    assert "'app'" in text and "'scratch'" in text and "legacy" not in text
