"""The OpenStack provider: one project of one cloud, read and written through openstacksdk.

This module only dispatches: every kind's calls, records, marker storage, quota and waits live
in its handler (``kinds/``). Reads are list calls filtered server-side by project (never one GET
per resource); writes return once the resource is usable (handlers of asynchronous APIs wait).
Every SDK call goes through ``Caller``: retries, a time budget, exception translation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import openstack.connection

from tenantshift.providers.base import (
    MARKERS_KEY,
    NotFoundError,
    ProviderError,
    find_in,
    id_key,
)
from tenantshift.providers.openstack.connection import (
    DEFAULT_POOL_SIZE,
    LIST_TIMEOUT,
    Caller,
    ForbiddenError,
    RetryPolicy,
    connect,
    longer_timeout,
)
from tenantshift.providers.openstack.kinds import (
    ImageHandler,
    KindHandler,
    QuotaSource,
    ServerHandler,
    Usage,
    VolumeHandler,
    handler_classes,
)
from tenantshift.providers.workload import WorkloadVerbs
from tenantshift.resources import REGISTRY, Record, Snapshot, normalize
from tenantshift.resources.snapshot import params_from_record

T = TypeVar("T")

#: Kinds this provider reads and writes (those with a registered handler), in reference order.
KINDS = tuple(name for name in REGISTRY.names() if name in handler_classes())


def normalized_url(url: str) -> str:
    """One spelling of an API URL: scheme and host lowercased, no trailing slash or version
    (Keystone is given as ``.../v3``, ``.../v3/`` or bare)."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    for suffix in ("/v3", "/v2.0", "/v2.1"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}"


