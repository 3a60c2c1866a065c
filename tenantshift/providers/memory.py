"""An in-memory cloud: a fast test double for engine tests, never the proof a feature works.

It behaves like Neutron where the engine's logic depends on it: every project has a ``default``
security group with its default rules, a new group gets two egress rules, references must point
at existing resources, deleting a resource that others reference fails, duplicate rules conflict,
an interface a static route goes through cannot be removed.
"""

from __future__ import annotations

import copy
import itertools
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from tenantshift.providers.base import MARKERS_KEY, NotFoundError, ProviderError, find_in
from tenantshift.providers.memory_kinds import behaviour
from tenantshift.resources import REGISTRY, Record, Snapshot, normalize
from tenantshift.resources.snapshot import params_from_record

#: A hook that may raise to inject a fault: (operation, kind, params or changes).
FaultHook = Callable[[str, str, Mapping[str, Any]], None]


class MemoryProvider:
    """The shared rules live here; each kind's own rules in ``memory_kinds``."""

    def __init__(
        self,
        label: str = "memory",
        *,
        external_networks: tuple[str, ...] = ("public",),
        fault: FaultHook | None = None,
        identity: str | None = None,
    ) -> None:
        self.label = label
        #: The project this double plays, for the per-destination apply lock (None: no lock).
        self.identity = identity
        self.fault = fault
        self.external_networks = external_networks
        self.calls: list[tuple[str, str]] = []
        self._records: dict[str, dict[str, Record]] = {k.name: {} for k in REGISTRY}
        self._lock = threading.RLock()
        self._clock = itertools.count(1)
        for kind in REGISTRY:
            behaviour(kind.name).seed(self)

    # -- reading ---------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        with self._lock:
            self.calls.append(("snapshot", "*"))
            records = {
                kind: [copy.deepcopy(r) for r in recs.values()]
                for kind, recs in self._records.items()
            }
        return normalize(
            self.label,
            records,
            externals={"external_network": list(self.external_networks)},
            api_calls=len(records),
        )

    def get(self, kind: str, id: str) -> Record | None:
        with self._lock:
            self.calls.append(("get", kind))
            record = self._records[kind].get(id)
            return copy.deepcopy(record) if record else None

    def find(self, kind: str, source_id: str | None, params: Mapping[str, Any]) -> Record | None:
        with self._lock:
            self.calls.append(("find", kind))
            found = find_in(self._records[kind].values(), kind, source_id, params)
            return copy.deepcopy(found) if found else None

    def count(self, kind: str) -> int:
        return len(self._records[kind])

    # -- writing ---------------------------------------------------------------------------
    def create(self, kind: str, params: Mapping[str, Any], source_id: str | None) -> Record:
        self._maybe_fail("create", kind, params)
        with self._lock:
            self.calls.append(("create", kind))
            self._check_refs(kind, params)
            rules = behaviour(kind)
            rules.check_create(self, params)
            # The marker goes in with the resource (like a port's tags in Neutron's POST): no
            # moment at which another source's ``find`` could see it unmarked.
            marker = source_id if REGISTRY[kind].provenance else None
            record = self.insert(kind, dict(params), provenance=marker)
            rules.after_create(self, record)
            return copy.deepcopy(record)

    def update(self, kind: str, id: str, changes: Mapping[str, Any]) -> Record:
        self._maybe_fail("update", kind, changes)
        with self._lock:
            self.calls.append(("update", kind))
            record = self._records[kind].get(id)
            if record is None:
                raise NotFoundError(f"{kind} {id} not found", call="update")
            self._check_refs(kind, changes)
            if "provenance" in changes:
                record.pop(MARKERS_KEY, None)  # re-stamping replaces every marker (as retag)
            record.update(copy.deepcopy(dict(changes)))
            record["revision_number"] = record.get("revision_number", 0) + 1
            return copy.deepcopy(record)

    def delete(self, kind: str, id: str) -> None:
        self._maybe_fail("delete", kind, {"id": id})
        with self._lock:
            self.calls.append(("delete", kind))
            record = self._records[kind].get(id)
            if record is None:
                return
            behaviour(kind).check_delete(self, record)
            for other in REGISTRY:
                if not any(f.ref == kind for f in other.refs):
                    continue
                for rec in self._records[other.name].values():
                    for field, target in other.references(rec):
                        if field.ref != kind or target != id:
                            continue
                        if behaviour(other.name).blocks_delete(field):
                            raise ProviderError(
                                f"409 Conflict: {kind} {id} is in use by {other.name} {rec['id']}",
                                call="delete",
                            )
            behaviour(kind).on_delete(self, record)
            del self._records[kind][id]

    # -- test helpers ----------------------------------------------------------------------
    def add_marker(self, kind: str, id: str, source_id: str) -> None:
        """Stamp one more marker, as a second, racing run (or a person) could with tags."""
        with self._lock:
            record = self._records[kind][id]
            markers = set(record.get(MARKERS_KEY) or ())
            if record.get("provenance") is not None:
                markers.add(record["provenance"])
            markers.add(source_id)
            record["provenance"] = min(markers)
            if len(markers) > 1:
                record[MARKERS_KEY] = sorted(markers)

    # -- the cloud behaviours see (``memory_kinds.MemoryCloud``) -----------------------------
    def records_of(self, kind: str) -> dict[str, Record]:
        return self._records[kind]

    def insert(self, kind: str, params: dict[str, Any], provenance: str | None = None) -> Record:
        record = params_from_record(REGISTRY[kind], params)
        record.update(
            id=str(uuid.uuid4()),
            provenance=provenance,
            created_at=f"t{next(self._clock):08d}",
            revision_number=1,
        )
        self._records[kind][record["id"]] = record
        return record

    # -- internals -------------------------------------------------------------------------
    def _check_refs(self, kind: str, params: Mapping[str, Any]) -> None:
        for field, target in REGISTRY[kind].references(params):
            if target not in self._records[str(field.ref)]:
                raise NotFoundError(
                    f"{kind}.{field.name}: {field.ref} {target} does not exist", call="create"
                )

    def _maybe_fail(self, operation: str, kind: str, params: Mapping[str, Any]) -> None:
        if self.fault is not None:
            self.fault(operation, kind, params)
