"""The provenance marker: which source resource a destination copy was made from, and by which
migration.

A marker is ``<migration id>:<source id>``. The migration id is derived from the source project
(its id, or the source's label when the snapshot has none), so two migrations into one
destination project (two teams, two source projects consolidated) tell their copies apart and
``prune`` deletes only its own. Markers stamped before migration ids existed are the bare source
id ("legacy"): they still match their source, but nothing says which migration made them.

Neutron stores the marker as the tag ``tenantshift-src:<marker>``, and a tag is at most 60
characters: 16 for the prefix, 36 for a UUID, which leaves 8 here for the id and its colon.
"""

from __future__ import annotations

import base64
import hashlib
import re

from tenantshift.resources.snapshot import Snapshot

#: Base32 characters of the migration id: 35 bits tell apart the few migrations that share
#: a destination project; the id is not a secret (anyone who can tag can forge a marker).
MIGRATION_ID_LEN = 7

_MARKER_RE = re.compile(rf"^([a-z2-7]{{{MIGRATION_ID_LEN}}}):(.+)$")


def migration_id(source: Snapshot) -> str:
    """This migration's id: the same for every plan of one source project."""
    identity = source.project or source.cloud
    digest = hashlib.sha256(f"tenantshift-migration\0{identity}".encode()).digest()
    return base64.b32encode(digest).decode().lower()[:MIGRATION_ID_LEN]


def make_marker(migration: str, source_id: str) -> str:
    return f"{migration}:{source_id}"


def split_marker(marker: str) -> tuple[str | None, str]:
    """(migration id, source id); the migration id is None for a legacy marker."""
    found = _MARKER_RE.match(marker)
    if found is None:
        return None, marker
    return found.group(1), found.group(2)


def same_source(have: str | None, want: str | None) -> bool:
    """Whether the marker ``have`` on a destination resource names the source of ``want``: the
    same marker, or a legacy one with the same source id (copies made before migration ids)."""
    if have is None or want is None:
        return False
    if have == want:
        return True
    have_migration, have_source = split_marker(have)
    return have_migration is None and have_source == split_marker(want)[1]


def is_ours(marker: str | None, migration: str | None) -> bool:
    """Whether a resource carrying ``marker`` was made by ``migration``, so that it may be
    destroyed when nothing desired wants it. A legacy marker is nobody's for certain: False.
    ``migration`` None means "no migration identity known": any marker counts (old behaviour)."""
    if marker is None:
        return False
    if migration is None:
        return True
    return split_marker(marker)[0] == migration
