"""An in-memory cloud: a fast test double for engine tests, never the proof a feature works.

It behaves like Neutron where the engine's logic depends on it: every project has a ``default``
security group with its default rules, a new group gets two egress rules, references must point
at existing resources, deleting a resource that others reference fails, duplicate rules conflict,
an interface a static route goes through cannot be removed.
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from tenantshift.providers.base import NotFoundError, ProviderError, find_in
from tenantshift.resources import REGISTRY, Record, Snapshot, normalize
from tenantshift.resources.snapshot import params_from_record

#: A hook that may raise to inject a fault: (operation, kind, params or changes).
FaultHook = Callable[[str, str, Mapping[str, Any]], None]


class MemoryProvider:
    def __init__(
        self,
        label: str = "memory",
        *,
        external_networks: tuple[str, ...] = ("public",),
        fault: FaultHook | None = None,
    ) -> None:
        self.label = label
        self.fault = fault
        self.external_networks = external_networks
        self.calls: list[tuple[str, str]] = []
        self._records: dict[str, dict[str, Record]] = {k.name: {} for k in REGISTRY}
        self._lock = threading.RLock()
        self._clock = itertools.count(1)
        default = self._insert("security_group", {"name": "default", "description": "Default"})
        for ethertype in ("IPv4", "IPv6"):
            self._insert(
                "security_group_rule",
                {
                    "security_group": default["id"],
                    "direction": "ingress",
                    "ethertype": ethertype,
                    "remote_group": default["id"],
                },
            )
        self._add_egress_rules(default["id"])

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
            if kind == "security_group" and params.get("name") == "default":
                raise ProviderError("a project has exactly one 'default' group", call="create")
            if kind in ("security_group_rule", "router_interface"):
                same = find_in(self._records[kind].values(), kind, None, params)
                if same is not None:
                    raise ProviderError(f"409 Conflict: {kind} already exists", call="create")
            ext = params.get("external_network")
            if kind == "router" and ext and ext not in self.external_networks:
                raise NotFoundError(f"external network {ext!r} not found", call="create")
            marker = source_id if REGISTRY[kind].provenance else None
            record = self._insert(kind, dict(params), provenance=marker)
            if kind == "security_group":
                self._add_egress_rules(record["id"])
            return copy.deepcopy(record)

    def update(self, kind: str, id: str, changes: Mapping[str, Any]) -> Record:
        self._maybe_fail("update", kind, changes)
        with self._lock:
            self.calls.append(("update", kind))
            record = self._records[kind].get(id)
            if record is None:
                raise NotFoundError(f"{kind} {id} not found", call="update")
            self._check_refs(kind, changes)
            record.update(copy.deepcopy(dict(changes)))
            record["revision_number"] = record.get("revision_number", 0) + 1
            return copy.deepcopy(record)

    def delete(self, kind: str, id: str) -> None:
        self._maybe_fail("delete", kind, {"id": id})
        with self._lock:
            self.calls.append(("delete", kind))
            if id not in self._records[kind]:
                return
            if kind == "router_interface":
                self._check_no_route_needs(self._records[kind][id])
            for other in REGISTRY:
                for field in other.refs:
                    if field.ref != kind:
                        continue
                    for rec in self._records[other.name].values():
                        if rec.get(field.name) == id and not (
                            other.owner == field.name and other.name == "security_group_rule"
                        ):
                            raise ProviderError(
                                f"409 Conflict: {kind} {id} is in use by {other.name} {rec['id']}",
                                call="delete",
                            )
            if kind == "security_group":  # Neutron deletes a group's rules with it
                rules = self._records["security_group_rule"]
                for rule_id in [r for r, rec in rules.items() if rec["security_group"] == id]:
                    del rules[rule_id]
            del self._records[kind][id]

    # -- internals -------------------------------------------------------------------------
    def _insert(self, kind: str, params: dict[str, Any], provenance: str | None = None) -> Record:
        record = params_from_record(REGISTRY[kind], params)
        record.update(
            id=str(uuid.uuid4()),
            provenance=provenance,
            created_at=f"t{next(self._clock):08d}",
            revision_number=1,
        )
        self._records[kind][record["id"]] = record
        return record

    def _add_egress_rules(self, group_id: str) -> None:
        for ethertype in ("IPv4", "IPv6"):
            self._insert(
                "security_group_rule",
                {"security_group": group_id, "direction": "egress", "ethertype": ethertype},
            )

    def _check_no_route_needs(self, interface: Record) -> None:
        """Neutron keeps an interface while a static route's nexthop lies in its subnet."""
        subnet = self._records["subnet"].get(interface["subnet"])
        router = self._records["router"].get(interface["router"])
        if subnet is None or router is None or not subnet.get("cidr"):
            return
        cidr = ipaddress.ip_network(subnet["cidr"], strict=False)
        for route in router.get("routes") or []:
            if ipaddress.ip_address(route["nexthop"]) in cidr:
                raise ProviderError(
                    f"409 Conflict: router interface for subnet {subnet['id']} on router "
                    f"{router['id']} cannot be deleted, as it is required by one or more routes",
                    call="delete",
                )

    def _check_refs(self, kind: str, params: Mapping[str, Any]) -> None:
        for field in REGISTRY[kind].refs:
            target = params.get(field.name)
            if target is not None and target not in self._records[str(field.ref)]:
                raise NotFoundError(
                    f"{kind}.{field.name}: {field.ref} {target} does not exist", call="create"
                )

    def _maybe_fail(self, operation: str, kind: str, params: Mapping[str, Any]) -> None:
        if self.fault is not None:
            self.fault(operation, kind, params)
