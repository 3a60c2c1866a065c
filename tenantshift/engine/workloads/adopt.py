"""Adoption checks what it adopts: a copy a resumed phase finds by its marker is compared with
what the phase would have made, completed where it can be, replaced where it cannot.

A run killed between two calls of one step leaves something half-made: a volume created but
not yet made bootable (Cinder takes the flag by an action after the create), a volume still
``creating``, one in ``error``. Using it as found fails later, and forever (Nova refuses to
boot from a volume that is not bootable); so nothing found is used as it is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from tenantshift.engine.workloads.registry import WorkloadError

if TYPE_CHECKING:
    from tenantshift.engine.workloads.base import Migration

log = logging.getLogger(__name__)

#: Statuses a volume passes through on its own; anything else that is not usable is replaced.
TRANSITIONAL = frozenset({"creating", "downloading", "extending", "attaching", "detaching"})
#: How long a found volume may take to leave a transitional status.
SETTLE_SECONDS = 900.0

#: Fields set by calls after the create: completed in place when they differ.
COMPLETABLE = ("is_bootable", "image_metadata", "metadata", "description", "name")


def _differs(params: dict[str, Any], found: dict[str, Any], field: str) -> bool:
    wanted = params.get(field)
    have = found.get(field)
    if field in ("image_metadata", "metadata"):
        return dict(wanted or {}) != dict(have or {})
    if field == "is_bootable":
        return bool(wanted) != bool(have)
    if field == "description":
        return (wanted or "") != (have or "")
    return wanted != have


async def destination_volume(
    migration: Migration, params: dict[str, Any], marker: str, dst_host: str
) -> str:
    """The id of the destination volume with ``params`` and our ``marker``: found and checked,
    completed, or (when it cannot be what the phase would make) deleted and made again."""
    destination = migration.ctx.destination
    found = await migration.block(destination.find, "volume", marker, params)
    if found is not None:
        found = await _settled(migration, str(found["id"]))
    if found is not None:
        why = _unusable(params, found, dst_host)
        if why is not None:
            migration.step(f"replacing the copy {found['id']}: {why}")
            log.warning("%s: replacing %s: %s", migration.change.address, found["id"], why)
            await _detach_ours(migration, found, dst_host)
            await migration.block(migration.dst.volume.delete, str(found["id"]))
            found = None
    if found is None:
        made = await migration.block(destination.create, "volume", params, marker)
        return str(made["id"])
    fix = {f: params.get(f) for f in COMPLETABLE if f in params and _differs(params, found, f)}
    if fix:
        migration.step(f"completing the copy {found['id']} ({', '.join(sorted(fix))})")
        await migration.block(destination.update, "volume", str(found["id"]), fix)
    return str(found["id"])


async def _settled(migration: Migration, volume_id: str) -> dict[str, Any] | None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        found = await migration.block(migration.dst.volume.get, volume_id)
        if found is None or found.get("status") not in TRANSITIONAL:
            return found
        if time.monotonic() > deadline:
            raise WorkloadError(
                f"destination volume {volume_id} is still {found['status']} after "
                f"{SETTLE_SECONDS:g}s"
            )
        await asyncio.sleep(2)


def _unusable(params: dict[str, Any], found: dict[str, Any], dst_host: str) -> str | None:
    """Why a found copy cannot become what the phase makes (None: it can, maybe completed)."""
    status = found.get("status")
    if status not in ("available", "in-use"):
        return f"it is {status}"
    others = set(found.get("attached_to") or []) - {dst_host}
    if others:
        return f"it is attached to {', '.join(sorted(others))}"
    if params.get("size") is not None and found.get("size") != params["size"]:
        return f"it has {found.get('size')} GiB, not {params['size']}"
    wanted_type = params.get("volume_type")
    if wanted_type is not None and found.get("volume_type") not in (None, wanted_type):
        return f"its type is {found.get('volume_type')}, not {wanted_type}"
    return None


async def _detach_ours(migration: Migration, found: dict[str, Any], dst_host: str) -> None:
    if dst_host in (found.get("attached_to") or []):
        await migration.block(migration.dst.volume.detach, dst_host, str(found["id"]))
