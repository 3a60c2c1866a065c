"""The diff: desired vs actual snapshots -> one ``Change`` per address.

Like alembic's autogenerate: match by key sets first, then compare field by field. Matching is by
provenance marker first (a resource we created remembers its source id), then by address; so a
renamed source resource is an update, never a second copy.

Given a ``migration`` id (``tenantshift.resources.marker``), the markers the plan stamps carry it,
and only resources carrying this migration's marker are pruned or destroyed in a cascade: another
migration into the same project keeps its copies. Legacy markers (a bare source id) still match
their source, but are never pruned: nothing says which migration made them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from tenantshift.plans.model import Action, Change, FieldChange, Reason
from tenantshift.resources import REGISTRY, Resource, Snapshot
from tenantshift.resources.base import Kind, key_of, make_address
from tenantshift.resources.marker import is_ours, make_marker, same_source, split_marker
from tenantshift.resources.snapshot import params_from_record


def diff(
    desired: Snapshot, actual: Snapshot, *, prune: bool = False, migration: str | None = None
) -> list[Change]:
    """Every address the plan knows, sorted; no-ops included so the plan can count them.

    ``migration`` None keeps markers as bare source ids and counts every marker as ours (the
    behaviour before migration ids; the diff fixtures use it)."""
    markers = Markers(desired, migration)
    matched = match(desired, actual, markers)
    translate = {have.address: want for want, have in matched.items()}
    changes: dict[str, Change] = {}

    for address, want in desired.resources.items():
        have = matched.get(address)
        changes[address] = _compare(want, have, translate, markers.of(want))

    _auto_children(desired, changes)
    _orphans(desired, actual, matched, translate, changes, markers, prune=prune)
    _cascade(actual, matched, translate, changes, markers)
    _block_missing_externals(actual, changes)
    _block_over_quota(actual, changes)
    return sorted(changes.values(), key=lambda c: c.address)


class Markers:
    """The markers of one plan: what each desired resource is stamped with, and which markers
    found in the destination name one of them."""

    def __init__(self, desired: Snapshot, migration: str | None) -> None:
        self.migration = migration
        self._of = {a: self._make(r.info.get("source_id")) for a, r in desired.resources.items()}
        self._wanted = {m for m in self._of.values() if m is not None}
        self._sources = {split_marker(m)[1] for m in self._wanted}

    def _make(self, source_id: Any) -> str | None:
        if source_id is None:
            return None
        return make_marker(self.migration, str(source_id)) if self.migration else str(source_id)

    def of(self, want: Resource) -> str | None:
        return self._of.get(want.address)

    def names_desired(self, marker: str | None) -> bool:
        """The marker names the source of a desired resource (a legacy one by its source id)."""
        if marker is None:
            return False
        if marker in self._wanted:
            return True
        migration, source_id = split_marker(marker)
        return migration is None and source_id in self._sources

    def ours(self, marker: str | None) -> bool:
        return is_ours(marker, self.migration)


def match(
    desired: Snapshot, actual: Snapshot, markers: Markers | None = None
) -> dict[str, Resource]:
    """Desired address -> the actual resource that is its copy.

    A marker wins over a name. An actual resource is matched by name only when its marker, if any,
    names a source resource that no longer exists (the source was deleted and re-created under
    the same name): adopting it then beats creating a duplicate.

    Kinds are matched in reference order, and "by name" means by the actual resource's address
    *as the desired state would spell it*: its references rewritten to the desired addresses of
    the parents already matched. So the interface of a renamed router, or the rules of a renamed
    group, follow their parent instead of turning into a delete plus a duplicate create. A
    resource referencing an actual parent that matched nothing is never matched by name (it
    cannot belong to any desired parent).
    """
    markers = markers or Markers(desired, None)
    by_marker = {(r.kind, r.provenance): r for r in actual.resources.values() if r.provenance}
    result: dict[str, Resource] = {}
    taken: set[str] = set()
    translate: dict[str, str] = {}
    for kind in REGISTRY:
        wants = {a: w for a, w in desired.resources.items() if w.kind == kind.name}
        for address, want in wants.items():
            have = _by_marker(by_marker, want.kind, markers.of(want))
            if have is not None and kind.provenance:
                result[address] = have
                taken.add(have.address)
        by_address: dict[str, Resource] = {}
        for have in actual.of_kind(kind.name):
            spelled = _desired_address(kind, have, translate)
            if spelled is not None:
                by_address.setdefault(spelled, have)
        for address in wants:
            if address in result or kind.workload:
                continue
            have = by_address.get(address)
            if have is None or have.address in taken:
                continue
            if kind.provenance and markers.names_desired(have.provenance):
                continue  # it is the copy of another source resource
            result[address] = have
            taken.add(have.address)
        translate.update({result[a].address: a for a in wants if a in result})
    return result


def _by_marker(
    by_marker: dict[tuple[str, str], Resource], kind: str, marker: str | None
) -> Resource | None:
    """The copy carrying ``marker``, else one carrying its legacy form (the bare source id)."""
    if marker is None:
        return None
    found = by_marker.get((kind, marker))
    if found is None:
        found = by_marker.get((kind, split_marker(marker)[1]))
    return found


def _desired_address(kind: Kind, have: Resource, translate: dict[str, str]) -> str | None:
    """The address ``have`` would have with its references translated; None when one of them
    points at an actual resource no desired one matched."""
    if not kind.refs:
        return have.address
    if any(value not in translate for _, value in kind.references(have.params)):
        return None
    params = kind.map_references(have.params, translate.__getitem__)
    # Keep a disambiguation suffix (``~2``) the snapshot gave the actual resource.
    spelled = kind.key(have.params, key_of)
    suffix = have.key[len(spelled) :] if have.key.startswith(spelled) else ""
    return make_address(kind.name, kind.key(params, key_of) + suffix)


def _translated(res: Resource, translate: dict[str, str]) -> dict[str, Any]:
    """Actual params with references rewritten to desired addresses, so refs compare equal."""
    return REGISTRY[res.kind].map_references(res.params, lambda a: translate.get(a, a))


def _refs(kind: Kind, params: dict[str, Any]) -> list[str]:
    return sorted({value for _, value in kind.references(params)})


def _compare(
    want: Resource, have: Resource | None, translate: dict[str, str], marker: str | None
) -> Change:
    kind = REGISTRY[want.kind]
    common: dict[str, Any] = {
        "address": want.address,
        "kind": want.kind,
        "after": want.params,
        "depends_on": _refs(kind, want.params),
        "source_id": marker,
    }
    if have is None:
        if kind.name_field and want.params.get(kind.name_field.name) in kind.builtin_names:
            return Change(
                action=Action.CREATE,
                reason=Reason.BLOCKED_PREREQUISITE,
                detail=f"the destination has no built-in {want.key!r} {kind.name}",
                **common,
            )
        if kind.workload:
            return Change(action=Action.MIGRATE, **common)
        return Change(action=Action.CREATE, **common)

    before = _translated(have, translate)
    common.update(before=before, target_id=have.id)
    if have.address != want.address:
        common["target_address"] = have.address
    fields = [
        FieldChange(
            field=f.name,
            before=before.get(f.name),
            after=want.params.get(f.name),
            forces_replacement=f.replace,
        )
        for f in kind.fields
        if f.differs(before.get(f.name), want.params.get(f.name))
    ]
    if kind.workload:
        blocked = _workload_blocked(kind, fields)
        if blocked is not None:
            return blocked.model_copy(update=common)
        if not have.info.get("migrated"):
            return Change(
                action=Action.MIGRATE,
                reason=Reason.RESUME,
                detail="the destination copy exists but its data was not verified yet: resume",
                fields=fields,
                **common,
            )
    if any(fc.forces_replacement for fc in fields):
        names = ", ".join(fc.field for fc in fields if fc.forces_replacement)
        return Change(
            action=Action.REPLACE,
            reason=Reason.IMMUTABLE_FIELD,
            detail=f"cannot change in place: {names}",
            fields=fields,
            **common,
        )
    builtin = kind.name_field and want.params.get(kind.name_field.name) in kind.builtin_names
    # A legacy marker of the same source is ours already: re-stamping it is left to the next
    # update of the resource (apply stamps the marker whenever it writes one).
    adopt = kind.provenance and not same_source(have.provenance, marker) and not builtin
    if adopt:
        changed = f" and update {', '.join(fc.field for fc in fields)}" if fields else ""
        return Change(
            action=Action.UPDATE,
            reason=Reason.ADOPT,
            detail=f"already in the destination: adopt it (stamp the provenance marker{changed})",
            fields=fields,
            **common,
        )
    if fields:
        return Change(action=Action.UPDATE, fields=fields, **common)
    return Change(action=Action.NOOP, **common)


def _workload_blocked(kind: Kind, fields: list[FieldChange]) -> Change | None:
    """A migrated copy is never thrown away to change it: what cannot change in place blocks
    (the user deletes the copy to migrate it again), and so does a shrink."""
    fixed = [fc.field for fc in fields if fc.forces_replacement]
    if fixed:
        reason, detail = (
            Reason.BLOCKED_IMMUTABLE,
            f"the migrated copy differs in {', '.join(fixed)}, which cannot change in place; "
            "delete the destination copy to migrate it again",
        )
    else:
        shrunk = [
            fc.field
            for fc in fields
            if kind.field(fc.field).grow_only and (fc.after or 0) < (fc.before or 0)
        ]
        if not shrunk:
            return None
        reason, detail = (
            Reason.BLOCKED_SHRINK,
            f"{', '.join(shrunk)} would shrink, which would lose data; it can only grow",
        )
    # address/kind/after are filled in by the caller.
    return Change(
        address="-", kind=kind.name, action=Action.UPDATE, reason=reason, detail=detail,
        fields=fields,
    )  # fmt: skip


def _auto_children(desired: Snapshot, changes: dict[str, Change]) -> None:
    """Children the cloud creates with a new parent are not created again (no 409), and those
    the source does not have are deleted once the parent exists."""
    for change in list(changes.values()):
        kind = REGISTRY[change.kind]
        if change.action is not Action.CREATE or kind.auto_children is None or change.blocked:
            continue
        for child_kind_name, partial in kind.auto_children(change.after or {}):
            child_kind = REGISTRY[child_kind_name]
            assert child_kind.owner, f"{child_kind_name} declares no owner field"
            params = params_from_record(child_kind, {**partial, child_kind.owner: change.address})
            key = child_kind.key(params, key_of)
            address = make_address(child_kind_name, key)
            existing = changes.get(address)
            if (
                existing is not None
                and existing.action is Action.CREATE
                and existing.after != params
            ):
                # Same key, but it differs where the key does not look (a description): what
                # the cloud made is replaced once the parent exists, found then by its key.
                fields = [
                    FieldChange(
                        field=f.name,
                        before=params.get(f.name),
                        after=(existing.after or {}).get(f.name),
                        forces_replacement=f.replace,
                    )
                    for f in child_kind.fields
                    if params.get(f.name) != (existing.after or {}).get(f.name)
                ]
                changes[address] = existing.model_copy(
                    update={
                        "action": Action.REPLACE,
                        "before": params,
                        "fields": fields,
                        "reason": Reason.AUTO_CREATED,
                        "detail": f"created by the cloud with {change.address}, then replaced: "
                        + ", ".join(fc.field for fc in fields),
                    }
                )
            elif existing is not None and existing.action is Action.CREATE:
                changes[address] = existing.model_copy(
                    update={
                        "action": Action.NOOP,
                        # What the cloud will have made: a no-op has a before like any other.
                        "before": existing.after,
                        "reason": Reason.AUTO_CREATED,
                        "detail": f"created by the cloud with {change.address}",
                    }
                )
            elif existing is None:
                changes[address] = Change(
                    address=address,
                    kind=child_kind_name,
                    action=Action.DELETE,
                    reason=Reason.NOT_IN_SOURCE,
                    detail=f"the cloud creates it with {change.address}; the source has none",
                    before=params,
                    depends_on=[change.address],
                )


def _orphans(
    desired: Snapshot,
    actual: Snapshot,
    matched: dict[str, Resource],
    translate: dict[str, str],
    changes: dict[str, Change],
    markers: Markers,
    *,
    prune: bool,
) -> None:
    """Actual resources nothing desired matches: children of managed parents go, the rest stays
    unless pruning (and then only what this migration created)."""
    matched_actual = {r.address for r in matched.values()}
    for have in actual.resources.values():
        if have.address in matched_actual:
            continue
        kind = REGISTRY[have.kind]
        params = _translated(have, translate)
        # The owner counts only when it is the copy of a desired resource: an unmatched parent
        # keeps its actual address, which may spell a desired one (a group renamed at the
        # source onto the name of a hand-made destination group), and its children are not ours.
        parent = have.params.get(kind.owner) if kind.owner else None
        owner = translate.get(parent) if parent is not None else None
        # The cloud's own resources (``default``) are never deleted, even carrying our marker.
        builtin = kind.name_field is not None and params.get(kind.name_field.name) in (
            kind.builtin_names
        )
        if owner is not None and owner in desired.resources:
            reason, detail = Reason.NOT_IN_SOURCE, f"{owner} has no such {kind.name} at the source"
        elif (
            prune
            and (_prunable(have, markers) or _ours_by_references(kind, have, translate, desired))
            and not builtin
            # A disk in use (a migrated server's volume) goes with its server, never alone.
            and not have.info.get("attached_to")
        ):
            reason, detail = Reason.PRUNE, "its source is gone (options.prune is on)"
        else:
            continue
        address = _free_address(have.address, changes)
        changes[address] = Change(
            address=address,
            kind=have.kind,
            action=Action.DELETE,
            reason=reason,
            detail=detail,
            before=params,
            target_id=have.id,
            target_address=have.address,
        )


def _ours_by_references(
    kind: Kind, have: Resource, translate: dict[str, str], desired: Snapshot
) -> bool:
    """A kind that carries no marker (a router interface: a port Neutron owns) is this
    migration's when everything it references is the copy of a desired resource: our router's
    leg on our subnet. A leg of our router on a subnet made by hand stays."""
    if kind.provenance:
        return False
    refs = [value for _, value in kind.references(have.params)]
    return bool(refs) and all(translate.get(value) in desired.resources for value in refs)


def _prunable(have: Resource, markers: Markers) -> bool:
    """Carries this migration's marker, and no desired resource has its source."""
    return markers.ours(have.provenance) and not markers.names_desired(have.provenance)


