"""The plan path at scale (memory provider): linear in the number of resources.

Operations are counted, not timed: every line tenantshift's own code runs plus every Python
function call anywhere (the plan's work inside pydantic, networkx or json included), in every
thread. A plan four times larger must cost about four times the operations; a loop over all
resources inside a loop over all resources (the graph's teardown ordering once was one) makes
it sixteen. Three plans are measured: creating a tenant, a converged one (all no-ops: the
matching), and tearing one down (prune with an empty source: cascades and destroy ordering).

One plan of 20,000 resources is also timed against a bound generous enough for a loaded CI
machine yet far below what a quadratic step would take at that size.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tenantshift
from tenantshift.engine.planning import make_plan
from tenantshift.engine.walk.graph import build_graph
from tenantshift.manifest import Manifest
from tenantshift.plans import Action
from tenantshift.providers.memory import MemoryProvider
from tenantshift.resources.marker import migration_id
from tests.engine.large_topology import build_large_source, copy_of

OURS = str(Path(tenantshift.__file__).parent)
SMALL, LARGE = 400, 1600


def manifest(prune: bool = False) -> Manifest:
    return Manifest.model_validate(
        {
            "version": 1,
            "source": {"cloud": "src"},
            "destination": {"cloud": "dst"},
            "options": {"prune": prune},
        }
    )


def operations(fn: Callable[[], Any]) -> int:
    """Lines run in tenantshift's code plus Python calls anywhere, in all threads."""
    count = 0

    def local(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        count += 1
        return local

    def calls(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        count += 1
        return local if frame.f_code.co_filename.startswith(OURS) else None

    threading.settrace(calls)
    sys.settrace(calls)
    try:
        fn()
    finally:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]
    return count


def plan_and_graph(scenario: str, size: int) -> Callable[[], Any]:
    source, _ = build_large_source(size)
    if scenario == "create":
        pair, spec = (source, MemoryProvider("destination")), manifest()
    else:
        copied = copy_of(source, migration_id(source.snapshot()))
        if scenario == "converged":
            pair, spec = (source, copied), manifest()
        else:  # teardown: the source emptied, the same migration (same label), prune on
            pair, spec = (MemoryProvider(source.label), copied), manifest(prune=True)

    def run() -> Any:
        plan = make_plan(spec, *pair).plan
        return plan, build_graph(plan)

    return run


@pytest.mark.parametrize("scenario", ["create", "converged", "teardown"])
def test_the_plan_path_costs_operations_linear_in_resources(scenario: str) -> None:
    plan, graph = plan_and_graph(scenario, SMALL)()
    if scenario == "create":
        assert sum(c.action is Action.CREATE for c in plan.changes) > SMALL * 0.8
    elif scenario == "converged":
        assert not plan.has_changes
    else:
        assert sum(c.action is Action.DELETE for c in plan.changes) > SMALL * 0.9
        assert graph.number_of_nodes() > SMALL * 0.9
    small = operations(plan_and_graph(scenario, SMALL))
    large = operations(plan_and_graph(scenario, LARGE))
    ratio = large / small
    # Linear is 4 (plus a little for sorting); one quadratic step anywhere pushes it far up.
    assert ratio < 5, f"{scenario}: {small} -> {large} operations for 4x the resources"


def test_twenty_thousand_resources_plan_in_seconds() -> None:
    source, mix = build_large_source(20_000)
    start = time.perf_counter()
    plan = make_plan(manifest(), source, MemoryProvider("destination")).plan
    graph = build_graph(plan)
    elapsed = time.perf_counter() - start
    assert mix.total >= 19_900 and len(plan.changes) == mix.total
    assert graph.number_of_nodes() > 17_000
    # About 10 s on a busy 2-core machine; a quadratic step costs minutes at this size.
    assert elapsed < 90, f"{elapsed:.0f} s to plan {mix.total} resources"


def test_the_plan_runs_no_garbage_collection() -> None:
    """Issue 10: the collector's passes over the plan's live objects were 5-9 s of a 20,000
    resource plan and freed nothing; the plan pauses it (and leaves it as it found it)."""
    import gc

    source, _ = build_large_source(2_000)
    passes: list[int] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            passes.append(info["generation"])

    assert gc.isenabled()
    gc.callbacks.append(count)
    try:
        make_plan(manifest(), source, MemoryProvider("destination"))
    finally:
        gc.callbacks.remove(count)
    # At most the one the allocations of the plan trigger as soon as the collector is back.
    assert len(passes) <= 1, f"{len(passes)} collections during the plan"
    assert gc.isenabled()
