"""Desired destination state: the source snapshot, selected, renamed and mapped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tenantshift.manifest import Map, Select, Workloads
from tenantshift.resources.base import REGISTRY, Kind, Resource
from tenantshift.resources.snapshot import Entry, Snapshot, assemble


def selection_name(kind: Kind, res: Resource) -> str:
    """What ``select`` regexes match: the name when the kind has one, else the key."""
    name_field = kind.name_field
    if name_field is not None and res.params.get(name_field.name):
        return str(res.params[name_field.name])
    return res.key


def derive_desired(
    source: Snapshot,
    selection: Select | None,
    mappings: Map | None,
    *,
    workloads: Workloads | None = None,
    conversion_hosts: frozenset[str] = frozenset(),
    held: Mapping[str, str] | None = None,
) -> Snapshot:
    """Filter by the selection, apply the name template and the maps, then re-address.

    Resources whose references were not selected drop out with them (a subnet of an excluded
    network cannot migrate alone); the warnings list says which. So do resources that migrate
    with another (a volume attached to a server); ``conversion_hosts`` are the source ids of the
    conversion hosts, whose attachments do not count. ``workloads`` (the manifest's; its
    defaults when None) switches ``carried_if`` fields: a port's MAC is carried over only with
    ``preserve_macs``, otherwise the destination cloud picks one and it is not compared.
    ``held``: source ids a migration in progress holds (a data volume it detached from its
    server), with the reason; they are not migrated on their own.
    """
    switches = workloads or Workloads()
    entries = []
    notes: list[str] = []
    for res in source.resources.values():
        kind = REGISTRY[res.kind]
        if selection is not None and not selection.selects(kind.name, selection_name(kind, res)):
            continue
        if kind.migrates_with is not None or (held and res.id in held):
            why = (held or {}).get(str(res.id)) or (
                kind.migrates_with(res.info, conversion_hosts) if kind.migrates_with else None
            )
            if why is not None:
                notes.append(f"{res.address}: not migrated on its own: {why}")
                continue
        params = {
            f: _mapped(kind, f, v, mappings) if _carried(kind, f, switches) else None
            for f, v in res.params.items()
        }
        info = {"source_id": res.id, "source_address": res.address}
        entries.append(Entry(kind=res.kind, token=res.address, params=params, info=info))
    resources, warnings = assemble(entries)
    notes.extend(w.replace("left out", "not migrated") for w in warnings)
    return Snapshot(
        cloud=f"desired from {source.cloud}",
        project=source.project,
        resources=resources,
        externals=source.externals,
        warnings=notes,
    )


def _carried(kind: Kind, field_name: str, switches: Workloads) -> bool:
    switch = kind.field(field_name).carried_if
    return switch is None or bool(getattr(switches, switch))


def _mapped(kind: Kind, field_name: str, value: Any, mappings: Map | None) -> Any:
    if mappings is None or value is None:
        return value
    declared = kind.field(field_name)
    # An unnamed resource (a port) stays unnamed: the template would invent a name.
    if declared.is_name and value and value not in kind.builtin_names:
        return mappings.rename(kind.name, value)
    if declared.mapping:
        table: Mapping[str, str] = getattr(mappings, declared.mapping) or {}
        return table.get(value, value)
    return value
