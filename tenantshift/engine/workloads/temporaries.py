"""Undoing temporaries: what cleanup nodes, ``tenantshift cleanup`` and the pre-walk sweep do.

Each kind of ``Temporary`` has its undo registered here with ``@undoes`` (a test checks that
every kind has one). Rows are undone newest first, so an attachment to a conversion host goes
before the temporary volume it attached, and that before the snapshot it was made from; a data
volume detached from its server is re-attached last. Every undo is idempotent (detaching what
is detached, deleting what is gone are no-ops), so a sweep interrupted half-way is simply run
again. Undoing what an unfinished phase made moves that migration's journal back to before the
phase (``_rewind``): a resumed run makes them again instead of trusting ids that are gone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from tenantshift.engine.state.temporary import Temporary
from tenantshift.engine.walk.context import TRANSFER_OWNER, ApplyContext
from tenantshift.engine.workloads.registry import MIGRATIONS, WorkloadError, verbs_of
from tenantshift.manifest import ConversionPair
from tenantshift.providers import NotFoundError, ProviderError
from tenantshift.providers.workload import WorkloadVerbs, image_snapshot_ids
from tenantshift.transfer import TransferError

Row = dict[str, Any]
Undo = Callable[[ApplyContext, Row], Awaitable[None]]

#: Temporary kind -> how it is undone.
UNDO: dict[Temporary, Undo] = {}


def undoes(kind: Temporary) -> Callable[[Undo], Undo]:
    def register(fn: Undo) -> Undo:
        if kind in UNDO:
            raise ValueError(f"temporary {kind} has two undos")
        UNDO[kind] = fn
        return fn

    return register


def _verbs(ctx: ApplyContext, row: Row) -> WorkloadVerbs:
    return verbs_of(ctx, str(row["cloud"]), "workloads")


async def _blocking(ctx: ApplyContext, fn: Callable[[], Any]) -> None:
    await ctx.run_blocking(fn)


def _target(row: Row, find: Callable[[str], str | None]) -> str | None:
    """The temporary's id: recorded once created, else looked up by its (unique) name, for a
    crash between the create call and the journal write."""
    return str(row["resource_id"]) if row["resource_id"] else find(str(row["name"]))


@undoes(Temporary.ATTACHMENT)
async def _detach(ctx: ApplyContext, row: Row) -> None:
    data = row["data"]
    await _blocking(
        ctx, lambda: _verbs(ctx, row).volume.detach(data["server_id"], data["volume_id"])
    )


@undoes(Temporary.DETACHED)
async def _reattach(ctx: ApplyContext, row: Row) -> None:
    """A data volume taken off its server goes back where it was."""
    data = row["data"]
    volume = _verbs(ctx, row).volume
    await _blocking(
        ctx, lambda: volume.attach(data["server_id"], data["volume_id"], data.get("device"))
    )


@undoes(Temporary.STOPPED)
async def _start(ctx: ApplyContext, row: Row) -> None:
    """A source server we stopped ends as it began, running."""
    server = _verbs(ctx, row).server
    await _blocking(ctx, lambda: server.start(row["data"]["server_id"]))


@undoes(Temporary.VOLUME)
async def _delete_volume(ctx: ApplyContext, row: Row) -> None:
    volume = _verbs(ctx, row).volume

    def undo() -> None:
        target = _target(row, volume.find_named)
        if target is not None:
            volume.delete(target)

    await _blocking(ctx, undo)


@undoes(Temporary.SNAPSHOT)
async def _delete_snapshot(ctx: ApplyContext, row: Row) -> None:
    volume = _verbs(ctx, row).volume

    def undo() -> None:
        target = _target(row, volume.find_snapshot)
        if target is not None:
            volume.delete_snapshot(target)

    await _blocking(ctx, undo)


@undoes(Temporary.IMAGE)
async def _delete_image(ctx: ApplyContext, row: Row) -> None:
    verbs = _verbs(ctx, row)
    image = verbs.image

    def undo() -> None:
        target = _target(row, image.find_named)
        if target is None:
            return
        # A volume-backed server's image is snapshots of its volumes, which outlive it.
        for snapshot_id in image_snapshot_ids(image.get(target)):
            if verbs.volume.snapshot_status(snapshot_id) is None:
                continue  # deleted as a journaled temporary already
            with contextlib.suppress(NotFoundError):
                verbs.volume.snapshot_ready(snapshot_id)  # Nova may still be making it
                verbs.volume.delete_snapshot(snapshot_id)
        image.discard(target)

    await _blocking(ctx, undo)


def _pair_of(ctx: ApplyContext, row: Row) -> ConversionPair:
    """The pair a session temporary was made on (rows of one-pair runs name none)."""
    hosts = ctx.settings.conversion_hosts
    what = "a copy key" if row["kind"] == Temporary.COPY_KEY else "a run directory"
    if hosts is None:
        raise WorkloadError(f"{what} is left on a conversion host: conversion_hosts needed")
    name = (row.get("data") or {}).get("pair")
    try:
        return hosts.pair(str(name)) if name else hosts.only_pair()
    except (KeyError, ValueError) as exc:
        raise WorkloadError(f"{what} is left on conversion host pair {name!r}: {exc}") from None


@undoes(Temporary.COPY_KEY)
async def _revoke_key(ctx: ApplyContext, row: Row) -> None:
    pair = _pair_of(ctx, row)
    try:
        await ctx.links.sweep_keys(pair, [str(row["name"])], ctx.settings.transfer)
    except TransferError as exc:
        raise WorkloadError(f"copy key {row['name']} (pair {pair.name!r}): {exc}") from None


@undoes(Temporary.RUN_DIR)
async def _remove_run_dir(ctx: ApplyContext, row: Row) -> None:
    pair = _pair_of(ctx, row)
    try:
        await ctx.links.remove_dirs(
            pair, str(row["cloud"]), [str(row["name"])], ctx.settings.transfer
        )
    except TransferError as exc:
        raise WorkloadError(f"run directory {row['name']} (pair {pair.name!r}): {exc}") from None


async def clean_up(
    ctx: ApplyContext,
    *,
    owner: str | None,
    kinds: frozenset[Temporary] | None = None,
    cloud: str | None = None,
) -> str:
    """Undo the pending temporaries of ``owner`` (all owners when None; only ``kinds``, only
    those in ``cloud``, when given), newest first. Every one is tried; failures are raised
    together at the end."""
    rows = [
        row
        for row in ctx.journal.pending_temporaries(owner)
        if (kinds is None or Temporary(row["kind"]) in kinds)
        and (cloud is None or row["cloud"] == cloud)
    ]
    failures: list[str] = []
    undone: dict[str, set[Temporary]] = {}
    for row in rows:
        kind = Temporary(row["kind"])
        try:
            await UNDO[kind](ctx, row)
        except (ProviderError, WorkloadError) as exc:
            failures.append(f"{row['kind']} {row['name']} ({row['cloud']}): {exc}")
            continue
        ctx.journal.temporary_cleaned(int(row["seq"]))
        undone.setdefault(str(row["owner"]), set()).add(kind)
    for node, made in undone.items():
        _rewind(ctx, node, made)
    if failures:
        raise WorkloadError("could not clean up: " + "; ".join(failures))
    return f"cleaned up {len(rows)} temporaries" if rows else "nothing to clean up"


def _rewind(ctx: ApplyContext, node: str, undone: set[Temporary]) -> None:
    """Move a migration's journal back to before the first phase whose temporaries were just
    undone, unless its copies are verified already (then undoing them is the rest of its
    work). Without this, a resumed run would trust attachments or temporary volumes that are
    gone: it waited for devices that never came, or attached a deleted volume."""
    state = ctx.journal.state_of(node)
    migration = MIGRATIONS.get(node.partition(".")[0])
    if state is None or migration is None:
        return
    done_phase, data = state
    phases = migration.PHASES
    if done_phase not in phases or "copied" not in phases:
        return
    if phases.index(done_phase) >= phases.index("copied"):
        return
    made_in = [phases.index(migration.MADE_IN[k]) for k in undone if k in migration.MADE_IN]
    if not made_in or phases.index(done_phase) < min(made_in):
        return
    first = min(made_in)
    ctx.journal.advance(node, phases[first - 1] if first else "", data)


async def sweep(ctx: ApplyContext, keep: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """Before a walk: undo what earlier runs left, except for owners that will resume now."""
    swept = []
    for owner in sorted({str(r["owner"]) for r in ctx.journal.pending_temporaries()} - keep):
        try:
            swept.append(f"{owner}: {await clean_up(ctx, owner=owner)}")
        except WorkloadError as exc:
            if owner != TRANSFER_OWNER:
                raise
            # A session's key line or run directory on a pair that is still unreachable (it
            # went away in an earlier run): the line expires by itself, the rows stay pending
            # for the next sweep or ``tenantshift cleanup``, and the other pairs can work.
            swept.append(f"{owner}: left for later: {exc}")
    # A migration this plan does not run again (its copy was marked migrated just before a
    # kill, or it is no longer selected) keeps no state: ``status`` would list it unfinished
    # forever. Were it migrated again, its phases adopt the copies they find.
    for node in sorted(set(ctx.journal.node_states()) - keep):
        ctx.journal.clear_state(node)
        swept.append(f"{node}: not in this plan, its unfinished state is cleared")
    return tuple(swept)