class OpenStackProvider:
    """A ``Provider`` over an openstacksdk connection, scoped to its project.

    ``OpenStackProvider.from_cloud_ref(manifest.source)`` is the usual way to build one. It is
    also the ``ProviderContext`` its handlers work with.
    """

    def __init__(
        self,
        conn: openstack.connection.Connection,
        *,
        label: str,
        retry: RetryPolicy | None = None,
        max_workers: int = 8,
        list_timeout: float = LIST_TIMEOUT,
    ) -> None:
        self.conn = conn
        self.label = label
        self.call = Caller(label, retry)
        self.max_workers = max_workers
        #: How long a snapshot's reads may wait for their answer (writes keep ``api_timeout``).
        self.list_timeout = list_timeout
        # Count every HTTP request the session sends (pages, retries, token fetches included),
        # so "how many API calls did a snapshot cost" is measured, not estimated.
        conn.session.session.hooks["response"].append(self.call.count_request)
        self._lock = threading.Lock()
        self._project_id: str | None = None
        self._externals: dict[str, str] | None = None  # external network id -> name
        self.subnet_gateways: dict[str, str | None] = {}
        self._extensions: set[str] | None = None
        self._extensions_lock = threading.Lock()
        self._claims: dict[tuple[str, str], threading.RLock] = {}
        self.handlers: dict[str, KindHandler] = {
            name: cls(self) for name, cls in handler_classes().items()
        }
        #: The workload kinds' verbs beyond CRUD live on their handlers.
        volume, server, image = (self.handlers[k] for k in ("volume", "server", "image"))
        assert isinstance(volume, VolumeHandler) and isinstance(server, ServerHandler)
        assert isinstance(image, ImageHandler)
        self.workloads: WorkloadVerbs | None = WorkloadVerbs(
            volume=volume, server=server, image=image, headroom=self.headroom
        )

    @classmethod
    def from_cloud_ref(
        cls,
        ref: Any,
        *,
        label: str | None = None,
        retry: RetryPolicy | None = None,
        config_files: list[str] | None = None,
        api_timeout: float = 30.0,
        overrides: Mapping[str, Any] | None = None,
        max_workers: int = 8,
        concurrency: int = DEFAULT_POOL_SIZE,
        list_timeout: float = LIST_TIMEOUT,
    ) -> OpenStackProvider:
        """From a manifest ``CloudRef`` (anything with ``to_connect_kwargs()``).

        ``concurrency``: how many calls the caller overlaps (an apply's ``Limits.connections``:
        its API nodes plus its copies on every pair); the session keeps that many connections
        per host, and never fewer than the snapshot's ``max_workers``."""
        kwargs = ref.to_connect_kwargs()
        if label is None:
            label = getattr(ref, "cloud", None) or "inline-auth"
            if getattr(ref, "project", None):
                label = f"{label}/{ref.project}"
        conn = connect(
            kwargs,
            config_files=config_files,
            api_timeout=api_timeout,
            overrides=overrides,
            pool_size=max(concurrency, max_workers),
        )
        return cls(
            conn, label=label, retry=retry, max_workers=max_workers, list_timeout=list_timeout
        )

    # -- facts about the connection (the handlers' context) -----------------------------------
    @property
    def api_calls(self) -> int:
        """HTTP requests sent so far (all threads)."""
        return self.call.requests

    @property
    def identity(self) -> str:
        """The project this provider writes to, whatever clouds.yaml entry named it."""
        auth_url = str((self.conn.config.config.get("auth") or {}).get("auth_url") or "")
        return f"{normalized_url(auth_url)}#{self.project_id}"

    @property
    def service_endpoints(self) -> frozenset[str]:
        """The project's network and compute endpoints, from the token's catalog (no request
        beyond authentication): two connections reaching one Neutron are one cloud."""
        found = set()
        for service in ("network", "compute"):
            try:
                url = getattr(self.conn, service).get_endpoint()
            except Exception:  # a service missing from the catalog: not compared
                continue
            if url:
                found.add(f"{service} {normalized_url(str(url))}")
        return frozenset(found)

    @property
    def project_id(self) -> str:
        if self._project_id is None:
            pid = self.call("identity.authenticate", lambda: self.conn.current_project_id)
            if not pid:
                raise ProviderError(
                    f"{self.label}: the credentials are not scoped to a project",
                    call="identity.authenticate",
                )
            self._project_id = str(pid)
        return self._project_id

    def has_extension(self, alias: str) -> bool:
        """A Neutron extension is loaded (``tag-ports-during-bulk-creation``: a port's tags in its
        POST, an atomic marker)."""
        with self._extensions_lock:  # one listing, not one per worker asking at once
            if self._extensions is None:
                self._extensions = self.call(
                    "network.extensions",
                    lambda: {e.alias for e in self.conn.network.extensions()},
                )
        return alias in self._extensions

    def external_names(self, refresh: bool = False) -> dict[str, str]:
        if self._externals is None or refresh:
            nets = self.call(
                "network.networks(router:external)",
                lambda: list(self.conn.network.networks(is_router_external=True)),
            )
            with self._lock:
                self._externals = {str(n.id): str(n.name) for n in nets}
        return self._externals or {}

    def external_id(self, name: str) -> str:
        """The one external network of that name; the cached list answers unless it has no
        such name or several (then it is listed again): not a listing per router create."""
        ids = [i for i, n in self.external_names().items() if n == name]
        if len(ids) != 1:
            ids = [i for i, n in self.external_names(refresh=True).items() if n == name]
        if not ids:
            raise NotFoundError(
                f"{self.label}: no external network named {name!r} is visible",
                call="resolve external_network",
            )
        if len(ids) > 1:
            raise ProviderError(
                f"{self.label}: {len(ids)} external networks are named {name!r} "
                f"({', '.join(sorted(ids))}); rename one or map to another",
                call="resolve external_network",
            )
        return ids[0]

    # -- reading ---------------------------------------------------------------------------
    def _reading(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` with the listings' timeout: a snapshot reads whole kinds at once."""
        with longer_timeout(self.list_timeout):
            return fn(*args)

    def snapshot(self) -> Snapshot:
        """Every kind listed in parallel, with the listings' timeout in every thread."""
        return self._reading(self._snapshot)

    def _snapshot(self) -> Snapshot:
        start = self.api_calls
        project = self.project_id  # authenticate once, before the threads share the session
        handlers = self.handlers
        sources: dict[str, tuple[QuotaSource, set[str]]] = {}
        for h in handlers.values():
            if h.quota_source is not None and h.quota_attr is not None:
                entry = sources.setdefault(h.quota_source.name, (h.quota_source, set()))
                entry[1].add(h.quota_attr)
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            listed = {
                kind: pool.submit(
                    self._reading, self.call, f"list {kind}", lambda h=h: h.list(project)
                )
                for kind, h in handlers.items()
            }
            externals = [pool.submit(self._reading, h.externals) for h in handlers.values()]
            quotas: dict[str, Future[Mapping[str, Usage]]] = {
                name: pool.submit(self._reading, self._read_quota, source, project, attrs)
                for name, (source, attrs) in sources.items()
            }
            raw = {kind: f.result() for kind, f in listed.items()}
            names: dict[str, list[str]] = {}
            for future in externals:
                names.update(future.result())
            usages = {name: f.result() for name, f in quotas.items()}

        records = {kind: h.to_records(raw[kind], raw) for kind, h in handlers.items()}
        quota_left: dict[str, int] = {}
        for kind, h in handlers.items():
            if h.quota_source is None or h.quota_attr is None:
                continue
            usage = usages[h.quota_source.name].get(h.quota_attr)
            left = h.quota_left(usage, records[kind])
            if left is not None:
                quota_left[kind] = left
        snap = normalize(
            self.label,
            records,
            project=project,
            externals=names,
            quota_left=quota_left,
            api_calls=self.api_calls - start,
        )
        doubles = [
            f"{kind} {r['id']} carries the markers of {len(r[MARKERS_KEY])} source resources "
            f"({', '.join(r[MARKERS_KEY])}): tenantshift will not adopt it; remove the wrong tag"
            for kind, recs in records.items()
            for r in recs
            if r.get(MARKERS_KEY)
        ]
        return snap.model_copy(update={"warnings": snap.warnings + doubles}) if doubles else snap

    def _read_quota(
        self, source: QuotaSource, project: str, attrs: set[str]
    ) -> Mapping[str, Usage]:
        """Remaining creations per kind; kinds the credentials may not read are left out."""
        try:
            return source.read(self, project, sorted(attrs))
        except (ForbiddenError, NotFoundError):
            return {}

    def get(self, kind: str, id: str) -> Record | None:
        return self._handler(kind).get(id)

    def find(self, kind: str, source_id: str | None, params: Mapping[str, Any]) -> Record | None:
        handler = self._handler(kind)
        with self._claim(kind, params):
            return find_in(handler.candidates(source_id, params), kind, source_id, params)

    # -- writing ---------------------------------------------------------------------------
    def create(self, kind: str, params: Mapping[str, Any], source_id: str | None) -> Record:
        handler = self._handler(kind)
        marker = source_id if REGISTRY[kind].provenance else None

        def recover() -> Record | None:
            # The response of an earlier attempt was lost: did it create the resource?
            return self.find(kind, marker, params)

        # Held from the POST until the marker is on: a ``find`` for another source's resource of
        # the same key (duplicate names at high parallelism) waits, then sees the marker and
        # leaves this one alone, instead of adopting it in the window before the stamp.
        with self._claim(kind, params):
            return handler.create(params, marker, recover)

    def update(self, kind: str, id: str, changes: Mapping[str, Any]) -> Record:
        return self._handler(kind).update(id, changes)

    def delete(self, kind: str, id: str) -> None:
        self._handler(kind).delete(id)

    def headroom(self) -> dict[str, int]:
        """How many more servers, cores, RAM, volumes, gigabytes and snapshots the quotas
        allow (``WorkloadVerbs.headroom``); a quota these credentials cannot read is absent."""
        left: dict[str, int] = {}
        compute, bs = self.conn.compute, self.conn.block_storage
        try:
            limits = self.call("compute.get_limits", lambda: compute.get_limits()).absolute
            for name, limit, used in (
                ("instances", "instances", "instances_used"),
                ("cores", "total_cores", "total_cores_used"),
                ("ram", "total_ram", "total_ram_used"),
            ):
                _left(left, name, getattr(limits, limit, None), getattr(limits, used, None))
        except ProviderError:
            pass  # not readable with these credentials: unknown, not zero
        try:
            project = self.project_id
            quota = self.call(
                "block_storage.get_quota_set", lambda: bs.get_quota_set(project, usage=True)
            )
            usage = dict(quota.usage or {})
            for name in ("volumes", "gigabytes", "snapshots"):
                _left(left, name, getattr(quota, name, None), usage.get(name))
        except ProviderError:
            pass
        return left

    # -- helpers ---------------------------------------------------------------------------
    def _handler(self, kind: str) -> KindHandler:
        handler = self.handlers.get(kind)
        if handler is None:
            raise ProviderError(
                f"{self.label}: the OpenStack provider does not handle {kind!r}", call=kind
            )
        return handler

    @contextmanager
    def _claim(self, kind: str, params: Mapping[str, Any]) -> Iterator[None]:
        """A lock per (kind, key) within this provider: create-and-stamp is atomic to ``find``.

        Re-entrant, because a create's ``recover`` calls ``find`` on the same thread. Only kinds
        with a marker need it: the others are matched by key, and a duplicate is a 409.
        """
        declared = REGISTRY[kind]
        try:
            key = (kind, id_key(kind, params_from_record(declared, params)))
        except (KeyError, TypeError):
            key = None  # params without their key (not from the engine): nothing to guard
        if not declared.provenance or key is None:
            yield
            return
        with self._lock:
            lock = self._claims.setdefault(key, threading.RLock())
        with lock:
            yield


def _left(out: dict[str, int], name: str, limit: Any, used: Any) -> None:
    if limit is None or int(limit) < 0:  # -1: unlimited
        return
    out[name] = max(0, int(limit) - int(used or 0))
