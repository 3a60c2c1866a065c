"""The OpenStack provider: one project of one cloud, read and written through openstacksdk.

Reads are list calls filtered server-side by project (never one GET per resource); writes
return once the resource is usable (Neutron and Nova keypairs answer synchronously). Every SDK
call goes through ``Caller``: retries, a time budget, exception translation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openstack.connection
from openstack.resource import Resource

from tenantshift.providers.base import NotFoundError, ProviderError, find_in
from tenantshift.providers.openstack import records as rec
from tenantshift.providers.openstack.connection import (
    Caller,
    ConflictError,
    ForbiddenError,
    RetryPolicy,
    connect,
)
from tenantshift.resources import REGISTRY, Record, Snapshot, normalize

#: Kinds this provider reads and writes, in reference order.
KINDS = (
    "network",
    "subnet",
    "router",
    "router_interface",
    "security_group",
    "security_group_rule",
    "keypair",
)

#: Neutron quota detail attribute per kind.
_NEUTRON_QUOTA = {
    "network": "networks",
    "subnet": "subnets",
    "router": "routers",
    "security_group": "security_groups",
    "security_group_rule": "security_group_rules",
}


class OpenStackProvider:
    """A ``Provider`` over an openstacksdk connection, scoped to its project.

    ``OpenStackProvider.from_cloud_ref(manifest.source)`` is the usual way to build one.
    """

    def __init__(
        self,
        conn: openstack.connection.Connection,
        *,
        label: str,
        retry: RetryPolicy | None = None,
        max_workers: int = 8,
    ) -> None:
        self.conn = conn
        self.label = label
        self.call = Caller(label, retry)
        self.max_workers = max_workers
        # Count every HTTP request the session sends (pages, retries, token fetches included),
        # so "how many API calls did a snapshot cost" is measured, not estimated.
        conn.session.session.hooks["response"].append(self.call.count_request)
        self._lock = threading.Lock()
        self._project_id: str | None = None
        self._externals: dict[str, str] | None = None  # external network id -> name
        self._tag_on_create: bool | None = None

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
    ) -> OpenStackProvider:
        """From a manifest ``CloudRef`` (anything with ``to_connect_kwargs()``)."""
        kwargs = ref.to_connect_kwargs()
        if label is None:
            label = getattr(ref, "cloud", None) or "inline-auth"
            if getattr(ref, "project", None):
                label = f"{label}/{ref.project}"
        conn = connect(
            kwargs, config_files=config_files, api_timeout=api_timeout, overrides=overrides
        )
        return cls(conn, label=label, retry=retry, max_workers=max_workers)

    # -- facts about the connection ----------------------------------------------------------
    @property
    def api_calls(self) -> int:
        """HTTP requests sent so far (all threads)."""
        return self.call.requests

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

    def _tags_on_create(self) -> bool:
        """Neutron's ``tag-creation`` extension takes tags in the POST: the marker is atomic."""
        if self._tag_on_create is None:
            aliases = self.call(
                "network.extensions",
                lambda: {e.alias for e in self.conn.network.extensions()},
            )
            self._tag_on_create = "tag-creation" in aliases
        return self._tag_on_create

    def _external_names(self, refresh: bool = False) -> dict[str, str]:
        if self._externals is None or refresh:
            nets = self.call(
                "network.networks(router:external)",
                lambda: list(self.conn.network.networks(is_router_external=True)),
            )
            with self._lock:
                self._externals = {str(n.id): str(n.name) for n in nets}
        return self._externals or {}

    def _external_id(self, name: str) -> str:
        ids = [i for i, n in self._external_names(refresh=True).items() if n == name]
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
    def snapshot(self) -> Snapshot:
        start = self.api_calls
        project = self.project_id  # authenticate once, before the threads share the session
        net = self.conn.network
        owners = list(rec.ROUTER_INTERFACE_OWNERS)
        listings: dict[str, Callable[[], list[Any]]] = {
            "network": lambda: list(net.networks(project_id=project)),
            "subnet": lambda: list(net.subnets(project_id=project)),
            "router": lambda: list(net.routers(project_id=project)),
            "router_interface": lambda: list(net.ports(project_id=project, device_owner=owners)),
            "security_group": lambda: list(net.security_groups(project_id=project)),
            "security_group_rule": lambda: list(net.security_group_rules(project_id=project)),
            "keypair": lambda: list(self.conn.compute.keypairs()),
        }
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            futures = {
                kind: pool.submit(self.call, f"list {kind}", fn) for kind, fn in listings.items()
            }
            externals = pool.submit(self._external_names, True)
            neutron_quota = pool.submit(self._neutron_quota_left, project)
            keypair_limit = pool.submit(self._keypair_limit)
            raw = {kind: f.result() for kind, f in futures.items()}
            names = externals.result()
            quota_left = neutron_quota.result()
            limit = keypair_limit.result()

        records: dict[str, list[Record]] = {
            # External networks are infrastructure, not tenant resources, even when owned here.
            "network": [rec.network_record(n) for n in raw["network"] if not n.is_router_external],
            "subnet": [rec.subnet_record(s) for s in raw["subnet"]],
            "router": [rec.router_record(r, names) for r in raw["router"]],
            "router_interface": [
                r for p in raw["router_interface"] for r in rec.router_interface_records(p)
            ],
            "security_group": [rec.security_group_record(g) for g in raw["security_group"]],
            "security_group_rule": [
                rec.security_group_rule_record(r) for r in raw["security_group_rule"]
            ],
            "keypair": [rec.keypair_record(k) for k in raw["keypair"]],
        }
        external = {n.id for n in raw["network"] if n.is_router_external}
        records["subnet"] = [s for s in records["subnet"] if s["network"] not in external]
        if limit is not None:
            quota_left["keypair"] = max(0, limit - len(records["keypair"]))
        return normalize(
            self.label,
            records,
            project=project,
            externals={"external_network": sorted(set(names.values()))},
            quota_left=quota_left,
            api_calls=self.api_calls - start,
        )

    def _neutron_quota_left(self, project: str) -> dict[str, int]:
        """Remaining creations per kind; kinds the credentials may not read are left out."""
        try:
            quota = self.call(
                "network.get_quota(details)",
                lambda: self.conn.network.get_quota(project, details=True),
            )
        except (ForbiddenError, NotFoundError):
            return {}
        left: dict[str, int] = {}
        for kind, attr in _NEUTRON_QUOTA.items():
            detail = getattr(quota, attr, None) or {}
            limit = detail.get("limit")
            if limit is None or limit < 0:  # -1: unlimited
                continue
            left[kind] = max(0, limit - (detail.get("used") or 0) - (detail.get("reserved") or 0))
        return left

    def _keypair_limit(self) -> int | None:
        try:
            limits = self.call("compute.get_limits", lambda: self.conn.compute.get_limits())
        except (ForbiddenError, NotFoundError):
            return None
        value = getattr(getattr(limits, "absolute", None), "keypairs", None)
        return int(value) if value is not None and int(value) >= 0 else None

    def get(self, kind: str, id: str) -> Record | None:
        self._check_kind(kind)
        try:
            if kind == "router_interface":
                router, _subnet = rec.split_interface_id(id)
                found = [r for r in self._interfaces(device_id=router) if r["id"] == id]
                return found[0] if found else None
            if kind == "keypair":
                kp = self.call("compute.get_keypair", lambda: self.conn.compute.get_keypair(id))
                return rec.keypair_record(kp)
            res = self.call(
                f"network.get_{kind}", lambda: getattr(self.conn.network, f"get_{kind}")(id)
            )
            return self._record(kind, res)
        except NotFoundError:
            return None

    def find(self, kind: str, source_id: str | None, params: Mapping[str, Any]) -> Record | None:
        self._check_kind(kind)
        return find_in(self._candidates(kind, source_id, params), kind, source_id, params)

    def _candidates(
        self, kind: str, source_id: str | None, params: Mapping[str, Any]
    ) -> list[Record]:
        """Server-side filtered: by our tag first, then by the natural key's parts."""
        net = self.conn.network
        project = self.project_id
        if kind == "router_interface":
            return self._interfaces(device_id=params["router"])
        if kind == "keypair":
            found = self.get("keypair", str(params["name"]))
            return [found] if found else []
        if kind == "security_group_rule":
            rules = self.call(
                "network.security_group_rules",
                lambda: list(net.security_group_rules(security_group_id=params["security_group"])),
            )
            return [rec.security_group_rule_record(r) for r in rules]
        plural = {
            "network": "networks",
            "subnet": "subnets",
            "router": "routers",
            "security_group": "security_groups",
        }[kind]
        lister = getattr(net, plural)
        out: list[Record] = []
        if source_id is not None:
            tagged = self.call(
                f"network.{plural}(tags)",
                lambda: list(lister(project_id=project, tags=rec.provenance_tag(source_id))),
            )
            out = [self._record(kind, r) for r in tagged]
            if out:
                return out
        query: dict[str, Any] = {"project_id": project, "name": params.get("name")}
        if kind == "subnet":
            query["network_id"] = params["network"]
        by_key = self.call(f"network.{plural}(name)", lambda: list(lister(**query)))
        return [self._record(kind, r) for r in by_key]

    def _interfaces(self, **query: Any) -> list[Record]:
        owners = list(rec.ROUTER_INTERFACE_OWNERS)
        ports = self.call(
            "network.ports(router interfaces)",
            lambda: list(self.conn.network.ports(device_owner=owners, **query)),
        )
        return [r for p in ports for r in rec.router_interface_records(p)]

    def _record(self, kind: str, res: Any) -> Record:
        if kind == "router":
            names = self._external_names()
            gateway = (res.external_gateway_info or {}).get("network_id")
            if gateway and gateway not in names:
                names = self._external_names(refresh=True)
            return rec.router_record(res, names)
        convert: Callable[[Any], Record] = {
            "network": rec.network_record,
            "subnet": rec.subnet_record,
            "security_group": rec.security_group_record,
            "security_group_rule": rec.security_group_rule_record,
            "keypair": rec.keypair_record,
        }[kind]
        return convert(res)

    # -- writing ---------------------------------------------------------------------------
    def create(self, kind: str, params: Mapping[str, Any], source_id: str | None) -> Record:
        self._check_kind(kind)
        marker = source_id if REGISTRY[kind].provenance else None

        def recover() -> Record | None:
            # The response of an earlier attempt was lost: did it create the resource?
            return self.find(kind, marker, params)

        if kind == "router_interface":
            return self._create_interface(params, recover)
        if kind == "keypair":
            return self._create_keypair(params, recover)
        attrs = rec.to_sdk(kind, params)
        if kind == "router" and params.get("external_network"):
            attrs["external_gateway_info"] = {
                "network_id": self._external_id(str(params["external_network"]))
            }
        tagged = marker is not None and self._tags_on_create()
        if tagged:
            attrs["tags"] = [rec.provenance_tag(str(marker))]
        create = getattr(self.conn.network, f"create_{kind}")
        try:
            try:
                res = self.call(f"network.create_{kind}", lambda: create(**attrs), recover=recover)
            except ProviderError as exc:
                if not (tagged and "'tags' not allowed" in str(exc)):
                    raise
                # The extension is announced but the POST refuses tags (seen on Neutron 29
                # with the tag plugin not loaded for it): stamp after creating, from now on.
                self._tag_on_create = False
                attrs.pop("tags")
                res = self.call(f"network.create_{kind}", lambda: create(**attrs), recover=recover)
        except ConflictError as exc:
            # Rules: Neutron refuses a duplicate (and names it). If it is our rule, it is done.
            found = recover()
            if found is not None:
                return found
            raise ConflictError(f"{exc} (wanted {dict(params)})", call=exc.call) from None
        # SDK resources are dicts too: tell them from a record ``recover`` found by their type.
        record = self._record(kind, res) if isinstance(res, Resource) else res
        if marker is not None and record.get("provenance") != marker:
            # No tag-creation extension: stamp right after; a crash in between leaves an
            # untagged copy that ``find`` still matches by name.
            record = self.update(kind, str(record["id"]), {"provenance": marker})
        return record

    def _create_interface(
        self, params: Mapping[str, Any], recover: Callable[[], Record | None]
    ) -> Record:
        router, subnet = str(params["router"]), str(params["subnet"])
        try:
            self.call(
                "network.add_interface_to_router",
                lambda: self.conn.network.add_interface_to_router(router, subnet=subnet),
                recover=lambda: None if recover() is None else {},
            )
        except ProviderError:
            # "Router already has a port on subnet" (a lost response, or a second run).
            found = recover()
            if found is not None:
                return found
            raise
        found = recover()
        if found is None:
            raise ProviderError(
                f"{self.label}: interface {router}:{subnet} was added but is not listed",
                call="network.add_interface_to_router",
            )
        return found

    def _create_keypair(
        self, params: Mapping[str, Any], recover: Callable[[], Record | None]
    ) -> Record:
        attrs = rec.to_sdk("keypair", params)

        def same_key() -> Record | None:
            found = recover()
            if found is not None and found["public_key"] != str(params["public_key"]).strip():
                raise ConflictError(
                    f"{self.label}: keypair {params['name']!r} exists with another public key",
                    call="compute.create_keypair",
                )
            return found

        try:
            kp = self.call(
                "compute.create_keypair",
                lambda: self.conn.compute.create_keypair(**attrs),
                recover=same_key,
            )
        except ConflictError:
            found = same_key()
            if found is None:
                raise
            return found
        return rec.keypair_record(kp) if isinstance(kp, Resource) else kp

    def update(self, kind: str, id: str, changes: Mapping[str, Any]) -> Record:
        self._check_kind(kind)
        changes = dict(changes)
        stamp = "provenance" in changes
        marker = changes.pop("provenance", None)
        if kind in ("router_interface", "security_group_rule", "keypair"):
            if changes:
                raise ProviderError(
                    f"{self.label}: {kind} {id} cannot change in place "
                    f"({', '.join(sorted(changes))}): it must be replaced",
                    call=f"update {kind}",
                )
            current = self.get(kind, id)
            if current is None:
                raise NotFoundError(f"{self.label}: {kind} {id} not found", call=f"update {kind}")
            return current  # no marker on these kinds: nothing to stamp
        attrs = rec.to_sdk(kind, changes)
        if kind == "router" and "external_network" in changes:
            ext = changes["external_network"]
            attrs["external_gateway_info"] = (
                {"network_id": self._external_id(str(ext))} if ext else {}
            )
        net = self.conn.network
        if attrs:
            res = self.call(
                f"network.update_{kind}", lambda: getattr(net, f"update_{kind}")(id, **attrs)
            )
        else:
            res = self.call(f"network.get_{kind}", lambda: getattr(net, f"get_{kind}")(id))
        if stamp:
            tags = rec.retag(res.tags, marker)
            if sorted(res.tags or []) != tags:
                # set_tags replaces the whole list: other tags were read just above and kept.
                self.call(f"network.set_tags({kind})", lambda: net.set_tags(res, tags))
                # The PUT answers with the tags only: re-read for revision and timestamps.
                res = self.call(f"network.get_{kind}", lambda: getattr(net, f"get_{kind}")(id))
        return self._record(kind, res)

    def delete(self, kind: str, id: str) -> None:
        self._check_kind(kind)
        net = self.conn.network
        try:
            if kind == "router_interface":
                router, subnet = rec.split_interface_id(id)
                self.call(
                    "network.remove_interface_from_router",
                    lambda: net.remove_interface_from_router(router, subnet=subnet),
                )
            elif kind == "keypair":
                self.call(
                    "compute.delete_keypair",
                    lambda: self.conn.compute.delete_keypair(id, ignore_missing=False),
                )
            else:
                remove = getattr(net, f"delete_{kind}")
                self.call(f"network.delete_{kind}", lambda: remove(id, ignore_missing=False))
        except NotFoundError:
            return  # already gone: the goal of a delete is met
        # Neutron and Nova delete synchronously; nothing to wait for.

    # -- helpers ---------------------------------------------------------------------------
    def _check_kind(self, kind: str) -> None:
        if kind not in KINDS:
            raise ProviderError(
                f"{self.label}: the OpenStack provider does not handle {kind!r}", call=kind
            )
