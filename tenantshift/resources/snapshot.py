"""Snapshots: the normalized, deterministic state of one project, keyed by address."""

from __future__ import annotations

import copy
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from tenantshift.canonical import canonical_json
from tenantshift.resources.base import (
    REGISTRY,
    Kind,
    Record,
    Resource,
    key_of,
    make_address,
    sort_unordered,
)

#: info keys that change without the resource changing; they stay out of fingerprints.
VOLATILE_INFO = frozenset({"status", "updated_at", "revision_number", "created_at"})


class Snapshot(BaseModel):
    """State of one project. ``externals`` lists names visible but not owned (external networks)."""

    model_config = ConfigDict(frozen=True)

    cloud: str
    project: str | None = None
    resources: dict[str, Resource] = {}
    externals: dict[str, list[str]] = {}
    #: How many more of each kind the project's quota allows (absent: unknown or unlimited).
    quota_left: dict[str, int] = {}
    warnings: list[str] = []
    api_calls: int = 0

    def of_kind(self, kind: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.kind == kind]

    def resource_digests(self) -> dict[str, str]:
        """A short digest per address: what a stale-plan check compares."""
        out = {}
        for address, res in self.resources.items():
            info = {k: v for k, v in res.info.items() if k not in VOLATILE_INFO}
            body = canonical_json({"params": res.params, "info": info})
            out[address] = hashlib.sha256(body.encode()).hexdigest()[:16]
        return out

    def fingerprint(self, digests: Mapping[str, str] | None = None) -> str:
        """``digests``: this snapshot's ``resource_digests()`` when the caller has them (a plan
        needs both, and they cost a canonical JSON dump and a hash per resource)."""
        if digests is None:
            digests = self.resource_digests()
        body = canonical_json({"resources": dict(digests), "externals": self.externals})
        return hashlib.sha256(body.encode()).hexdigest()


@dataclass
class Entry:
    """A resource before it has an address: references hold *tokens* (cloud ids, or addresses)."""

    kind: str
    token: str
    params: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    #: Orders resources that end up with the same key, so disambiguation is deterministic.
    order: tuple[str, ...] = ()


def assemble(entries: Iterable[Entry]) -> tuple[dict[str, Resource], list[str]]:
    """Give every entry its address, kind by kind, rewriting reference tokens into addresses.

    An entry whose reference cannot be resolved (it points outside the project, or at something
    dropped) is left out with a warning, and so are, transitively, the entries that reference it.
    Two resources with the same key (clouds allow duplicate names) are told apart by ``~2``,
    ``~3``... in creation order, and a warning says so.
    """
    by_kind: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_kind[entry.kind].append(entry)
    address_of: dict[str, str] = {}
    resources: dict[str, Resource] = {}
    warnings: list[str] = []

    for kind in REGISTRY:
        keyed: dict[str, list[tuple[Entry, dict[str, Any]]]] = defaultdict(list)
        for entry in by_kind.get(kind.name, []):
            # One missing element of a list reference is enough: a port without one of its
            # subnets is not that port.
            missing = [
                (f.name, token)
                for f, token in kind.references(entry.params)
                if token not in address_of
            ]
            if missing:
                refs = ", ".join(f"{name}={token}" for name, token in missing)
                warnings.append(f"{kind.name} {entry.token}: left out, references outside: {refs}")
                continue
            params = kind.map_references(entry.params, address_of.__getitem__)
            keyed[kind.key(params, key_of)].append((entry, params))
        for key, group in sorted(keyed.items()):
            group.sort(key=lambda item: (item[0].order, item[0].token))
            if len(group) > 1:
                warnings.append(duplicate_warning(kind.name, key, len(group)))
            for index, (entry, params) in enumerate(group):
                final_key = key if index == 0 else f"{key}~{index + 1}"
                address = make_address(kind.name, final_key)
                address_of[entry.token] = address
                resources[address] = Resource(
                    kind=kind.name, key=final_key, params=params, info=entry.info
                )
    return dict(sorted(resources.items())), warnings


def duplicate_warning(kind: str, key: str, count: int) -> str:
    return (
        f"{count} {kind} resources share the key {key!r}; "
        f"told apart as {key}, {key}~2, ... in creation order"
    )


def duplicate_groups(snapshot: Snapshot) -> dict[str, list[str]]:
    """Each duplicate-key warning ``assemble`` gave ``snapshot``, with the addresses it is
    about (``x``, ``x~2``...): what a plan needs to keep only the warnings that concern the
    resources it migrates."""
    groups: dict[str, list[str]] = defaultdict(list)
    for address, res in snapshot.resources.items():
        base, sep, index = res.key.rpartition("~")
        if sep and index.isdigit() and int(index) >= 2:
            base_address = make_address(res.kind, base)
            if base_address in snapshot.resources:
                groups[base_address].append(address)
    out = {}
    for base_address, others in groups.items():
        first = snapshot.resources[base_address]
        out[duplicate_warning(first.kind, first.key, 1 + len(others))] = [base_address, *others]
    return out


def params_from_record(kind: Kind, record: Mapping[str, Any]) -> dict[str, Any]:
    """Declared fields only, defaults made explicit, unordered lists sorted, canonical form."""
    params: dict[str, Any] = {}
    for f in kind.fields:
        value = record.get(f.name)
        if value is None:
            value = copy.deepcopy(f.default)
        params[f.name] = sort_unordered(value) if f.unordered else value
    return kind.canonical(params) if kind.canonical else params


def normalize(
    cloud: str,
    records: Mapping[str, list[Record]],
    *,
    project: str | None = None,
    externals: Mapping[str, list[str]] | None = None,
    quota_left: Mapping[str, int] | None = None,
    api_calls: int = 0,
) -> Snapshot:
    """A provider's raw records (references as ids) -> a snapshot (references as addresses)."""
    entries = []
    for kind_name, kind_records in records.items():
        kind = REGISTRY[kind_name]
        for record in kind_records:
            info = {k: v for k, v in record.items() if k not in kind.field_names}
            entries.append(
                Entry(
                    kind=kind_name,
                    token=str(record["id"]),
                    params=params_from_record(kind, record),
                    info=info,
                    order=(str(record.get("created_at") or ""),),
                )
            )
    resources, warnings = assemble(entries)
    return Snapshot(
        cloud=cloud,
        project=project,
        resources=resources,
        externals={k: sorted(v) for k, v in sorted((externals or {}).items())},
        quota_left=dict(quota_left or {}),
        warnings=warnings,
        api_calls=api_calls,
    )
