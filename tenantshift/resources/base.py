"""The declaration vocabulary every resource kind is written in.

A kind is data: its fields say which are part of the identity (the address), which are compared,
which force a replacement, which reference another kind (graph edges) and which point at things
outside the tenant by name (external networks, flavors). Snapshot normalization, desired-state
derivation, the diff, the graph and apply all read these declarations and nothing else, so a new
kind is one new module here, plus its provider handler (docs/architecture.md, "How to add a kind").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import Any

from pydantic import BaseModel, ConfigDict

from tenantshift.canonical import canonical_json

#: Raw record: what a provider reads and writes. Declared field names as keys; references hold
#: the referenced resource's *id* in that cloud, external references hold a *name*; plus "id",
#: "provenance" (the source id we stamped on it, or None) and any info-only keys.
Record = dict[str, Any]

KeyResolver = Callable[[str], str]
"""Given an address, return its key (the part after ``kind.``); used to build child keys."""


def sort_unordered(value: Any) -> Any:
    """An unordered list in its one canonical order (any other value as it is)."""
    if isinstance(value, list):
        return sorted(value, key=canonical_json)
    return value


@dataclass(frozen=True)
class Field:
    """One declared field of a kind."""

    name: str
    #: Changing it cannot be done in place: the plan shows ``-/+ replace``.
    replace: bool = False
    #: Kind this field references by id in the cloud and by address in a snapshot (a graph edge).
    ref: str | None = None
    #: Name of a thing outside the tenant (e.g. ``external_network``), checked to exist at plan.
    external: str | None = None
    #: Which ``map.*`` section of the manifest rewrites this field's value.
    mapping: str | None = None
    #: Explicit default, so that "unset" and "the default" compare equal across clouds.
    default: Any = None
    #: The API returns this list in any order: sort it so snapshots are deterministic.
    unordered: bool = False
    #: Applied only after everything that references this resource exists (router routes need
    #: the router's interfaces first). Create omits it; a follow-up step sets it.
    late: bool = False
    #: Templated through ``map.names`` when deriving the desired state.
    is_name: bool = False
    #: Can grow in place but never shrink (a volume's size): a smaller desired value blocks.
    grow_only: bool = False
    #: With ``ref``: the value is a list of references (a server's ports), each one a graph edge.
    #: Order is significant unless ``unordered``.
    many: bool = False
    #: With ``many``: the list holds dicts and the reference is ``item[ref_key]`` (a port's
    #: ``fixed_ips: [{subnet, ip_address}]``); the rest of each dict is plain data.
    ref_key: str | None = None

    #: Terraform's "optional + computed": a desired ``None`` lets the cloud choose (a port's
    #: MAC), and the value is then neither sent nor compared.
    computed: bool = False
    #: The ``workloads.*`` switch of the manifest that decides whether the source value is
    #: carried over at all (``preserve_macs``); off, the desired value is ``None``. Pair it with
    #: ``computed`` so the cloud's own choice is not a difference.
    carried_if: str | None = None

    def __post_init__(self) -> None:
        if self.many and not self.ref:
            raise ValueError(f"field {self.name}: many=True needs ref=")
        if self.ref_key and not self.many:
            raise ValueError(f"field {self.name}: ref_key needs many=True")
        if self.carried_if and not self.computed:
            raise ValueError(f"field {self.name}: carried_if needs computed=True")

    def differs(self, have: Any, want: Any) -> bool:
        """Whether an actual value differs from the desired one (the diff and the executor)."""
        if self.computed and want is None:
            return False
        return bool(have != want)

    def ref_values(self, value: Any) -> list[str]:
        """The references this field's value holds, in order; None (unset) holds none."""
        if value is None or not self.ref:
            return []
        if not self.many:
            return [value]
        items = [item.get(self.ref_key) for item in value] if self.ref_key else list(value)
        return [item for item in items if item is not None]

    def map_refs(self, value: Any, fn: Callable[[str], str]) -> Any:
        """``value`` with every reference mapped through ``fn``. An unordered list is sorted
        again afterwards: ids and addresses sort differently, and both sides of a comparison
        must be in the same canonical order."""
        if value is None or not self.ref:
            return value
        if not self.many:
            return fn(value)
        mapped: list[Any]
        if self.ref_key:
            key = self.ref_key
            mapped = [
                {**item, key: fn(item[key])} if item.get(key) is not None else dict(item)
                for item in value
            ]
        else:
            mapped = [fn(item) if item is not None else None for item in value]
        return sort_unordered(mapped) if self.unordered else mapped


