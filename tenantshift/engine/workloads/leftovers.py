"""Half-made copies: what a killed or abandoned workload migration left in the destination.

A destination volume, server or image carrying this migration's marker but not the
``tenantshift-migrated`` key was never verified: a migration in progress, or one that was
killed and abandoned. ``tenantshift status`` lists them; ``tenantshift cleanup`` removes them
(servers first, then the volumes they held, detached from the conversion hosts; images
unprotected and deleted), so that an abandoned migration leaves nothing behind and the next
apply starts it over. An apply never needs this: its phases check what they find and complete
or replace it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenantshift.providers import Provider
from tenantshift.resources import REGISTRY, Snapshot
from tenantshift.resources.marker import is_ours

#: Deleted in this order: a server holds its volumes.
ORDER = ("server", "volume", "image")


@dataclass(frozen=True)
class Leftover:
    kind: str
    id: str
    name: str
    #: Why it is not finished, for the user.
    state: str

    def line(self) -> str:
        return f"{self.kind} {self.name} ({self.id}): {self.state}"


def unfinished_copies(destination: Snapshot, migration: str) -> list[Leftover]:
    """Copies of ``migration`` in the destination that were never marked migrated."""
    found = []
    for resource in destination.resources.values():
        kind = REGISTRY[resource.kind]
        info = resource.info
        if not kind.workload or info.get("migrated") or info.get("temporary"):
            continue
        if info.get("synced"):
            continue  # a warm migration's synced copy, waiting for its cutover: progress
        if not is_ours(info.get("provenance"), migration):
            continue
        status = str(info.get("status") or "?")
        found.append(
            Leftover(resource.kind, str(resource.id), resource.key, f"{status}, not verified")
        )
    return sorted(found, key=lambda r: (ORDER.index(r.kind), r.name, r.id))


def remove_unfinished(destination: Provider, leftovers: list[Leftover]) -> list[str]:
    """Delete the half-made copies, servers first; returns a line per copy removed."""
    verbs = destination.workloads
    lines = []
    for leftover in leftovers:
        if leftover.kind == "volume" and verbs is not None:
            volume = verbs.volume.get(leftover.id)
            for server in (volume or {}).get("attached_to") or []:
                verbs.volume.detach(str(server), leftover.id)
        if leftover.kind == "image" and verbs is not None:
            verbs.image.discard(leftover.id)
        else:
            destination.delete(leftover.kind, leftover.id)
        lines.append(f"removed the unfinished copy {leftover.line()}")
    return lines
