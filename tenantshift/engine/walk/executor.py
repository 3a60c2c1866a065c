"""What one resource node does. Every step re-reads before acting and does nothing when the
destination already matches, so running a node twice is harmless (resume relies on it)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from tenantshift.engine.state.journal import Journal
from tenantshift.engine.walk.graph import Node, Step
from tenantshift.errors import TenantshiftError
from tenantshift.plans import Action, Change, Plan
from tenantshift.providers import Provider, ProviderError
from tenantshift.resources import REGISTRY, Record
from tenantshift.resources.snapshot import params_from_record


class BlockedError(TenantshiftError):
    pass


class IdMap:
    """Desired address -> destination id; seeded from the plan, filled in as nodes create."""

    def __init__(self, plan: Plan | None = None) -> None:
        changes = plan.changes if plan is not None else []
        self._ids = {c.address: c.target_id for c in changes if c.target_id}
        self._lock = threading.Lock()

    def get(self, address: str) -> str:
        with self._lock:
            if address not in self._ids:
                raise ProviderError(f"{address} has no destination id (it was not created)")
            return str(self._ids[address])

    def set(self, address: str, id: str) -> None:
        with self._lock:
            self._ids[address] = id

    def owner_of(self, id: str) -> str | None:
        """The address the plan (or this run) gave the destination resource ``id``."""
        with self._lock:
            return next((a for a, known in self._ids.items() if known == id), None)


class ResourceExecutor:
    """``started``: the nodes earlier runs of the journal began, given when the plan is fresh
    (made or checked under the apply lock); a create outside it sends its request without
    looking for an earlier copy first. None: every create looks first."""

    def __init__(
        self,
        provider: Provider,
        journal: Journal,
        ids: IdMap,
        *,
        started: set[str] | None = None,
    ) -> None:
        self.provider = provider
        self.journal = journal
        self.ids = ids
        self.started = started

    def run(self, node: Node) -> str:
        change = node.change
        if change.blocked:
            raise BlockedError(f"blocked: {change.detail}")
        self.journal.record(node.id, node.step.value, "begin", target_id=change.target_id)
        try:
            message = {
                Step.CREATE: self._create,
                Step.UPDATE: self._update,
                Step.DESTROY: self._destroy,
                Step.LATE: self._late,
                Step.UNLATE: self._unlate,
            }[node.step](change)
        except Exception as exc:
            self.journal.record(node.id, node.step.value, "failed", detail=str(exc))
            raise
        self.journal.record(
            node.id, node.step.value, "done", target_id=self._known_id(change), detail=message
        )
        return message

    # -- steps -----------------------------------------------------------------------------
    def _create(self, change: Change) -> str:
        kind = REGISTRY[change.kind]
        params = self._resolve(change.kind, change.after or {})
        early = self._fields(change, late=False)
        found = (
            self.provider.find(change.kind, change.source_id, params)
            if self._look_first(change)
            else None
        )
        if found is not None and self.ids.owner_of(str(found["id"])) not in (None, change.address):
            # Found by its key, but the plan gave it to another address (a same-named source's
            # copy, adopted by that address): never two owners, whatever ran first. A kill
            # between the create and the marker of one of them must not let the other stamp
            # it too (two markers on one resource). This one gets its own.
            found = None
        if found is not None:
            # An interrupted run created it: adopt and bring it to the desired state, unless it
            # differs where no update can reach (someone else's, made since the plan).
            have = params_from_record(kind, found)
            fixed = sorted(
                k
                for k, v in early.items()
                if kind.field(k).replace and kind.field(k).differs(have.get(k), v)
            )
            if fixed:
                raise ProviderError(
                    f"{change.address}: {found['id']} exists in the destination with another "
                    f"{', '.join(fixed)} (it cannot be changed in place); run plan again"
                )
            self.ids.set(change.address, str(found["id"]))
            drift = self._drift(change.kind, found, early, include_marker=change.source_id)
            if drift:
                self.provider.update(change.kind, str(found["id"]), drift)
                return f"adopted {found['id']} and updated {', '.join(sorted(drift))}"
            return f"already there as {found['id']}"
        record = self.provider.create(change.kind, early, change.source_id)
        self.ids.set(change.address, str(record["id"]))
        return f"created {record['id']}"

    def _look_first(self, change: Change) -> bool:
        """Whether a create must look for an earlier copy before it sends its request.

        Only a run of this journal can have made a copy the fresh plan did not see (the apply
        lock keeps other applies of the project out): a create no run started looks for
        nothing, and costs one request instead of three (two server-side filtered listings,
        by marker then by key, before the POST). A create a killed run began, or any create
        of a plan not known to be fresh, still looks first. A response lost on the way back
        is the ``Caller``'s ``recover``, which looks in any case.
        """
        return self.started is None or change.address in self.started

    def _update(self, change: Change) -> str:
        kind = REGISTRY[change.kind]
        current = self._current(change)
        early = self._fields(change, late=False)
        # The built-in ``default`` group belongs to the project, never to a source: no marker
        # (the diff never adopts it either).
        name = kind.name_field
        builtin = name is not None and (change.after or {}).get(name.name) in kind.builtin_names
        marker = change.source_id if kind.provenance and not builtin else None
        drift = self._drift(change.kind, current, early, include_marker=marker)
        if not drift:
            return "already up to date"
        self.provider.update(change.kind, str(current["id"]), drift)
        return f"updated {', '.join(sorted(drift))}"

    def _late(self, change: Change) -> str:
        current = self.provider.get(change.kind, self.ids.get(change.address))
        if current is None:
            raise ProviderError(f"{change.address} vanished before its late fields were set")
        late = self._fields(change, late=True)
        drift = self._drift(change.kind, current, late, include_marker=None)
        if not drift:
            return "late fields already set"
        self.provider.update(change.kind, str(current["id"]), drift)
        return f"set {', '.join(sorted(drift))}"

    def _unlate(self, change: Change) -> str:
        """Before what references it is destroyed: keep only the late values that stay (the
        routes also in the desired state; none when the resource itself goes)."""
        kind = REGISTRY[change.kind]
        if change.target_id is None:
            return "nothing to clear"
        current = self.provider.get(change.kind, change.target_id)
        if current is None:
            return "already gone"
        have = params_from_record(kind, current)
        after = {} if change.action is Action.DELETE else (change.after or {})
        shed: dict[str, Any] = {}
        for f in (f for f in kind.fields if f.late):
            value, wanted = have.get(f.name), after.get(f.name, f.default)
            if isinstance(value, list):
                staying = [v for v in value if v in (wanted or [])]
            else:
                staying = value if value == wanted else f.default
            if staying != value:
                shed[f.name] = staying
        if not shed:
            return "late fields already clear"
        self.provider.update(change.kind, change.target_id, shed)
        return f"cleared {', '.join(sorted(shed))} ahead of removals"

    def _destroy(self, change: Change) -> str:
        target = change.target_id
        if target is None:
            # A child the cloud made with a parent created in this run: look it up now.
            params = self._resolve(change.kind, change.before or {})
            found = self.provider.find(change.kind, None, params)
            if found is None:
                return "already gone"
            target = str(found["id"])
        elif self.provider.get(change.kind, target) is None:
            return "already gone"
        self.provider.delete(change.kind, target)
        return f"deleted {target}"

    # -- helpers ---------------------------------------------------------------------------
    def _fields(self, change: Change, *, late: bool) -> dict[str, Any]:
        """The desired params, resolved to destination ids: the late ones or all the others."""
        kind = REGISTRY[change.kind]
        params = self._resolve(change.kind, change.after or {})
        return {k: v for k, v in params.items() if kind.field(k).late is late}

    def _current(self, change: Change) -> Record:
        if change.target_id is None:
            raise ProviderError(f"{change.address}: nothing to update in the destination")
        current = self.provider.get(change.kind, change.target_id)
        if current is None:
            raise ProviderError(
                f"{change.address} ({change.target_id}) disappeared from the destination "
                "since the plan; run plan again"
            )
        return current

    def _resolve(self, kind_name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Desired params with references turned into destination ids."""
        return REGISTRY[kind_name].map_references(params, self.ids.get)

    def _drift(
        self,
        kind_name: str,
        current: Record,
        wanted: Mapping[str, Any],
        *,
        include_marker: str | None,
    ) -> dict[str, Any]:
        kind = REGISTRY[kind_name]
        have = params_from_record(kind, current)
        # Immutable fields are never sent: a difference there is a replacement, which the plan
        # shows, not something to sneak into an update.
        drift = {
            k: v
            for k, v in wanted.items()
            if kind.field(k).differs(have.get(k), v) and not kind.field(k).replace
        }
        if (
            include_marker is not None
            and kind.provenance
            and current.get("provenance") != (include_marker)
        ):
            drift["provenance"] = include_marker
        return drift

    def _known_id(self, change: Change) -> str | None:
        if change.action is Action.DELETE:
            return change.target_id
        try:
            return self.ids.get(change.address)
        except ProviderError:
            return change.target_id