@dataclass(frozen=True)
class Kind:
    """A resource kind, declared once."""

    name: str
    fields: tuple[Field, ...]
    #: Builds the readable key from normalized params (references already as addresses).
    key: Callable[[Mapping[str, Any], KeyResolver], str]
    doc: str = ""
    #: The field referencing the owning resource: children of a managed parent that are not in
    #: the source are deleted (a rule removed at the source must not stay open at the destination).
    owner: str | None = None
    #: Names the cloud creates by itself and that must never be created or deleted (``default``).
    builtin_names: frozenset[str] = frozenset()
    #: Params of children the cloud creates automatically with a new resource of this kind
    #: (e.g. the two egress rules of every new security group), as (child kind, params) pairs;
    #: the owner reference is filled in by the caller.
    auto_children: Callable[[Mapping[str, Any]], list[tuple[str, dict[str, Any]]]] | None = None
    #: The destination can carry our provenance marker on this kind (Neutron tags, metadata).
    provenance: bool = True
    #: Rewrites params the cloud treats as equal into one form (applied after defaults).
    canonical: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    #: Its data moves, not just its description: a missing copy is ``migrate``d by a workload
    #: node, matched by provenance only (adopting a same-named resource would skip the copy),
    #: and never replaced (that would throw a migrated copy away).
    workload: bool = False
    #: Why a source resource is not migrated on its own (None: it is), given its ``info`` and
    #: the ids of the conversion hosts; e.g. a volume attached to a server moves with the server.
    migrates_with: Callable[[Mapping[str, Any], frozenset[str]], str | None] | None = None
    #: The reference field naming the resource on which the cloud makes this kind's changes one
    #: at a time (Neutron adds and removes a router's interfaces one by one, per router): apply
    #: runs one such change per referenced resource at once, and a change waiting for its turn
    #: holds no apply slot. More at once would only queue in the cloud, holding its workers,
    #: until they time out.
    serial_by: str | None = None

    def __post_init__(self) -> None:
        if self.serial_by is not None:
            serial = self.field(self.serial_by)
            if not serial.ref or serial.many:
                raise ValueError(f"{self.name}: serial_by must name a single reference field")

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def refs(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.ref)

    @property
    def name_field(self) -> Field | None:
        return next((f for f in self.fields if f.is_name), None)

    def references(self, params: Mapping[str, Any]) -> list[tuple[Field, str]]:
        """Every referenced value in ``params`` with the field holding it: scalar references,
        each element of a list, each ``item[ref_key]`` of a list of dicts; None skipped.

        The one place that knows how a reference is stored: normalization, the diff, the graph,
        the executor and the providers all walk references through it (Terraform's
        ``References()``), so a new shape of reference is a change here only."""
        return [(f, value) for f in self.refs for value in f.ref_values(params.get(f.name))]

    def map_references(self, params: Mapping[str, Any], fn: Callable[[str], str]) -> dict[str, Any]:
        """A copy of ``params`` with every reference mapped through ``fn`` (ids -> addresses,
        actual -> desired addresses, addresses -> destination ids); None stays None."""
        out = dict(params)
        for f in self.refs:
            if f.name in out:
                out[f.name] = f.map_refs(out[f.name], fn)
        return out


class Resource(BaseModel):
    """A normalized resource: ``params`` migrate and are compared, ``info`` never is."""

    model_config = ConfigDict(frozen=True)

    kind: str
    key: str
    params: dict[str, Any]
    info: dict[str, Any] = {}

    @property
    def address(self) -> str:
        return f"{self.kind}.{self.key}"

    @property
    def id(self) -> str | None:
        value = self.info.get("id")
        return str(value) if value is not None else None

    @property
    def provenance(self) -> str | None:
        value = self.info.get("provenance")
        return str(value) if value is not None else None


def split_address(address: str) -> tuple[str, str]:
    """``network.osm_net`` -> (``network``, ``osm_net``)."""
    kind, sep, key = address.partition(".")
    if not sep or not key:
        raise ValueError(f"not a resource address: {address!r}")
    return kind, key


def make_address(kind: str, key: str) -> str:
    return f"{kind}.{key}"


def key_of(address: str) -> str:
    """``network.osm_net`` -> ``osm_net``: the ``KeyResolver`` over addresses."""
    return split_address(address)[1]


@dataclass
class Registry:
    """All declared kinds. Iteration yields every kind after the kinds it references."""

    kinds: dict[str, Kind] = field(default_factory=dict)

    def register(self, kind: Kind) -> Kind:
        if kind.name in self.kinds:
            raise ValueError(f"kind {kind.name!r} declared twice")
        self.kinds[kind.name] = kind
        return kind

    def __getitem__(self, name: str) -> Kind:
        return self.kinds[name]

    def __contains__(self, name: object) -> bool:
        return name in self.kinds

    def __iter__(self) -> Iterator[Kind]:
        return iter(self.ordered())

    def ordered(self) -> list[Kind]:
        sorter: TopologicalSorter[str] = TopologicalSorter()
        for kind in sorted(self.kinds.values(), key=lambda k: k.name):
            deps = {f.ref for f in kind.refs if f.ref and f.ref != kind.name}
            unknown = deps - set(self.kinds)
            if unknown:
                raise ValueError(f"{kind.name} references undeclared kinds {sorted(unknown)}")
            sorter.add(kind.name, *sorted(deps))
        return [self.kinds[name] for name in sorter.static_order()]

    def names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.ordered())


REGISTRY = Registry()
