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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from tenantshift import faults
from tenantshift.providers.base import (
    MARKERS_KEY,
    NotFoundError,
    ProviderError,
    find_in,
    id_key,
)
from tenantshift.providers.memory_kinds import behaviour
from tenantshift.providers.memory_workloads import MemoryData, memory_workloads
from tenantshift.providers.workload import WorkloadVerbs
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
        self._claims: dict[tuple[str, str], threading.RLock] = {}
        self._clock = itertools.count(1)
        #: Bytes, attachments' devices, snapshots and flavors (``memory_workloads``).
        self.data = MemoryData()
        #: What ``WorkloadVerbs.headroom`` answers (empty: every quota unknown).
        self.headroom_left: dict[str, int] = {}
        self.workloads: WorkloadVerbs | None = memory_workloads(self)
        for kind in REGISTRY:
            behaviour(kind.name).seed(self)

    # -- reading ---------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        with self.call("snapshot", "*", {}):
            records = {
                kind: [copy.deepcopy(r) for r in recs.values()]
                for kind, recs in self._records.items()
            }
        return normalize(
            self.label,
            records,
            externals={
                "external_network": list(self.external_networks),
                "flavor": list(self.data.flavors),
            },
            api_calls=len(records),
        )

    def get(self, kind: str, id: str) -> Record | None:
        with self.call("get", kind, {}):
            record = self._records[kind].get(id)
            return copy.deepcopy(record) if record else None

    def find(self, kind: str, source_id: str | None, params: Mapping[str, Any]) -> Record | None:
        with self._claim(kind, params), self.call("find", kind, params):
            found = find_in(self._records[kind].values(), kind, source_id, params)
            return copy.deepcopy(found) if found else None

    def count(self, kind: str) -> int:
        return len(self._records[kind])

    # -- writing ---------------------------------------------------------------------------
    def create(self, kind: str, params: Mapping[str, Any], source_id: str | None) -> Record:
        rules = behaviour(kind)
        marker = source_id if REGISTRY[kind].provenance else None
        # What the real API sets by calls of their own after the POST (Cinder's bootable flag
        # and image metadata; Neutron's tags where the POST cannot carry them): so here, and a
        # kill between them leaves what it leaves in a real cloud.
        late = {k: params[k] for k in rules.set_after_create if k in params}
        stamp_later = rules.marker_after_create and marker is not None
        # Held from the POST to the stamp, like the OpenStack provider's per-key claim: another
        # worker's ``find`` of the same key cannot see the resource unmarked within this run.
        with self._claim(kind, params):
            with self.call("create", kind, params):
                self._check_refs(kind, params)
                rules.check_create(self, params)
                first = {k: v for k, v in params.items() if k not in late}
                record = self.insert(kind, first, provenance=None if stamp_later else marker)
                rules.after_create(self, record)
                made = copy.deepcopy(record)
            if late:
                made = self.update(kind, made["id"], late)
            if stamp_later:
                made = self.update(kind, made["id"], {"provenance": marker})
            return made

    def update(self, kind: str, id: str, changes: Mapping[str, Any]) -> Record:
        with self.call("update", kind, changes):
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
        with self.call("delete", kind, {"id": id}):
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

    @contextmanager
    def call(self, operation: str, kind: str, params: Mapping[str, Any]) -> Iterator[None]:
        """One cloud call: a fault point (``faults``), counted, under the cloud's lock."""
        with faults.cloud_call(f"{self.label} {operation} {kind}"):
            self._maybe_fail(operation, kind, params)
            with self._lock:
                self.calls.append((operation, kind))
                yield

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
    @contextmanager
    def _claim(self, kind: str, params: Mapping[str, Any]) -> Iterator[None]:
        """A re-entrant lock per (kind, key): create-and-stamp is atomic to ``find``."""
        try:
            key = (kind, id_key(kind, params_from_record(REGISTRY[kind], params)))
        except (KeyError, TypeError):
            yield  # params without their key: nothing to guard
            return
        with self._lock:
            lock = self._claims.setdefault(key, threading.RLock())
        with lock:
            yield

    def _check_refs(self, kind: str, params: Mapping[str, Any]) -> None:
        for field, target in REGISTRY[kind].references(params):
            if target not in self._records[str(field.ref)]:
                raise NotFoundError(
                    f"{kind}.{field.name}: {field.ref} {target} does not exist", call="create"
                )

    def _maybe_fail(self, operation: str, kind: str, params: Mapping[str, Any]) -> None:
        if self.fault is not None:
            self.fault(operation, kind, params)
