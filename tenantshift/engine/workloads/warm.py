"""Warm migration at plan time: which servers sync or cut over, and what the next apply does.

A warm server's migration is a ``migrate`` change like any other until its cutover; the plan
says which (``Change.warm``) and what to expect: a first sync (every byte), a delta sync (the
bytes changed since the last one, as far as the earlier syncs tell), or a cutover with its
estimated downtime. The figures come from the journal's ``syncs`` (``Journal.record_sync``,
written by ``server.py`` after each sync and cutover) and from the sync marks on the
destination volumes (``SYNC_KEY``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tenantshift.engine.state.journal import JOURNAL_FILE, Journal
from tenantshift.manifest import Manifest
from tenantshift.plans import Change
from tenantshift.resources import Snapshot
from tenantshift.resources.marker import make_marker, split_marker

MiB = 2**20
#: Phases of a cutover that do not move data, measured by the last sync (which has the same
#: ones but the stop and the boot).
FIXED_PHASES = ("source_disks", "destination_volumes", "attached", "source_restored")

Sync = dict[str, Any]


def sync_history(state_dir: Path) -> dict[str, list[Sync]]:
    """Node -> its recorded syncs and cutovers, oldest first (empty without a journal)."""
    path = state_dir / JOURNAL_FILE
    if not path.exists():
        return {}
    journal = Journal(path)
    try:
        history: dict[str, list[Sync]] = {}
        for row in journal.syncs():
            history.setdefault(str(row["node"]), []).append(row)
        return history
    finally:
        journal.close()


def synced_disks(change: Change, info: dict[str, Any], destination: Snapshot) -> list[Any]:
    """The destination volumes an earlier sync of this server made (by their markers)."""
    migration, _ = split_marker(str(change.source_id))
    markers = {
        make_marker(migration, str(v)) if migration else str(v) for v in info.get("volumes") or []
    }
    return [
        r for r in destination.of_kind("volume") if r.provenance in markers and r.info.get("synced")
    ]


def warm_names_unknown(manifest: Manifest, source: Snapshot) -> list[str]:
    """Plan warnings: server names in ``warm_servers`` or ``cutover`` that no source server has
    (a typo would otherwise leave a server syncing forever, or cold)."""
    workloads = manifest.workloads
    if workloads.mode == "cold":
        return []
    names = {str(r.params.get("name")) for r in source.of_kind("server")}
    warnings = []
    for field in ("warm_servers", "cutover"):
        value = getattr(workloads, field)
        unknown = sorted(set(value) - names) if isinstance(value, list) else []
        if unknown:
            warnings.append(
                f"workloads.{field} names {', '.join(unknown)}: no source server has that name"
            )
    return warnings


def describe(change: Change, synced: list[Any], history: list[Sync], now: float) -> str:
    """What the next apply of a warm server does, with the figures known so far."""
    syncs = [h for h in history if h.get("phase") == "sync"]
    last = syncs[-1] if syncs else None
    generation = max([int(str(r.info["synced"]).split(" ")[0]) for r in synced] or [0])
    if change.warm == "sync":
        if not synced:
            return "first sync: every allocated byte moves while the server runs"
        expected = _expected_change(syncs, now)
        guess = f"; about {expected / MiB:.0f} MiB changed" if expected is not None else ""
        ago = f", the last {_ago(now - float(last['finished']))} ago" if last else ""
        return (
            f"delta sync (generation {generation + 1}{ago}): reads every allocated byte at "
            f"the source, sends only changed chunks{guess}"
        )
    if not synced or last is None:
        return "cutover without an earlier sync: every byte moves while the server is stopped"
    return f"cutover after sync {generation}: {_downtime(syncs, now)}"


def _expected_change(syncs: list[Sync], now: float) -> float | None:
    """Bytes changed since the last sync, at the rate the last two syncs saw (None: unknown,
    fewer than two syncs)."""
    if len(syncs) < 2:
        return None
    previous, last = syncs[-2], syncs[-1]
    between = float(last["finished"]) - float(previous["finished"])
    if between <= 0:
        return None
    rate = int(last["data_bytes"]) / between
    return rate * max(0.0, now - float(last["finished"]))


def _downtime(syncs: list[Sync], now: float) -> str:
    """An estimate of a cutover's downtime: the fixed phases as the last sync took them, plus
    a final delta that reads what the last sync read and sends what changed since."""
    last = syncs[-1]
    first = syncs[0]
    fixed = sum(float(last.get("timings", {}).get(p, 0.0)) for p in FIXED_PHASES)
    wire_rate = int(first["wire_bytes"]) / max(float(first["copy_seconds"]), 0.001)
    expected = _expected_change(syncs, now)
    copy = float(last["copy_seconds"])
    if expected is not None and wire_rate > 0:
        copy += max(0.0, expected - int(last["data_bytes"])) / wire_rate
    change = (
        f"about {expected / MiB:.0f} MiB changed since the last sync"
        if expected is not None
        else "changes since the last sync not known yet (one sync)"
    )
    return (
        f"estimated downtime {fixed + copy:.0f} s plus the stop and the boot (final delta "
        f"{copy:.0f} s: {change}, the last sync read {int(last['read_bytes']) / MiB:.0f} MiB "
        f"in {float(last['copy_seconds']):.0f} s; fixed phases {fixed:.0f} s)"
    )


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