def _cascade(
    actual: Snapshot,
    matched: dict[str, Resource],
    translate: dict[str, str],
    changes: dict[str, Change],
    markers: Markers,
) -> None:
    """Whatever references a destroyed resource must go first: replace what we manage, delete
    attachments, and block the destruction when something unmanaged still uses it."""
    change_of_actual = {
        c.target_address or c.address: c.address for c in changes.values() if c.target_id
    }
    doomed = {
        c.target_address or c.address
        for c in changes.values()
        if c.action in (Action.REPLACE, Action.DELETE) and c.target_id and not c.blocked
    }
    grew = True
    while grew:
        grew = False
        for have in actual.resources.values():
            if have.address in doomed:
                continue
            kind = REGISTRY[have.kind]
            hit = [value for _, value in kind.references(have.params) if value in doomed]
            if not hit:
                continue
            mine = change_of_actual.get(have.address)
            if mine is not None and mine in changes and changes[mine].action is not Action.DELETE:
                changes[mine] = changes[mine].model_copy(
                    update={
                        "action": Action.REPLACE,
                        "reason": Reason.DEPENDENCY_REPLACED,
                        "detail": f"references {hit[0]}, which is destroyed",
                    }
                )
            elif _managed(have, actual, doomed, change_of_actual, markers):
                address = _free_address(have.address, changes)
                changes[address] = Change(
                    address=address,
                    kind=have.kind,
                    action=Action.DELETE,
                    reason=Reason.DEPENDENCY_REPLACED,
                    detail=f"references {hit[0]}, which is destroyed",
                    before=_translated(have, translate),
                    target_id=have.id,
                    target_address=have.address,
                )
            else:
                for target in hit:
                    blocked = change_of_actual.get(target, target)
                    if blocked in changes:
                        changes[blocked] = changes[blocked].model_copy(
                            update={
                                "reason": Reason.BLOCKED_IN_USE,
                                "detail": f"in use by {have.address}, which tenantshift "
                                "does not manage",
                            }
                        )
                continue
            doomed.add(have.address)
            grew = True


