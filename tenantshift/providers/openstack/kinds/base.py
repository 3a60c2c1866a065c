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

import threading
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
    """Where a kind keeps our marker: Neutron tags, or Cinder/Nova metadata."""

    @abstractmethod
    def markers(self, res: SdkObject) -> list[str]:
        """Every source id stamped on the resource, sorted (pure: no API call)."""

    @abstractmethod
    def create_attrs(self, handler: KindHandler, source_id: str) -> dict[str, Any]:
        """Attributes that stamp the marker in the create request itself, so the resource never
        exists unmarked; ``{}`` when the API cannot take it (then ``stamp`` follows)."""

    def refused(self, handler: KindHandler, exc: ProviderError) -> bool:
        """The create request was refused *because of* the marker attributes: the handler then
        retries without them and stamps afterwards (and stops sending them)."""
        return False

    @abstractmethod
    def stamp(self, handler: KindHandler, res: SdkObject, source_id: str | None) -> SdkObject:
        """Replace our marker (remove it for ``None``), keep everything else; return the
        resource as read back afterwards."""

    def stamp_created(self, handler: KindHandler, res: SdkObject, source_id: str) -> SdkObject:
        """Add the marker to a resource the create call just returned (no other marker can be
        on it): by default like ``stamp``; a store that can add one marker in one call
        without reading the resource first does so."""
        return self.stamp(handler, res, source_id)

    def fields(self, res: SdkObject) -> dict[str, Any]:
        """The record's ``provenance`` (plus ``provenance_markers`` when several)."""
        return rec.provenance_fields(self.markers(res))


class NeutronTags(ProvenanceStore):
    """``tenantshift-src:<id>`` among the resource's Neutron tags."""

    def markers(self, res: SdkObject) -> list[str]:
        return rec.markers_in_tags(getattr(res, "tags", None))

    def create_attrs(self, handler: KindHandler, source_id: str) -> dict[str, Any]:
        # The ``tag-creation`` extension takes tags in the POST: the marker is atomic.
        if handler.marker_in_create and handler.ctx.has_extension("tag-creation"):
            return {"tags": [rec.provenance_tag(source_id)]}
        return {}

    def refused(self, handler: KindHandler, exc: ProviderError) -> bool:
        # The extension is announced but the POST refuses tags (seen on Neutron 29 with the tag
        # plugin not loaded for a resource type). Per handler: one kind refusing must not make
        # every other kind lose its atomic marker.
        return "'tags' not allowed" in str(exc)

    def stamp(self, handler: KindHandler, res: SdkObject, source_id: str | None) -> SdkObject:
        tags = rec.retag(res.tags, source_id)
        if sorted(res.tags or []) == tags:
            return res
        net = handler.ctx.conn.network
        # set_tags replaces the whole list: the other tags were read with ``res`` and are kept.
        handler.ctx.call(f"network.set_tags({handler.kind})", lambda: net.set_tags(res, tags))
        # The PUT answers with the tags only: re-read for revision and timestamps.
        return handler.fetch(str(res.id))

    def stamp_created(self, handler: KindHandler, res: SdkObject, source_id: str) -> SdkObject:
        # ``PUT .../tags/<tag>`` adds one tag and leaves the others alone: nothing to read
        # first (``set_tags`` replaces the list), and the SDK adds it to ``res``'s tags, so
        # the create's response plus the tag is the resource as it now is; Neutron counts
        # the tag as one revision.
        tag = rec.provenance_tag(source_id)
        if res.tags is None:
            res.tags = []
        net = handler.ctx.conn.network
        res = handler.ctx.call(f"network.add_tag({handler.kind})", lambda: net.add_tag(res, tag))
        if isinstance(getattr(res, "revision_number", None), int):
            res.revision_number += 1
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

    def create_attrs(self, handler: KindHandler, source_id: str) -> dict[str, Any]:
        return {"metadata": {self.key: source_id}}

    def stamp(self, handler: KindHandler, res: SdkObject, source_id: str | None) -> SdkObject:
        if self.markers(res) == ([source_id] if source_id else []):
            return res
        if source_id is None:
            handler.delete_metadata(res, [self.key])
        else:
            handler.write_metadata(res, {self.key: source_id})
        return handler.fetch(str(res.id))


