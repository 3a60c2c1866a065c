"""Undoing temporaries: what cleanup nodes, ``tenantshift cleanup`` and the pre-walk sweep do.

Rows are undone newest first, so an attachment to a conversion host goes before the temporary
volume it attached, and that before the snapshot it was made from; a data volume detached from
its server is re-attached last. Every undo is idempotent (detaching what is detached, deleting
what is gone are no-ops), so a sweep interrupted half-way is simply run again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tenantshift.engine.context import TRANSFER_OWNER, ApplyContext
from tenantshift.engine.workloads.base import WorkloadError, ops_of
from tenantshift.manifest import ConversionPair
from tenantshift.providers import ProviderError
from tenantshift.providers.volume_ops import VolumeOps
from tenantshift.transfer import TransferError, remove_run_dirs, sweep_leftover_keys

Row = dict[str, Any]


def _target(row: Row, find: Callable[[str], str | None]) -> str | None:
    """The temporary's id: recorded once created, else looked up by its (unique) name, for a
    crash between the create call and the journal write."""
    return str(row["resource_id"]) if row["resource_id"] else find(str(row["name"]))


def _pair_of(ctx: ApplyContext, row: Row) -> ConversionPair:
    """The pair a session temporary was made on (rows of one-pair runs name none)."""
    hosts = ctx.settings.conversion_hosts
    what = "a copy key" if row["kind"] == "copy_key" else "a run directory"
    if hosts is None:
        raise WorkloadError(f"{what} is left on a conversion host: conversion_hosts needed")
    name = (row.get("data") or {}).get("pair")
    try:
        return hosts.pair(str(name)) if name else hosts.only_pair()
    except (KeyError, ValueError) as exc:
        raise WorkloadError(f"{what} is left on conversion host pair {name!r}: {exc}") from None


async def _undo(ctx: ApplyContext, row: Row) -> None:
    if row["kind"] == "copy_key":
        pair = _pair_of(ctx, row)
        try:
            await sweep_leftover_keys(pair, [str(row["name"])], options=ctx.settings.transfer)
        except TransferError as exc:
            raise WorkloadError(f"copy key {row['name']} (pair {pair.name!r}): {exc}") from None
        return
    if row["kind"] == "run_dir":
        pair = _pair_of(ctx, row)
        try:
            await remove_run_dirs(
                pair, str(row["cloud"]), [str(row["name"])], options=ctx.settings.transfer
            )
        except TransferError as exc:
            raise WorkloadError(
                f"run directory {row['name']} (pair {pair.name!r}): {exc}"
            ) from None
        return
    ops: VolumeOps = ops_of(ctx, str(row["cloud"]))
    data = row["data"]
    kind = row["kind"]
    undo: Callable[[], Any]
    if kind == "attachment":
        undo = lambda: ops.detach(data["server_id"], data["volume_id"])  # noqa: E731
    elif kind == "detached":  # a data volume taken off its server: put it back where it was
        undo = lambda: ops.attach(data["server_id"], data["volume_id"], data.get("device"))  # noqa: E731
    elif kind == "stopped":  # a source server we stopped: it ends as it began, running
        undo = lambda: ops.start_server(data["server_id"])  # noqa: E731
    elif kind == "volume":

        def undo() -> None:
            target = _target(row, ops.find_volume)
            if target is not None:
                ops.delete_volume(target)

    elif kind == "snapshot":

        def undo() -> None:
            target = _target(row, ops.find_snapshot)
            if target is not None:
                ops.delete_snapshot(target)

    elif kind == "image":

        def undo() -> None:
            target = _target(row, ops.find_image)
            if target is not None:
                ops.delete_image(target)

    else:
        raise WorkloadError(f"unknown temporary kind {kind!r}")
    await ctx.run_blocking(undo)


async def clean_up(
    ctx: ApplyContext, *, owner: str | None, kinds: frozenset[str] | None = None
) -> str:
    """Undo the pending temporaries of ``owner`` (all owners when None; only ``kinds`` when
    given), newest first. Every one is tried; failures are raised together at the end."""
    rows = [
        row
        for row in ctx.journal.pending_temporaries(owner)
        if kinds is None or row["kind"] in kinds
    ]
    failures: list[str] = []
    for row in rows:
        try:
            await _undo(ctx, row)
        except (ProviderError, WorkloadError) as exc:
            failures.append(f"{row['kind']} {row['name']} ({row['cloud']}): {exc}")
            continue
        ctx.journal.temporary_cleaned(int(row["seq"]))
    if failures:
        raise WorkloadError("could not clean up: " + "; ".join(failures))
    return f"cleaned up {len(rows)} temporaries" if rows else "nothing to clean up"


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
    return tuple(swept)