def _managed(
    have: Resource,
    actual: Snapshot,
    doomed: set[str],
    change_of_actual: dict[str, str],
    markers: Markers,
) -> bool:
    """Whether tenantshift may destroy ``have`` along with what it references. A kind with
    markers is ours when it carries one; a kind without (router interfaces, rules) is ours when
    its other parents are: the interface of someone else's router, or a rule in someone else's
    group, is theirs, and destroying what it references must be blocked, not done behind them."""
    kind = REGISTRY[have.kind]
    if kind.provenance:
        return markers.ours(have.provenance)
    for _, parent_address in kind.references(have.params):
        if parent_address in doomed:
            continue
        parent = actual.resources.get(parent_address)
        if parent is None:
            return False
        if parent.address not in change_of_actual and not _managed(
            parent, actual, doomed, change_of_actual, markers
        ):
            return False
    return True


def _free_address(address: str, changes: dict[str, Change]) -> str:
    """A delete of an actual resource whose address a desired one already uses."""
    existing = changes.get(address)
    if existing is None or (
        existing.action is Action.DELETE and existing.target_address == address
    ):
        return address
    return f"{address}~old"


def _creating(changes: Iterable[Change]) -> list[Change]:
    return [c for c in changes if c.action in (Action.CREATE, Action.REPLACE) and not c.blocked]