# -- waiting --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wait:
    """How long an asynchronous write may take. Each poll is one ``Caller`` call with its own
    retry budget (20 s by default); ``timeout`` bounds the whole wait, which can be minutes."""

    timeout: float = 600.0
    interval: float = 2.0
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
    #: Asynchronous APIs (Cinder, Nova servers) set these; ``None``: the call returns when done.
    create_wait: ClassVar[Wait | None] = None
    ready_status: ClassVar[str] = "available"
    delete_wait: ClassVar[Wait | None] = None

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx
        #: The create request may carry the marker (cleared when the API refuses it).
        self.marker_in_create = True
        #: Whether a create has told yet if the request may carry the marker; until then
        #: creates that would send it take ``_marker_probe`` one at a time.
        self._marker_answer_known = False
        self._marker_probe = threading.Lock()
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
        if marker is not None and store is not None and not self._marker_answer_known:
            # The first create of the kind finds out whether the request may carry the marker;
            # the others wait for that answer instead of each sending a request to be refused
            # (at a parallelism of 50, up to 50 wasted round trips per kind).
            with self._marker_probe:
                res = self._send_create(attrs, store, marker, recover)
                self._marker_answer_known = True
        else:
            res = self._send_create(attrs, store, marker, recover)
        stamped = False
        # SDK resources are dicts too: tell them from a record ``recover`` found by their type.
        if isinstance(res, Resource):
            if self.create_wait is not None:
                res = self.wait_for_status(res, self.ready_status, wait=self.create_wait)
            if marker is not None and store is not None and store.markers(res) != [marker]:
                # Just made by this call, so its response is all there is to it: the marker
                # is added to it in one call, without reading it back (create, then stamp:
                # two round trips where the API cannot take the marker in the create).
                res = store.stamp_created(self, res, marker)
                stamped = True
            record = self.to_record(res)
        else:
            # Found after a lost response, possibly by key and still unmarked: stamp below
            # (and, for an asynchronous kind, wait for it like for a fresh one).
            record = dict(res)
            if self.create_wait is not None:
                fresh = self.fetch(str(record["id"]))
                record = self.to_record(
                    self.wait_for_status(fresh, self.ready_status, wait=self.create_wait)
                )
        if (
            not stamped
            and marker is not None
            and store is not None
            and record.get("provenance") != marker
        ):
            # Found rather than made: re-stamp as an update does (re-reading first, so tags
            # someone added meanwhile are kept). A crash in between leaves an unmarked copy
            # that ``find`` still matches by key; within this run the provider's key lock
            # hides the window.
            record = self.update(str(record["id"]), {"provenance": marker})
        return record

    def _send_create(
        self,
        attrs: dict[str, Any],
        store: ProvenanceStore | None,
        marker: str | None,
        recover: Recover,
    ) -> SdkObject | Record:
        marked = {}
        if marker is not None and store is not None:
            marked = store.create_attrs(self, marker)
        try:
            return self.create_call(_merge(attrs, marked), recover)
        except ProviderError as exc:
            if not (marked and store is not None and store.refused(self, exc)):
                raise
            self.marker_in_create = False
            return self.create_call(attrs, recover)

    def update(self, id: str, changes: Mapping[str, Any]) -> Record:
        """Change the given fields in place; ``provenance`` in ``changes`` re-stamps the marker."""
        changes = dict(changes)
        stamp = "provenance" in changes
        marker = changes.pop("provenance", None)
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
        store = self.provenance_store
        stamp = stamp and store is not None  # kinds without a marker have nothing to stamp
        if attrs:
            res = self.update_call(id, attrs)
        elif stamp:
            res = self.fetch_or_missing(id, "update")
        else:
            current = self.get(id)
            if current is None:
                raise NotFoundError(
                    f"{self.ctx.label}: {self.kind} {id} not found", call=f"update {self.kind}"
                )
            return current
        if stamp and store is not None:
            res = store.stamp(self, res, marker)
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
        deadline = wait.clock() + wait.timeout
        while True:
            current = str(getattr(res, "status", "") or "").lower()
            if current == status.lower():
                return res
            if current in failures:
                raise ProviderError(
                    f"{self.ctx.label}: {self.kind} {res.id} went to status {current!r} "
                    f"while waiting for {status!r}",
                    call=f"wait {self.kind}",
                )
            if wait.clock() >= deadline:
                raise ProviderError(
                    f"{self.ctx.label}: {self.kind} {res.id} still {current!r} after "
                    f"{wait.timeout:g}s waiting for {status!r}",
                    call=f"wait {self.kind}",
                    retryable=True,
                )
            wait.sleep(wait.interval)
            res = self.fetch(str(res.id))

    def wait_for_delete(self, id: str, *, wait: Wait) -> None:
        deadline = wait.clock() + wait.timeout
        while True:
            try:
                res = self.fetch(id)
            except NotFoundError:
                return
            if str(getattr(res, "status", "") or "").lower() in ("error_deleting", "error"):
                raise ProviderError(
                    f"{self.ctx.label}: {self.kind} {id} failed to delete (status {res.status!r})",
                    call=f"wait delete {self.kind}",
                )
            if wait.clock() >= deadline:
                raise ProviderError(
                    f"{self.ctx.label}: {self.kind} {id} still there {wait.timeout:g}s after "
                    f"its delete",
                    call=f"wait delete {self.kind}",
                    retryable=True,
                )
            wait.sleep(wait.interval)

    def _replace_only(self, name: str) -> bool:
        try:
            return self.declaration.field(name).replace
        except KeyError:
            return False


def _merge(attrs: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` plus ``extra``; dict values (metadata) are merged rather than replaced."""
    out = dict(attrs)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out
