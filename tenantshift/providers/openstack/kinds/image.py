"""Glance images: the project's own, read and written as Glance's JSON documents.

Glance v2 keeps an image's user properties (``hw_disk_bus``, ``os_distro``...) as top-level
string members beside its core attributes. openstacksdk's ``Image`` spreads them over typed
attributes (``hw_cpu_cores`` becomes an int) and a ``properties`` rest, so this handler reads
the JSON as Glance sends it and writes with Glance's own JSON patch: what is compared is exactly
what Glance stores, and a property can be removed as well as set.

Our marker (``tenantshift-src``), the "data verified" digest (``tenantshift-migrated``) and the
temporary flag of a server migration's images are properties too; they never show in the
record's ``properties``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from openstack import exceptions as sdk_exc

from tenantshift import faults
from tenantshift.providers.base import ProviderError
from tenantshift.providers.openstack import records as rec
from tenantshift.providers.openstack.connection import classify, to_provider_error
from tenantshift.providers.openstack.kinds.base import (
    KindHandler,
    MetadataProvenance,
    Names,
    Records,
    Recover,
    SdkObject,
    SdkObjects,
    register_handler,
)
from tenantshift.providers.workload import MIGRATED_KEY, TEMPORARY_KEY
from tenantshift.resources import Record
from tenantshift.resources.image import TEMPORARY_NAME

#: Properties that are ours, not the user's.
OWN_PREFIX = "tenantshift-"

#: Glance's own attributes: everything else in an image document is a user property.
CORE = frozenset(
    {
        "id", "name", "status", "visibility", "protected", "os_hidden", "checksum",
        "os_hash_algo", "os_hash_value", "owner", "size", "virtual_size", "min_ram", "min_disk",
        "created_at", "updated_at", "tags", "self", "file", "schema", "disk_format",
        "container_format", "direct_url", "locations", "stores",
    }
)  # fmt: skip
#: Reserved namespace: Glance sets these itself and refuses them in a request.
RESERVED_PREFIX = "os_glance_"

#: Record field -> Glance attribute, for the core fields a request may carry.
ATTRIBUTES = {
    "name": "name",
    "disk_format": "disk_format",
    "container_format": "container_format",
    "min_disk": "min_disk",
    "min_ram": "min_ram",
    "visibility": "visibility",
    "protected": "protected",
    "hidden": "os_hidden",
    "tags": "tags",
}

OCTETS = {"Content-Type": "application/octet-stream"}
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
#: JSON patch operations (an alias: ``list`` is shadowed inside a handler class).
Patch = list[dict[str, Any]]


def user_properties(doc: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(k): str(v)
        for k, v in doc.items()
        if k not in CORE and not k.startswith(RESERVED_PREFIX) and not k.startswith(OWN_PREFIX)
    }


def image_record(doc: Mapping[str, Any], markers: list[str]) -> Record:
    name = doc.get("name") or None
    return {
        "id": doc["id"],
        "name": name,
        "disk_format": doc.get("disk_format"),
        "container_format": doc.get("container_format"),
        "min_disk": int(doc.get("min_disk") or 0),
        "min_ram": int(doc.get("min_ram") or 0),
        "visibility": doc.get("visibility"),
        "protected": bool(doc.get("protected")),
        "hidden": bool(doc.get("os_hidden")),
        "tags": sorted(doc.get("tags") or []),
        "properties": user_properties(doc),
        **rec.provenance_fields(markers),
        "migrated": doc.get(MIGRATED_KEY),
        "temporary": TEMPORARY_KEY in doc or bool(TEMPORARY_NAME.fullmatch(str(name or ""))),
        "status": doc.get("status"),
        "size": doc.get("size"),
        "checksum": doc.get("checksum"),
        "os_hash_algo": doc.get("os_hash_algo"),
        "os_hash_value": doc.get("os_hash_value"),
        "owner": doc.get("owner"),
        "created_at": doc.get("created_at"),
        "updated_at": doc.get("updated_at"),
    }


def pointer(name: str) -> str:
    """A JSON pointer to a top-level member (RFC 6901 escapes)."""
    return "/" + name.replace("~", "~0").replace("/", "~1")


class GlanceProperties(MetadataProvenance):
    """``tenantshift-src: <marker>`` among the image's properties (Glance's raw JSON, where
    properties are top-level members), set in the create request."""

    def markers(self, res: SdkObject) -> list[str]:
        value = res.get(self.key)
        return [str(value)] if value else []

    def create_attrs(
        self, handler: KindHandler, source_id: str | None, labels: Names | None
    ) -> dict[str, Any]:
        return {"properties": {self.key: source_id}} if source_id is not None else {}


@register_handler
class ImageHandler(KindHandler):
    kind = "image"
    provenance_store = GlanceProperties()
    drop_none = frozenset({"name", "disk_format", "container_format"})

    # -- raw Glance calls ---------------------------------------------------------------------
    def _request(self, call: str, method: str, url: str, **kwargs: Any) -> Any:
        image = self.ctx.conn.image

        def send() -> Any:
            response = image.request(url, method, **kwargs)
            sdk_exc.raise_from_response(response)
            return response.json() if response.content else None

        return self.ctx.call(call, send)

    def documents(self, **query: str) -> Iterator[dict[str, Any]]:
        """Every image document the listing returns, following Glance's ``next`` links."""
        params: dict[str, Any] = {"limit": 500, **query}
        while True:
            body = self._request("image.images", "GET", "/images", params=params)
            yield from body.get("images") or []
            following = body.get("next")
            if not following:
                return
            # ``next`` is rooted at the API (``/v2/images?...``): keep only its query.
            params = {k: v[-1] for k, v in parse_qs(urlsplit(following).query).items()}

    # -- reading ------------------------------------------------------------------------------
    def list(self, project_id: str) -> SdkObjects:
        # The project's own images only: another project's public or shared image is not the
        # tenant's to migrate. Glance leaves hidden images (``os_hidden``) out of a listing
        # unless asked for them alone: two paginated listings, still one pair per snapshot.
        return [
            *self.documents(owner=project_id),
            *self.documents(owner=project_id, os_hidden="true"),
        ]

    def to_record(self, res: SdkObject) -> Record:
        assert self.provenance_store is not None
        return image_record(res, self.provenance_store.markers(res))

    def fetch(self, id: str) -> SdkObject:
        return self._request("image.get_image", "GET", f"/images/{id}")

    def candidates(self, source_id: str | None, params: Mapping[str, Any]) -> Records:
        # By marker only (a workload): a same-named image without it holds other bytes.
        if source_id is None:
            return []
        records = (self.to_record(d) for d in self.list(self.ctx.project_id))
        return [r for r in records if r.get("provenance") == source_id]

    # -- writing ------------------------------------------------------------------------------
    def create_call(self, attrs: dict[str, Any], recover: Recover) -> SdkObject | Record:
        body = {ATTRIBUTES.get(k, k): v for k, v in attrs.items() if k != "properties"}
        body.update(attrs.get("properties") or {})
        # Unprotected until its data is verified: a half-uploaded copy must stay deletable
        # (the migration sets ``protected`` as it marks the copy migrated).
        body["protected"] = False
        doc = self.ctx.call(
            "image.create_image",
            lambda: self._send("POST", "/images", json=body),
            recover=recover,
        )
        # A raw document links to itself; what ``recover`` found is a record already.
        return self.to_record(doc) if "self" in doc else doc

    def update_call(self, id: str, attrs: dict[str, Any]) -> SdkObject:
        have = self.fetch_or_missing(id, "update")
        ops: Patch = []
        for field, value in attrs.items():
            if field == "properties":
                ops += _property_ops(have, user_properties(have), dict(value or {}))
                continue
            name = ATTRIBUTES.get(field, field)
            if have.get(name) != value:
                ops.append({"op": "replace", "path": pointer(name), "value": value})
        if ops:
            self._patch(id, ops)
        return self.fetch(id)

    def delete_call(self, id: str) -> None:
        self._request("image.delete_image", "DELETE", f"/images/{id}")

    # -- properties (the provenance store's writes) -----------------------------------------
    def write_metadata(self, res: SdkObject, metadata: dict[str, str]) -> None:
        ops = _property_ops(res, {}, metadata, remove_missing=False)
        if ops:
            self._patch(str(res["id"]), ops)

    def delete_metadata(self, res: SdkObject, keys: Names) -> None:
        ops = [{"op": "remove", "path": pointer(k)} for k in keys if k in res]
        if ops:
            self._patch(str(res["id"]), ops)

    def _patch(self, id: str, ops: Patch) -> None:
        self._request("image.update_image", "PATCH", f"/images/{id}", json=ops, headers=PATCH)

    def _send(self, method: str, url: str, **kwargs: Any) -> Any:
        response = self.ctx.conn.image.request(url, method, **kwargs)
        sdk_exc.raise_from_response(response)
        return response.json()

    # -- workload verbs (``providers.workload.ImageVerbs``) ---------------------------------
    def marked(self, marker: str) -> Records:
        return self.candidates(marker, {})

    def discard(self, image_id: str) -> None:
        current = self.get(image_id)
        if current is None:
            return
        if current["protected"]:
            self.update(image_id, {"protected": False})
        self.delete(image_id)

    def find_named(self, name: str) -> str | None:
        body = self._request("image.images(name)", "GET", "/images", params={"name": name})
        found = body.get("images") or []
        return str(found[0]["id"]) if found else None

    @contextmanager
    def read_data(self, image_id: str, chunk_size: int) -> Iterator[Iterator[bytes]]:
        image = self.ctx.conn.image
        call = "image.download_image"

        def open_stream() -> Any:
            response = image.request(f"/images/{image_id}/file", "GET", stream=True)
            sdk_exc.raise_from_response(response)
            return response

        response = self.ctx.call(call, open_stream)
        try:
            yield self._chunks(response, chunk_size, call)
        finally:
            response.close()

    def _chunks(self, response: Any, chunk_size: int, call: str) -> Iterator[bytes]:
        try:
            yield from response.iter_content(chunk_size=chunk_size)
        except Exception as exc:  # a reset mid-stream: ours, not requests'
            raise to_provider_error(self.ctx.label, call, classify(exc), 1) from None

    def write_data(self, image_id: str, chunks: Iterable[bytes]) -> None:
        image = self.ctx.conn.image
        call = "image.upload_image"
        try:
            # A generator body goes out with chunked transfer encoding, a chunk at a time.
            # Not through ``ctx.call``: a stream cannot be sent twice.
            with faults.cloud_call(call):
                response = image.request(
                    f"/images/{image_id}/file", "PUT", data=iter(chunks), headers=OCTETS
                )
            sdk_exc.raise_from_response(response)
        except ProviderError:
            raise  # the source side of the stream failed: already ours
        except Exception as exc:
            raise to_provider_error(self.ctx.label, call, classify(exc), 1) from None

    def set_properties(self, image_id: str, properties: dict[str, str]) -> None:
        self.write_metadata(self.fetch_or_missing(image_id, "update"), properties)


def _property_ops(
    doc: Mapping[str, Any],
    have: Mapping[str, str],
    want: Mapping[str, str],
    *,
    remove_missing: bool = True,
) -> list[dict[str, Any]]:
    """JSON patch operations taking the image's properties ``have`` to ``want``."""
    ops: list[dict[str, Any]] = []
    for key, value in sorted(want.items()):
        if doc.get(key) != value:
            op = "replace" if key in doc else "add"
            ops.append({"op": op, "path": pointer(key), "value": str(value)})
    if remove_missing:
        ops += [{"op": "remove", "path": pointer(k)} for k in sorted(set(have) - set(want))]
    return ops
