"""The handler API: one ``KindHandler`` subclass per resource kind, found through a registry.

``OpenStackProvider`` is only a dispatcher: it checks the kind, takes the locks, runs the
snapshot's calls in parallel and hands each request to the kind's handler. Everything that
differs between kinds (which SDK proxy, how a record reads, where the provenance marker lives,
which quota applies, whether a write has to be waited for) is here, in a handler class.

Adding a kind: subclass ``KindHandler`` (or a family base such as ``NeutronHandler``), set
``kind``, implement the abstract methods, decorate with ``@register_handler``, and import the
module from ``kinds/__init__.py``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

import openstack.connection
from openstack.resource import Resource

from tenantshift.providers.base import NotFoundError, ProviderError
from tenantshift.providers.openstack import records as rec
from tenantshift.providers.openstack.connection import Caller
from tenantshift.resources import REGISTRY, Kind, Record

#: An SDK resource (``openstack.resource.Resource``) or anything shaped like one.
SdkObject = Any
#: Looks for the result of a create whose response was lost (``None``: it did not happen).
Recover = Callable[[], Record | None]
#: Raw list results of every kind in a snapshot, by kind (for handlers that filter on others).
Listing = Mapping[str, Sequence[SdkObject]]
# Aliases for annotations inside ``KindHandler``, whose ``list`` method shadows the builtin there.
SdkObjects = list[SdkObject]
Records = list[Record]
Names = list[str]


class ProviderContext(Protocol):
    """What a handler may use of its provider: the connection, the retrying caller, lookups."""

    conn: openstack.connection.Connection
    call: Caller
    label: str
    #: Subnet id -> its gateway address, for every subnet read or written so far: a router
    #: interface at the gateway then needs no read of its subnet.
    subnet_gateways: dict[str, str | None]

    @property
    def project_id(self) -> str: ...

    def has_extension(self, alias: str) -> bool:
        """A Neutron API extension is loaded (cached for the provider's life)."""
        ...

    def external_names(self, refresh: bool = False) -> dict[str, str]:
        """External network id -> name (cached; ``refresh`` re-lists)."""
        ...

    def external_id(self, name: str) -> str:
        """The one visible external network of that name (else ``NotFoundError``/ambiguous)."""
        ...


# -- quota --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """One quota line. ``used=None``: the API tells only the limit; the records are counted."""

    limit: int
    used: int | None = None
    reserved: int = 0


@dataclass(frozen=True)
class QuotaSource:
    """One API call that answers for one or more kinds (Neutron's quota details, Nova's limits,
    Cinder's quota set). Handlers naming the same source share one call per snapshot.

    ``read(ctx, project_id, attributes)`` returns ``{attribute: Usage}`` for the attributes the
    handlers asked for (``quota_attr``) and that have a limit.
    A ``ForbiddenError``/``NotFoundError`` from it means "unknown" (no quota is reported).
    """

    name: str
    read: Callable[[ProviderContext, str, Collection[str]], Mapping[str, Usage]]


# -- provenance storage ---------------------------------------------------------------------------


class ProvenanceStore(ABC):
    """Where a kind keeps our marker: Neutron tags, or Cinder/Nova metadata.

    A store that ``holds_labels`` also holds the kind's own ``tags`` field (Neutron tags: the
    user's tags and our marker are one list), so both are written together, in one call.
    """

    #: The kind's ``tags`` field lives here too (sent with the marker, never as a plain field).
    holds_labels: ClassVar[bool] = False

    def labels(self, params: Mapping[str, Any]) -> Names | None:
        """The user's tags wanted by ``params`` (None: the params do not say, or no such field)."""
        if not self.holds_labels or params.get("tags") is None:
            return None
        return sorted(set(params["tags"]))

    @abstractmethod
    def markers(self, res: SdkObject) -> list[str]:
        """Every source id stamped on the resource, sorted (pure: no API call)."""

    @abstractmethod
    def create_attrs(
        self, handler: KindHandler, source_id: str | None, labels: Names | None
    ) -> dict[str, Any]:
        """Attributes that stamp the marker (and the labels) in the create request itself, so
        the resource never exists unmarked; ``{}`` when the API cannot take them (then
        ``stamp`` follows)."""

    def refused(self, handler: KindHandler, exc: ProviderError) -> bool:
        """The create request was refused *because of* the marker attributes: the handler then
        retries without them and stamps afterwards (and stops sending them)."""
        return False

    @abstractmethod
    def stamp(
        self,
        handler: KindHandler,
        res: SdkObject,
        source_id: str | None,
        *,
        labels: Names | None = None,
        keep_marker: bool = False,
    ) -> SdkObject:
        """Replace our marker (remove it for ``None``; leave it as it is with ``keep_marker``)
        and, given ``labels``, the user's tags (else keep them); return the resource as it is
        afterwards."""

    def complete(self, res: SdkObject, source_id: str | None, labels: Names | None) -> bool:
        """Whether a fresh resource carries the marker and labels it was created for."""
        return self.markers(res) == ([source_id] if source_id else [])

    def fields(self, res: SdkObject) -> dict[str, Any]:
        """The record's ``provenance`` (plus ``provenance_markers`` when several)."""
        return rec.provenance_fields(self.markers(res))


class NeutronTags(ProvenanceStore):
    """``tenantshift-src:<id>`` among the resource's Neutron tags, beside the user's own."""

    holds_labels = True

    def markers(self, res: SdkObject) -> list[str]:
        return rec.markers_in_tags(getattr(res, "tags", None))

    def create_attrs(
        self, handler: KindHandler, source_id: str | None, labels: Names | None
    ) -> dict[str, Any]:
        # Neutron takes tags in the POST body only where an extension says so (ports, with
        # ``tag-ports-during-bulk-creation``); ``tag-creation`` is POST .../{id}/tags, after.
        # Elsewhere a POST with tags is a 400: never sent, so it costs no round trip.
        extension = handler.tags_in_create
        if not (extension and handler.marker_in_create and handler.ctx.has_extension(extension)):
            return {}
        tags = rec.with_marker(labels or [], source_id)
        return {"tags": tags} if tags else {}

    def complete(self, res: SdkObject, source_id: str | None, labels: Names | None) -> bool:
        have = sorted(getattr(res, "tags", None) or [])
        if labels is None:
            return super().complete(res, source_id, labels)
        return have == rec.with_marker(labels, source_id)

    def refused(self, handler: KindHandler, exc: ProviderError) -> bool:
        # The extension is announced but the POST refuses tags (seen on Neutron 29 with the tag
        # plugin not loaded for a resource type). Per handler: one kind refusing must not make
        # every other kind lose its atomic marker.
        return "'tags' not allowed" in str(exc)

    def stamp(
        self,
        handler: KindHandler,
        res: SdkObject,
        source_id: str | None,
        *,
        labels: Names | None = None,
        keep_marker: bool = False,
    ) -> SdkObject:
        current = sorted(res.tags or [])
        others = rec.labels_in_tags(current) if labels is None else labels
        if keep_marker:
            tags = sorted(set(others) | {t for t in current if rec.is_marker_tag(t)})
        else:
            tags = rec.with_marker(others, source_id)
        if current == tags:
            return res
        net = handler.ctx.conn.network
        # set_tags replaces the whole list: the other tags were read with ``res`` and are kept.
        handler.ctx.call(f"network.set_tags({handler.kind})", lambda: net.set_tags(res, tags))
        # The PUT answers with the tags only, and the SDK keeps them on ``res``: no re-read
        # (revision and timestamps are info, never compared), so a create costs two calls.
        res.tags = tags
        return res


class MetadataProvenance(ProvenanceStore):
    """``{"tenantshift-src": <id>}`` in a resource's metadata (Cinder volumes, Nova servers).

    Metadata is set in the create request (atomic), and afterwards through the handler's
    ``write_metadata``/``delete_metadata``, which a Cinder or Nova handler implements with its
    proxy's ``set_*_metadata``/``delete_*_metadata``. One key holds one id, so a second stamp
    overwrites rather than adds (no double marker can arise).
    """

    def __init__(self, key: str = rec.METADATA_KEY) -> None:
        self.key = key

    def markers(self, res: SdkObject) -> list[str]:
        value = (getattr(res, "metadata", None) or {}).get(self.key)
        return [str(value)] if value else []

    def create_attrs(
        self, handler: KindHandler, source_id: str | None, labels: Names | None
    ) -> dict[str, Any]:
        return {"metadata": {self.key: source_id}} if source_id is not None else {}

    def stamp(
        self,
        handler: KindHandler,
        res: SdkObject,
        source_id: str | None,
        *,
        labels: Names | None = None,
        keep_marker: bool = False,
    ) -> SdkObject:
        if keep_marker or self.markers(res) == ([source_id] if source_id else []):
            return res
        if source_id is None:
            handler.delete_metadata(res, [self.key])
        else:
            handler.write_metadata(res, {self.key: source_id})
        # SDK resources are dicts too; Glance's raw JSON (images) is only a dict.
        return handler.fetch(str(res["id"] if isinstance(res, dict) else res.id))


# -- waiting --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wait:
    """How long an asynchronous write may take. Each poll is one ``Caller`` call with its own
    retry budget (20 s by default); ``timeout`` bounds the whole wait, which can be minutes.
    Polls start ``first`` seconds apart and back off to ``interval``: most Cinder and Nova
    transitions take well under a second, and a fixed 2 s poll made each one cost 2 s."""

    timeout: float = 600.0
    interval: float = 2.0
    first: float = 0.25
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


# -- the handler ----------------------------------------------------------------------------------

H = TypeVar("H", bound="type[KindHandler]")

#: kind name -> handler class, in registration (reference) order.
_HANDLERS: dict[str, type[KindHandler]] = {}


def register_handler(cls: H) -> H:
    """Class decorator: make ``cls`` the OpenStack provider's handler of ``cls.kind``.

    The kind must be declared in ``tenantshift.resources`` (the handler reads its ``Kind``).
    """
    name = cls.kind
    if name not in REGISTRY:
        raise ValueError(f"handler {cls.__name__}: kind {name!r} is not declared in resources")
    if name in _HANDLERS:
        raise ValueError(
            f"kind {name!r} has two handlers: {_HANDLERS[name].__name__}, {cls.__name__}"
        )
    _HANDLERS[name] = cls
    return cls


def handler_classes() -> dict[str, type[KindHandler]]:
    """Every registered handler class by kind, in registration order."""
    return dict(_HANDLERS)


class KindHandler(ABC):
    """Reads and writes one kind for one provider (one instance per provider and kind).

    Subclasses set the class attributes and implement ``list``, ``to_record``, ``fetch``,
    ``candidates``, ``create_call``, ``update_call`` and ``delete_call``. The template methods
    ``create``/``update``/``delete`` add what every kind needs around those calls: the marker,
    refusing in-place changes of replace-only fields, treating "already gone" as done, waiting.
    """

    #: The ``Kind`` name in ``tenantshift.resources``.
    kind: ClassVar[str]
    #: Where the marker lives; ``None`` when the ``Kind`` declares ``provenance=False``.
    provenance_store: ClassVar[ProvenanceStore | None] = None
    #: Which call answers this kind's quota, and this kind's attribute in its answer.
    quota_source: ClassVar[QuotaSource | None] = None
    quota_attr: ClassVar[str | None] = None
    #: Record field -> SDK attribute, where they differ.
    sdk_names: ClassVar[Mapping[str, str]] = {}
    #: Fields where ``None`` means "let the cloud choose" and must not be sent as JSON null.
    drop_none: ClassVar[frozenset[str]] = frozenset()
    #: Fields ``to_request`` leaves out because the handler sends them itself (after lookups).
    handled_fields: ClassVar[frozenset[str]] = frozenset()
    #: The API extension that lets the create request carry tags (None: it never can).
    tags_in_create: ClassVar[str | None] = None
    #: Asynchronous APIs (Cinder, Nova servers) set these; ``None``: the call returns when done.
    create_wait: ClassVar[Wait | None] = None
    ready_status: ClassVar[str] = "available"
    delete_wait: ClassVar[Wait | None] = None

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        #: The create request may carry the marker (cleared when the API refuses it).
        self.marker_in_create = True
        declared = REGISTRY[self.kind].provenance
        if declared != (self.provenance_store is not None):
            raise TypeError(
                f"{type(self).__name__}: the {self.kind} Kind says provenance={declared}, "
                f"the handler {'has no' if declared else 'has a'} provenance store"
            )

    @property
    def declaration(self) -> Kind:
        return REGISTRY[self.kind]

    # -- reading -----------------------------------------------------------------------------
    @abstractmethod
    def list(self, project_id: str) -> SdkObjects:
        """All of the project's resources of this kind: one (paginated) list call."""

    @abstractmethod
    def to_record(self, res: SdkObject) -> Record:
        """One SDK resource -> its record (may use cached lookups of the context)."""

    def to_records(self, raw: Sequence[SdkObject], listing: Listing) -> Records:
        """A snapshot's records from the listing (override to filter or to split resources)."""
        return [self.to_record(r) for r in raw]

    def externals(self) -> dict[str, Names]:
        """Names outside the tenant this kind refers to (``{"external_network": [...]}``)."""
        return {}

    @abstractmethod
    def fetch(self, id: str) -> SdkObject:
        """Read one resource (``NotFoundError`` when it is gone)."""

    def get(self, id: str) -> Record | None:
        try:
            return self.to_record(self.fetch(id))
        except NotFoundError:
            return None

    @abstractmethod
    def candidates(self, source_id: str | None, params: Mapping[str, Any]) -> Records:
        """What ``find`` matches against, filtered server-side (by marker, then by key)."""

    # -- quota -------------------------------------------------------------------------------
    def quota_left(self, usage: Usage | None, records: Sequence[Record]) -> int | None:
        """How many more the quota allows (``None``: unknown or unlimited)."""
        if usage is None or usage.limit < 0:  # -1: unlimited
            return None
        used = usage.used if usage.used is not None else len(records)
        return max(0, usage.limit - used - usage.reserved)

    # -- writing -----------------------------------------------------------------------------
    @classmethod
    def to_request(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """Record fields -> keyword arguments of the SDK's create/update calls."""
        skip = frozenset({"provenance", "id"}) | cls.handled_fields
        if cls.provenance_store is not None and cls.provenance_store.holds_labels:
            skip |= {"tags"}  # written with the marker by the store
        return rec.to_sdk(params, cls.sdk_names, cls.drop_none, skip)

    def request_extras(self, params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        """Attributes that need lookups (an external network's id); only for fields present."""
        return {}

    @abstractmethod
    def create_call(self, attrs: dict[str, Any], recover: Recover) -> SdkObject | Record:
        """Send the create request (through ``ctx.call`` with ``recover``)."""

    def update_call(self, id: str, attrs: dict[str, Any]) -> SdkObject:
        """Send an in-place update; kinds without an update API keep this default."""
        raise ProviderError(
            f"{self.ctx.label}: {self.kind} {id} cannot change in place "
            f"({', '.join(sorted(attrs))}): it must be replaced",
            call=f"update {self.kind}",
        )

    @abstractmethod
    def delete_call(self, id: str) -> None:
        """Send the delete request (``NotFoundError`` when it is gone already)."""

    def create(self, params: Mapping[str, Any], marker: str | None, recover: Recover) -> Record:
        """Create and wait until usable, with the marker in the request where the API allows."""
        attrs = self.to_request(params) | self.request_extras(params, creating=True)
        store = self.provenance_store
        labels = store.labels(params) if store is not None else None
        marked = {}
        if store is not None and (marker is not None or labels):
            marked = store.create_attrs(self, marker, labels)
        try:
            res = self.create_call(_merge(attrs, marked), recover)
        except ProviderError as exc:
            if not (marked and store is not None and store.refused(self, exc)):
                raise
            self.marker_in_create = False
            res = self.create_call(attrs, recover)
        # SDK resources are dicts too: tell them from a record ``recover`` found by their type.
        if isinstance(res, Resource):
            if self.create_wait is not None:
                res = self.wait_for_status(res, self.ready_status, wait=self.create_wait)
            if store is not None and not store.complete(res, marker, labels):
                # No atomic marker: stamp it (and the labels) right away, one call, on the
                # resource just returned. A crash in between leaves an unmarked copy that
                # ``find`` still matches by key; within this run the provider's key lock hides
                # the window.
                res = store.stamp(self, res, marker, labels=labels)
            return self.to_record(res)
        # Found after a lost response, possibly by key and still unmarked: stamp below
        # (and, for an asynchronous kind, wait for it like for a fresh one).
        record = dict(res)
        if self.create_wait is not None:
            fresh = self.fetch(str(record["id"]))
            record = self.to_record(
                self.wait_for_status(fresh, self.ready_status, wait=self.create_wait)
            )
        changes: dict[str, Any] = {}
        if store is not None and marker is not None and record.get("provenance") != marker:
            changes["provenance"] = marker
        if labels is not None and sorted(record.get("tags") or []) != labels:
            changes["tags"] = labels
        if changes:
            # Found rather than made: stamp what it lacks (the update re-reads it first).
            record = self.update(str(record["id"]), changes)
        return record

    def update(self, id: str, changes: Mapping[str, Any]) -> Record:
        """Change the given fields in place; ``provenance`` in ``changes`` re-stamps the marker."""
        changes = dict(changes)
        stamp = "provenance" in changes
        marker = changes.pop("provenance", None)
        store = self.provenance_store
        labels: Names | None = None
        if store is not None and store.holds_labels and "tags" in changes:
            labels = sorted(set(changes.pop("tags") or []))
        # Replace-only fields are declared in the Kind: refuse them here rather than let the
        # cloud half-apply a change (a rule has no update call at all).
        fixed = sorted(k for k in changes if self._replace_only(k))
        if fixed:
            raise ProviderError(
                f"{self.ctx.label}: {self.kind} {id} cannot change in place "
                f"({', '.join(fixed)}): it must be replaced",
                call=f"update {self.kind}",
            )
        attrs = self.to_request(changes) | self.request_extras(changes, creating=False)
        stamp = stamp and store is not None  # kinds without a marker have nothing to stamp
        retag = stamp or labels is not None
        if attrs:
            res = self.update_call(id, attrs)
        elif retag:
            res = self.fetch_or_missing(id, "update")
        else:
            current = self.get(id)
            if current is None:
                raise NotFoundError(
                    f"{self.ctx.label}: {self.kind} {id} not found", call=f"update {self.kind}"
                )
            return current
        if retag and store is not None:
            res = store.stamp(self, res, marker, labels=labels, keep_marker=not stamp)
        return self.to_record(res)

    def delete(self, id: str) -> None:
        """Delete and wait until gone; what is gone already is deleted."""
        try:
            self.delete_call(id)
        except NotFoundError:
            return  # already gone: the goal of a delete is met
        if self.delete_wait is not None:
            self.wait_for_delete(id, wait=self.delete_wait)

    def fetch_or_missing(self, id: str, action: str) -> SdkObject:
        try:
            return self.fetch(id)
        except NotFoundError:
            raise NotFoundError(
                f"{self.ctx.label}: {self.kind} {id} not found", call=f"{action} {self.kind}"
            ) from None

    # -- metadata (for a ``MetadataProvenance`` store) ---------------------------------------
    def write_metadata(self, res: SdkObject, metadata: dict[str, str]) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not keep metadata")

    def delete_metadata(self, res: SdkObject, keys: Names) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not keep metadata")

    # -- waiting -----------------------------------------------------------------------------
    def wait_for_status(
        self,
        res: SdkObject,
        status: str,
        *,
        wait: Wait,
        failures: frozenset[str] = frozenset({"error"}),
    ) -> SdkObject:
        """Poll until ``res.status`` is ``status``. Outside the retry budget: every poll is its
        own call, the whole wait is bounded by ``wait.timeout``."""
        latest, polled = res, False

        def read() -> str:
            nonlocal latest, polled
            if polled:  # the first look is at the resource in hand
                latest = self.fetch(str(res.id))
            polled = True
            return str(getattr(latest, "status", "") or "")

        what = f"{self.kind} {res.id}"
        poll(read, status, what, wait, self.ctx.label, failures, call=f"wait {self.kind}")
        return latest

    def wait_for_delete(
        self,
        id: str,
        *,
        wait: Wait,
        failures: frozenset[str] = frozenset({"error_deleting", "error"}),
    ) -> None:
        """Poll until the resource is gone. ``failures``: statuses that mean the delete failed
        (a Nova server already in ERROR keeps that status while it is deleted: pass none)."""

        def read() -> str:
            try:
                return str(getattr(self.fetch(id), "status", "") or "")
            except NotFoundError:
                return GONE

        poll(
            read,
            GONE,
            f"{self.kind} {id} (deleting)",
            wait,
            self.ctx.label,
            failures,
            call=f"wait delete {self.kind}",
        )

    def wait_until(
        self, id: str, done: Callable[[Record], bool], what: str, *, wait: Wait
    ) -> Record | None:
        """Poll the record until ``done(record)`` (or the resource is gone: None)."""
        found: Record | None = None

        def read() -> str:
            nonlocal found
            found = self.get(id)
            if found is None or done(found):
                return what
            return str(found.get("status") or "")

        poll(read, what, f"{self.kind} {id}", wait, self.ctx.label, ERRORS)
        return found

    def _replace_only(self, name: str) -> bool:
        try:
            return self.declaration.field(name).replace
        except KeyError:
            return False


#: The status ``poll`` reads for a resource that is gone.
GONE = "gone"
#: Cinder's failure statuses: a wait for anything else ends there.
ERRORS = frozenset({"error", "error_deleting", "error_extending", "error_restoring"})


def poll(
    read: Callable[[], str],
    wanted: str,
    what: str,
    wait: Wait,
    label: str,
    failures: frozenset[str] = frozenset({"error"}),
    call: str | None = None,
) -> None:
    """The one wait loop of the provider: ``read()`` (one ``Caller`` call or more, each with
    its own retry budget) until it says ``wanted``; a failure status or ``wait.timeout`` (the
    whole wait, minutes) raises ``ProviderError``."""
    call = call or f"wait {what}"
    deadline = wait.clock() + wait.timeout
    delay = min(wait.first, wait.interval)
    while True:
        current = read().lower()
        if current == wanted.lower():
            return
        if current in failures:
            raise ProviderError(
                f"{label}: {what} went to status {current!r} while waiting for {wanted!r}",
                call=call,
            )
        if wait.clock() >= deadline:
            raise ProviderError(
                f"{label}: {what} still {current!r} after {wait.timeout:g}s waiting for {wanted!r}",
                call=call,
                retryable=True,
            )
        wait.sleep(delay)
        delay = min(delay * 2, wait.interval)


def _merge(attrs: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` plus ``extra``; dict values (metadata) are merged rather than replaced."""
    out = dict(attrs)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out