def _block_missing_externals(actual: Snapshot, changes: dict[str, Change]) -> None:
    for change in _creating(changes.values()) + [
        c for c in changes.values() if c.action is Action.UPDATE
    ]:
        kind = REGISTRY[change.kind]
        for f in kind.fields:
            value = (change.after or {}).get(f.name)
            known = actual.externals.get(f.external or "")
            if f.external and value is not None and known is not None and value not in known:
                hint = f"; map it with map.{f.mapping}" if f.mapping else ""
                changes[change.address] = change.model_copy(
                    update={
                        "reason": Reason.BLOCKED_PREREQUISITE,
                        "detail": f"{f.external} {value!r} does not exist in the destination{hint}",
                    }
                )


def _block_over_quota(actual: Snapshot, changes: dict[str, Change]) -> None:
    wanted = Counter(c.kind for c in changes.values() if c.action is Action.CREATE)
    for kind_name, count in wanted.items():
        left = actual.quota_left.get(kind_name)
        if left is None or count <= left:
            continue
        for change in _creating(changes.values()):
            if change.kind == kind_name and change.action is Action.CREATE:
                changes[change.address] = change.model_copy(
                    update={
                        "reason": Reason.BLOCKED_QUOTA,
                        "detail": f"{count} {kind_name} to create, the quota allows {left} more",
                    }
                )
