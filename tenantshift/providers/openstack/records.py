"""What every kind's records share: the provenance marker's spelling, and small pure helpers.

The per-kind conversions (SDK resource -> record, record -> request body) live next to their
handlers in ``kinds/``; this module holds only what is the same for all of them, so it never
has to learn about a new kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tenantshift.providers.base import MARKERS_KEY

#: Our Neutron tag: ``tenantshift-src:<marker>``, the marker as tenantshift.resources.marker makes
#: it (older versions stamped the bare source id). The one place the prefix is spelled.
PROVENANCE_PREFIX = "tenantshift-src:"

#: The metadata key holding the source id where a kind keeps its marker in metadata.
METADATA_KEY = "tenantshift-src"


def provenance_tag(source_id: str) -> str:
    return f"{PROVENANCE_PREFIX}{source_id}"


def markers_in_tags(tags: Iterable[str] | None) -> list[str]:
    """Every source id stamped in a tag list, sorted."""
    prefix = PROVENANCE_PREFIX
    return sorted({t[len(prefix) :] for t in tags or () if t.startswith(prefix)})


def is_marker_tag(tag: str) -> bool:
    return tag.startswith(PROVENANCE_PREFIX)


def labels_in_tags(tags: Iterable[str] | None) -> list[str]:
    """The user's own tags, sorted: every tag but our markers (they are ``provenance``)."""
    return sorted({t for t in tags or () if not is_marker_tag(t)})


def with_marker(labels: Iterable[str], source_id: str | None) -> list[str]:
    """The whole tag list: the user's tags plus our marker (none for ``None``), sorted."""
    tags = set(labels_in_tags(labels))
    if source_id is not None:
        tags.add(provenance_tag(source_id))
    return sorted(tags)


def provenance_of(tags: Iterable[str] | None) -> str | None:
    """The source id stamped on a resource; the lowest one wins if somebody stamped several."""
    found = markers_in_tags(tags)
    return found[0] if found else None


def provenance_fields(markers: Iterable[str]) -> dict[str, Any]:
    """A record's ``provenance`` (and, when there are several, ``provenance_markers``)."""
    found = sorted(set(markers))
    out: dict[str, Any] = {"provenance": found[0] if found else None}
    if len(found) > 1:
        out[MARKERS_KEY] = found
    return out


def retag(tags: Iterable[str] | None, source_id: str | None) -> list[str]:
    """Tags with our marker replaced (or removed when ``source_id`` is None); others kept."""
    kept = [t for t in tags or () if not t.startswith(PROVENANCE_PREFIX)]
    if source_id is not None:
        kept.append(provenance_tag(source_id))
    return sorted(kept)


def pairs(items: Any, first: str, second: str) -> list[dict[str, Any]]:
    """``[{start, end}]``-style lists: only the two keys, sorted, never ``None``."""
    out = [{first: item.get(first), second: item.get(second)} for item in items or ()]
    return sorted(out, key=lambda d: (str(d[first]), str(d[second])))


def to_sdk(
    params: Mapping[str, Any],
    names: Mapping[str, str] | None = None,
    drop_none: frozenset[str] = frozenset(),
    skip: frozenset[str] = frozenset({"provenance", "id"}),
) -> dict[str, Any]:
    """Record fields -> keyword arguments of an SDK create/update call.

    ``names``: record field -> SDK attribute where they differ. ``drop_none``: fields where
    ``None`` means "let the cloud choose" and must not be sent as JSON null. ``skip``: fields the
    handler sends itself (the marker, lookups such as an external network's id).
    """
    names = names or {}
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in skip or (value is None and key in drop_none):
            continue
        out[names.get(key, key)] = value
    return out
