"""Cinder volumes: asynchronous creates and deletes, provenance in metadata, grow-only size.

Our own metadata keys (``tenantshift-*``: the source marker, the "data verified" digest) are
kept out of the record's ``metadata`` field, so they never show as a difference to migrate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping
from typing import Any

from tenantshift.providers.base import NotFoundError, ProviderError
from tenantshift.providers.openstack.kinds.base import (
    GONE,
    KindHandler,
    MetadataProvenance,
    Names,
    ProviderContext,
    QuotaSource,
    Records,
    Recover,
    SdkObject,
    SdkObjects,
    Usage,
    Wait,
    poll,
    register_handler,
)
from tenantshift.providers.workload import MIGRATED_KEY, SYNC_KEY, TEMPORARY_KEY
from tenantshift.resources import Record

#: Metadata keys that are ours, not the user's.
OWN_PREFIX = "tenantshift-"


def _read_cinder_quota(
    ctx: ProviderContext, project: str, attrs: Collection[str]
) -> dict[str, Usage]:
    quota = ctx.call(
        "block_storage.get_quota_set(usage)",
        lambda: ctx.conn.block_storage.get_quota_set(project, usage=True),
    )
    usage = getattr(quota, "usage", None) or {}
    reservation = getattr(quota, "reservation", None) or {}
    out: dict[str, Usage] = {}
    for attr in attrs:
        limit = getattr(quota, attr, None)
        if limit is None:
            continue
        out[attr] = Usage(
            limit=int(limit),
            used=int(usage.get(attr) or 0),
            reserved=int(reservation.get(attr) or 0),
        )
    return out


CINDER_QUOTA = QuotaSource("cinder", _read_cinder_quota)


def user_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (metadata or {}).items() if not k.startswith(OWN_PREFIX)}


def image_metadata(res: SdkObject) -> dict[str, str]:
    # Cinder copies an image's properties here, ours too (a server migration's temporary server
    # image is marked ``tenantshift-temporary``): they are not the user's and never migrate.
    found = getattr(res, "volume_image_metadata", None) or {}
    return {str(k): str(v) for k, v in found.items() if not str(k).startswith(OWN_PREFIX)}


@register_handler
class VolumeHandler(KindHandler):
    kind = "volume"
    provenance_store = MetadataProvenance()
    quota_source = CINDER_QUOTA
    quota_attr = "volumes"
    drop_none = frozenset({"volume_type", "availability_zone", "name"})
    #: Cinder takes the bootable flag and the image metadata through actions on a volume that
    #: exists: ``create`` sends them with a follow-up ``update``.
    handled_fields = frozenset({"is_bootable", "image_metadata"})
    create_wait = Wait(timeout=900.0)
    delete_wait = Wait(timeout=600.0)
    #: Attachments, snapshots and temporary volumes of a workload migration.
    verb_wait = Wait(timeout=600.0, interval=1.0)

    def list(self, project_id: str) -> SdkObjects:
        # Non-admin credentials list exactly their project's volumes.
        return list(self.ctx.conn.block_storage.volumes(details=True))

    def to_record(self, res: SdkObject) -> Record:
        assert self.provenance_store is not None
        metadata = dict(res.metadata or {})
        return {
            "id": res.id,
            "name": res.name or None,
            "description": res.description or "",
            "size": res.size,
            "volume_type": res.volume_type,
            "availability_zone": res.availability_zone,
            "is_bootable": bool(res.is_bootable),
            "metadata": user_metadata(metadata),
            "image_metadata": image_metadata(res),
            **self.provenance_store.fields(res),
            "migrated": metadata.get(MIGRATED_KEY),
            "synced": metadata.get(SYNC_KEY),
            "temporary": TEMPORARY_KEY in metadata,
            "status": res.status,
            "attached_to": sorted(str(a.get("server_id")) for a in res.attachments or []),
            "created_at": res.created_at,
            "updated_at": res.updated_at,
        }

    def fetch(self, id: str) -> SdkObject:
        bs = self.ctx.conn.block_storage
        return self.ctx.call("block_storage.get_volume", lambda: bs.get_volume(id))

    def candidates(self, source_id: str | None, params: Mapping[str, Any]) -> Records:
        # By marker only: a same-named volume without it holds other data, and adopting it
        # would skip the copy. One listing, filtered here (Cinder's metadata filter is an
        # optional, per-deployment setting).
        if source_id is None:
            return []
        listed = self.ctx.call("block_storage.volumes", lambda: self.list(self.ctx.project_id))
        return [r for r in map(self.to_record, listed) if r.get("provenance") == source_id]

    def create_call(self, attrs: dict[str, Any], recover: Recover) -> SdkObject | Record:
        bs = self.ctx.conn.block_storage
        return self.ctx.call(
            "block_storage.create_volume", lambda: bs.create_volume(**attrs), recover=recover
        )

    def create(self, params: Mapping[str, Any], marker: str | None, recover: Recover) -> Record:
        record = super().create(params, marker, recover)
        follow_up = {k: params[k] for k in self.handled_fields if params.get(k) != record.get(k)}
        if follow_up:
            record = self.update(str(record["id"]), follow_up)
        return record

    def update_call(self, id: str, attrs: dict[str, Any]) -> SdkObject:
        bs = self.ctx.conn.block_storage
        call = self.ctx.call
        res = self.fetch_or_missing(id, "update")
        if "size" in attrs and attrs["size"] != res.size:
            if attrs["size"] < res.size:
                raise self._refuse(id, "size cannot shrink")
            call("block_storage.extend_volume", lambda: bs.extend_volume(res, attrs["size"]))
            res = self.wait_for_status(self.fetch(id), "available", wait=self.create_wait or Wait())
        fields = {k: attrs[k] for k in ("name", "description") if k in attrs}
        if fields:
            call("block_storage.update_volume", lambda: bs.update_volume(res, **fields))
        if "metadata" in attrs:
            wanted = user_metadata(attrs["metadata"])
            have = user_metadata(res.metadata)
            gone = sorted(set(have) - set(wanted))
            if wanted != {k: have.get(k) for k in wanted}:
                call(
                    "block_storage.set_volume_metadata",
                    lambda: bs.set_volume_metadata(res, **wanted),
                )
            if gone:
                call(
                    "block_storage.delete_volume_metadata",
                    lambda: bs.delete_volume_metadata(res, keys=gone),
                )
        if "is_bootable" in attrs:
            bootable = bool(attrs["is_bootable"])
            call(
                "block_storage.set_volume_bootable_status",
                lambda: bs.set_volume_bootable_status(res, bootable),
            )
        if "image_metadata" in attrs:
            self._set_image_metadata(res, dict(attrs["image_metadata"] or {}))
        return self.fetch(id)

    def _set_image_metadata(self, res: SdkObject, wanted: dict[str, str]) -> None:
        bs = self.ctx.conn.block_storage
        have = image_metadata(res)
        if any(have.get(k) != v for k, v in wanted.items()):
            self.ctx.call(
                "block_storage.set_volume_image_metadata",
                lambda: bs.set_volume_image_metadata(res, **wanted),
            )
        gone = sorted(set(have) - set(wanted))
        if gone:
            self.ctx.call(
                "block_storage.delete_volume_image_metadata",
                lambda: bs.delete_volume_image_metadata(res, keys=gone),
            )

    def request_extras(self, params: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        # Actions on an existing volume: ``update_call`` sends them, and ``create`` calls
        # ``update`` for them once the volume is available.
        if creating:
            return {}
        return {k: params[k] for k in self.handled_fields if k in params}

    def delete_call(self, id: str) -> None:
        bs = self.ctx.conn.block_storage
        self.ctx.call(
            "block_storage.delete_volume", lambda: bs.delete_volume(id, ignore_missing=False)
        )

    # -- metadata provenance -----------------------------------------------------------------
    def write_metadata(self, res: SdkObject, metadata: dict[str, str]) -> None:
        bs = self.ctx.conn.block_storage
        self.ctx.call(
            "block_storage.set_volume_metadata", lambda: bs.set_volume_metadata(res, **metadata)
        )

    def delete_metadata(self, res: SdkObject, keys: Names) -> None:
        bs = self.ctx.conn.block_storage
        self.ctx.call(
            "block_storage.delete_volume_metadata",
            lambda: bs.delete_volume_metadata(res, keys=keys),
        )

    # -- workload verbs (``providers.workload.VolumeVerbs``) --------------------------------
    def attach(self, server_id: str, volume_id: str, device: str | None = None) -> None:
        if server_id not in self._existing(volume_id)["attached_to"]:
            compute = self.ctx.conn.compute
            where = {"device": device} if device else {}
            try:
                self.ctx.call(
                    "compute.create_volume_attachment",
                    lambda: compute.create_volume_attachment(
                        server_id, volume_id=volume_id, **where
                    ),
                )
            except ProviderError:
                # A lost response of an earlier attempt: attached after all is success.
                if server_id not in self._existing(volume_id)["attached_to"]:
                    raise
        self.wait_until(
            volume_id,
            lambda v: v["status"] == "in-use" and server_id in v["attached_to"],
            f"attached to {server_id}",
            wait=self.verb_wait,
        )

    def detach(self, server_id: str, volume_id: str) -> None:
        current = self.get(volume_id)
        if current is None:
            return
        if server_id in current["attached_to"]:
            compute = self.ctx.conn.compute
            with contextlib.suppress(NotFoundError):  # detached meanwhile
                self.ctx.call(
                    "compute.delete_volume_attachment",
                    lambda: compute.delete_volume_attachment(server_id, volume_id),
                )
        self.wait_until(
            volume_id,
            lambda v: server_id not in v["attached_to"] and v["status"] != "detaching",
            f"detached from {server_id}",
            wait=self.verb_wait,
        )

    def set_metadata(self, volume_id: str, metadata: dict[str, str]) -> None:
        bs = self.ctx.conn.block_storage
        self.ctx.call(
            "block_storage.set_volume_metadata",
            lambda: bs.set_volume_metadata(volume_id, **metadata),
        )

    def snapshot(self, volume_id: str, name: str) -> str:
        bs = self.ctx.conn.block_storage
        snap = self.ctx.call(
            "block_storage.create_snapshot",
            lambda: bs.create_snapshot(volume_id=volume_id, name=name, force=True),
        )
        self._wait_snapshot(str(snap.id), "available")
        return str(snap.id)

    def snapshot_status(self, snapshot_id: str) -> str | None:
        bs = self.ctx.conn.block_storage
        try:
            snap = self.ctx.call("block_storage.get_snapshot", lambda: bs.get_snapshot(snapshot_id))
        except NotFoundError:
            return None
        return str(snap.status)

    def snapshot_ready(self, snapshot_id: str) -> str:
        if self.snapshot_status(snapshot_id) is None:
            raise NotFoundError(f"{self.ctx.label}: no snapshot {snapshot_id}", call="get snapshot")
        self._wait_snapshot(snapshot_id, "available")
        bs = self.ctx.conn.block_storage
        snap = self.ctx.call("block_storage.get_snapshot", lambda: bs.get_snapshot(snapshot_id))
        return str(snap.volume_id)

    def delete_snapshot(self, snapshot_id: str) -> None:
        bs = self.ctx.conn.block_storage
        try:
            self.ctx.call(
                "block_storage.delete_snapshot",
                lambda: bs.delete_snapshot(snapshot_id, ignore_missing=False),
            )
        except NotFoundError:
            return
        self._wait_snapshot(snapshot_id, GONE)

    def find_snapshot(self, name: str) -> str | None:
        bs = self.ctx.conn.block_storage
        found = self.ctx.call(
            "block_storage.snapshots(name)", lambda: list(bs.snapshots(name=name))
        )
        return str(found[0].id) if found else None

    def create_temporary(
        self, name: str, size: int, *, snapshot_id: str | None = None, image_id: str | None = None
    ) -> str:
        bs = self.ctx.conn.block_storage
        origin = {"snapshot_id": snapshot_id} if snapshot_id else {"image_id": image_id}
        volume = self.ctx.call(
            "block_storage.create_volume",
            lambda: bs.create_volume(
                name=name, size=size, metadata={TEMPORARY_KEY: "true"}, **origin
            ),
        )
        self.wait_until(
            str(volume.id), lambda v: v["status"] == "available", "available", wait=self.verb_wait
        )
        return str(volume.id)

    def find_named(self, name: str) -> str | None:
        bs = self.ctx.conn.block_storage
        found = self.ctx.call("block_storage.volumes(name)", lambda: list(bs.volumes(name=name)))
        return str(found[0].id) if found else None

    def _existing(self, volume_id: str) -> Record:
        found = self.get(volume_id)
        if found is None:
            raise NotFoundError(
                f"{self.ctx.label}: volume {volume_id} not found", call="get volume"
            )
        return found

    def _wait_snapshot(self, snapshot_id: str, wanted: str) -> None:
        poll(
            lambda: self.snapshot_status(snapshot_id) or GONE,
            wanted,
            f"snapshot {snapshot_id}",
            self.verb_wait,
            self.ctx.label,
            frozenset({"error", "error_deleting"}),
        )

    def _refuse(self, id: str, why: str) -> Exception:
        return ProviderError(f"{self.ctx.label}: volume {id}: {why}", call="update volume")
