"""The engine's entry points, one function per command (alembic's ``command.py``).

Each owns the order that makes it safe: open both clouds, take the apply lock, check the saved
plan is fresh (or make and confirm a new one), apply, and always release. The CLI only parses
arguments and renders what these return, so every command is usable from Python as well.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenantshift.engine.apply import JOURNAL_FILE, ApplyResult, apply_plan
from tenantshift.engine.connect import open_provider
from tenantshift.engine.planning import PlanResult, check_fresh, make_plan, take_snapshots
from tenantshift.engine.report import ReportError, run_report
from tenantshift.engine.state.journal import Journal, RunInfo
from tenantshift.engine.state.lock import ApplyLock
from tenantshift.engine.walk.context import ApplyContext, ApplySettings
from tenantshift.engine.walk.executor import IdMap
from tenantshift.engine.walk.limits import Limits
from tenantshift.engine.walk.walker import Listener
from tenantshift.engine.workloads import sweep
from tenantshift.engine.workloads.leftovers import Leftover, remove_unfinished, unfinished_copies
from tenantshift.errors import TenantshiftError, UsageError
from tenantshift.manifest import Manifest
from tenantshift.plans import Plan
from tenantshift.providers import Provider
from tenantshift.resources.marker import migration_id

#: Shown the plan about to be applied; returns whether to go on.
Confirm = Callable[[Plan], bool]


def providers(manifest: Manifest) -> tuple[Provider, Provider]:
    # Every node an apply runs at once may be in a call, on either cloud.
    concurrency = Limits.for_manifest(manifest).connections
    return (
        open_provider(manifest.source, "source", concurrency=concurrency),
        open_provider(manifest.destination, "destination", concurrency=concurrency),
    )


def identity_of(provider: Provider) -> str | None:
    """Which project a provider writes to, across manifests and checkouts (auth URL and project
    id for a cloud); None when it has no such identity (a test double)."""
    identity = getattr(provider, "identity", None)
    return str(identity) if identity else None


def plan(manifest: Manifest, *, targets: tuple[str, ...] = ()) -> PlanResult:
    source, destination = providers(manifest)
    return make_plan(manifest, source, destination, targets=targets)


def apply_saved(
    saved: Plan, manifest: Manifest, *, listener: Listener | None = None
) -> ApplyResult:
    """Apply a saved plan after checking, under the lock, that neither cloud nor the manifest
    changed since it was made."""
    source, destination = providers(manifest)
    with ApplyLock(manifest.state_dir, identity_of(destination)) as lock:
        check_fresh(saved, manifest, source, destination)
        return _apply(saved, manifest, source, destination, lock, listener)


def apply_manifest(
    manifest: Manifest,
    *,
    confirm: Confirm,
    targets: tuple[str, ...] = (),
    listener: Listener | None = None,
) -> tuple[Plan, ApplyResult | None]:
    """Plan, let ``confirm`` see the plan, apply it: all under one lock, so no other apply
    slips in between. The result is None when there was nothing to do or it was declined."""
    source, destination = providers(manifest)
    with ApplyLock(manifest.state_dir, identity_of(destination)) as lock:
        fresh = make_plan(manifest, source, destination, targets=targets).plan
        if not fresh.has_changes or not confirm(fresh):
            return fresh, None
        return fresh, _apply(fresh, manifest, source, destination, lock, listener)


def _apply(
    the_plan: Plan,
    manifest: Manifest,
    source: Provider,
    destination: Provider,
    lock: ApplyLock,
    listener: Listener | None,
) -> ApplyResult:
    # Both callers made or checked the plan against both clouds under ``lock``.
    settings = dataclasses.replace(ApplySettings.from_manifest(manifest), fresh_plan=True)
    return apply_plan(
        the_plan,
        destination,
        manifest.state_dir,
        source=source,
        settings=settings,
        listener=listener,
        lock=lock,
    )


def snapshot(manifest: Manifest, side: str) -> Any:
    if side not in ("source", "destination"):
        raise UsageError("--side is source or destination")
    ref = manifest.source if side == "source" else manifest.destination
    return open_provider(ref, side).snapshot()


@dataclass(frozen=True)
class Status:
    runs: list[RunInfo]
    #: Workload node -> (last completed phase, its data: ids, bytes, digest).
    workloads: dict[str, tuple[str, dict[str, Any]]]
    #: Temporaries not cleaned up yet (what ``cleanup`` would remove).
    pending: list[dict[str, Any]]
    #: Copies in the destination never verified (``cleanup`` removes them too); None when
    #: the clouds could not be read, with the reason in ``unread``.
    unfinished: list[Leftover] | None = None
    unread: str | None = None
    #: Warm workload (node) -> its syncs and cutover, oldest first.
    syncs: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)


def status(manifest: Manifest) -> Status | None:
    """What the journal knows; None when no apply ever ran for this manifest."""
    path = manifest.state_dir / JOURNAL_FILE
    if not path.exists():
        return None
    journal = Journal(path)
    try:
        found = Status(journal.runs(), journal.node_states(), journal.pending_temporaries())
        for row in journal.syncs():
            found.syncs.setdefault(str(row["node"]), []).append(row)
    finally:
        journal.close()
    try:
        source, destination = providers(manifest)
        src, dst = take_snapshots(source, destination)
    except TenantshiftError as exc:  # no cloud to read: the journal's view still stands
        return dataclasses.replace(found, unread=str(exc))
    return dataclasses.replace(found, unfinished=unfinished_copies(dst, migration_id(src)))


def cleanup(manifest: Manifest) -> tuple[str, ...]:
    """Remove what abandoned migrations left (their temporaries, their half-made copies in the
    destination) and restore the source, under the apply lock. Interrupted workloads start
    from the beginning next time."""
    path = manifest.state_dir / JOURNAL_FILE
    if not path.exists():
        return ()
    source, destination = providers(manifest)
    with ApplyLock(manifest.state_dir, identity_of(destination)):
        journal = Journal(path)
        try:
            journal.start_run("cleanup")
            ctx = ApplyContext(
                destination=destination,
                source=source,
                settings=ApplySettings.from_manifest(manifest),
                journal=journal,
                ids=IdMap(),
                listener=Listener(),
            )
            try:
                swept = asyncio.run(sweep(ctx))
            finally:
                ctx.shutdown()
            for node in journal.node_states():
                journal.clear_state(node)
            src, dst = take_snapshots(source, destination)
            leftovers = unfinished_copies(dst, migration_id(src))
            removed = remove_unfinished(destination, leftovers)
            journal.finish_run(True)
            return (*swept, *removed)
        finally:
            journal.close()


def report_run(manifest: Manifest, run: str = "latest", *, manifest_path: str = "") -> Any:
    """The report document of an applied run (``latest`` or a run id), from the journal alone."""
    path = manifest.state_dir / JOURNAL_FILE
    if not path.exists():
        raise ReportError("no apply has run for this manifest yet: report a plan instead")
    journal = Journal(path)
    try:
        return run_report(journal, run, manifest_path=manifest_path)
    finally:
        journal.close()
