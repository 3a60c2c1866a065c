"""``VolumeOps`` over openstacksdk: Nova for servers and attachments, Cinder for volumes and
snapshots, Glance for server images; every wait polls outside the per-call retry budget."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from tenantshift.providers.base import NotFoundError, ProviderError
from tenantshift.providers.openstack.kinds.base import Wait
from tenantshift.providers.openstack.kinds.volume import image_metadata
from tenantshift.providers.openstack.records import METADATA_KEY
from tenantshift.providers.volume_ops import TEMPORARY_KEY

if TYPE_CHECKING:
    from tenantshift.providers.openstack.provider import OpenStackProvider


class OpenStackVolumeOps:
    def __init__(self, provider: OpenStackProvider, wait: Wait | None = None) -> None:
        self.provider = provider
        self.wait = wait or Wait(timeout=600.0, interval=1.0)
        self._servers: dict[str, str] = {}

    @property
    def _call(self) -> Any:
        return self.provider.call

    def server_id(self, name_or_id: str) -> str:
        if name_or_id not in self._servers:
            compute = self.provider.conn.compute
            server = self._call(
                "compute.find_server",
                lambda: compute.find_server(name_or_id, ignore_missing=True),
            )
            if server is None:
                raise NotFoundError(
                    f"{self.provider.label}: no server {name_or_id!r} (a conversion host)",
                    call="compute.find_server",
                )
            self._servers[name_or_id] = str(server.id)
        return self._servers[name_or_id]

    def server_status(self, name_or_id: str) -> str:
        compute = self.provider.conn.compute
        server_id = self.server_id(name_or_id)
        server = self._call("compute.get_server", lambda: compute.get_server(server_id))
        return str(server.status)

    def server(self, server_id: str) -> dict[str, Any] | None:
        compute = self.provider.conn.compute
        try:
            res = self._call("compute.get_server", lambda: compute.get_server(server_id))
        except NotFoundError:
            return None
        attachments = self._call(
            "compute.volume_attachments", lambda: list(compute.volume_attachments(server_id))
        )
        image = res.image or {}
        return {
            "id": str(res.id),
            "status": str(res.status),
            "image_id": (image.get("id") if isinstance(image, dict) else None) or None,
            "flavor": dict(res.flavor or {}),
            "volumes": sorted(
                ({"volume_id": str(a.volume_id), "device": a.device} for a in attachments),
                key=lambda a: str(a["device"] or ""),
            ),
            "metadata": dict(res.metadata or {}),
        }

    def stop_server(self, server_id: str) -> None:
        compute = self.provider.conn.compute
        server = self._call("compute.get_server", lambda: compute.get_server(server_id))
        if server.status != "SHUTOFF":
            self._call("compute.stop_server", lambda: compute.stop_server(server_id))
        self._wait_server(server_id, "SHUTOFF")

    def start_server(self, server_id: str) -> None:
        compute = self.provider.conn.compute
        server = self._call("compute.get_server", lambda: compute.get_server(server_id))
        if server.status != "ACTIVE":
            self._call("compute.start_server", lambda: compute.start_server(server_id))
        self._wait_server(server_id, "ACTIVE")

    def create_server_image(self, server_id: str, name: str) -> str:
        compute, image = self.provider.conn.compute, self.provider.conn.image
        made = self._call(
            "compute.create_server_image",
            # Marked temporary, so a plan taken meanwhile never migrates it as an image.
            lambda: compute.create_server_image(
                server_id, name, metadata={TEMPORARY_KEY: "true"}, wait=False
            ),
        )
        image_id = str(getattr(made, "id", made))
        self._poll(
            lambda: str(self._call("image.get_image", lambda: image.get_image(image_id)).status),
            "active",
            f"image {image_id}",
        )
        return image_id

    def find_server_by_marker(self, source_id: str) -> dict[str, Any] | None:
        compute = self.provider.conn.compute
        for server in self._call("compute.servers", lambda: list(compute.servers(details=True))):
            if (server.metadata or {}).get(METADATA_KEY) == source_id:
                return self.server(str(server.id))
        return None

    def create_server(self, spec: dict[str, Any]) -> str:
        compute = self.provider.conn.compute
        server = self._call("compute.create_server", lambda: compute.create_server(**spec))
        self._wait_server(str(server.id), "ACTIVE")
        return str(server.id)

    def set_server_metadata(self, server_id: str, metadata: dict[str, str]) -> None:
        compute = self.provider.conn.compute
        self._call(
            "compute.set_server_metadata",
            lambda: compute.set_server_metadata(server_id, **metadata),
        )

    def flavor_id(self, name: str) -> str:
        compute = self.provider.conn.compute
        flavor = self._call(
            "compute.find_flavor", lambda: compute.find_flavor(name, ignore_missing=True)
        )
        if flavor is None:
            raise NotFoundError(
                f"{self.provider.label}: no flavor {name!r} (map it with map.flavors)",
                call="compute.find_flavor",
            )
        return str(flavor.id)

    def headroom(self) -> dict[str, int]:
        compute, bs = self.provider.conn.compute, self.provider.conn.block_storage
        left: dict[str, int] = {}
        try:
            limits = self._call("compute.get_limits", lambda: compute.get_limits()).absolute
            for name, limit, used in (
                ("instances", "instances", "instances_used"),
                ("cores", "total_cores", "total_cores_used"),
                ("ram", "total_ram", "total_ram_used"),
            ):
                _left(left, name, getattr(limits, limit, None), getattr(limits, used, None))
        except ProviderError:
            pass  # not readable with these credentials: unknown, not zero
        try:
            project = self.provider.project_id
            quota = self._call(
                "block_storage.get_quota_set", lambda: bs.get_quota_set(project, usage=True)
            )
            usage = dict(quota.usage or {})
            for name in ("volumes", "gigabytes", "snapshots"):
                _left(left, name, getattr(quota, name, None), usage.get(name))
        except ProviderError:
            pass
        return left

    def volume(self, volume_id: str) -> dict[str, Any] | None:
        bs = self.provider.conn.block_storage
        try:
            res = self._call("block_storage.get_volume", lambda: bs.get_volume(volume_id))
        except NotFoundError:
            return None
        return {
            "id": str(res.id),
            "name": res.name,
            "description": res.description or "",
            "volume_type": res.volume_type,
            "availability_zone": res.availability_zone,
            "is_bootable": bool(res.is_bootable),
            "status": str(res.status),
            "size": int(res.size),
            "attached_to": sorted(str(a.get("server_id")) for a in res.attachments or []),
            "metadata": dict(res.metadata or {}),
            "image_metadata": image_metadata(res),
            "updated_at": res.updated_at,
        }

    def attach(self, server_id: str, volume_id: str, device: str | None = None) -> None:
        current = self._existing(volume_id)
        if server_id not in current["attached_to"]:
            compute = self.provider.conn.compute
            where = {"device": device} if device else {}
            try:
                self._call(
                    "compute.create_volume_attachment",
                    lambda: compute.create_volume_attachment(
                        server_id, volume_id=volume_id, **where
                    ),
                )
            except ProviderError:
                # A lost response of an earlier attempt: attached after all is success.
                if server_id not in self._existing(volume_id)["attached_to"]:
                    raise
        self._until(
            volume_id,
            lambda v: v["status"] == "in-use" and server_id in v["attached_to"],
            f"attached to {server_id}",
        )

    def detach(self, server_id: str, volume_id: str) -> None:
        current = self.volume(volume_id)
        if current is None:
            return
        if server_id in current["attached_to"]:
            compute = self.provider.conn.compute
            with contextlib.suppress(NotFoundError):  # detached meanwhile
                self._call(
                    "compute.delete_volume_attachment",
                    lambda: compute.delete_volume_attachment(server_id, volume_id),
                )
        self._until(
            volume_id,
            lambda v: server_id not in v["attached_to"] and v["status"] != "detaching",
            f"detached from {server_id}",
        )

    def set_metadata(self, volume_id: str, metadata: dict[str, str]) -> None:
        bs = self.provider.conn.block_storage
        self._call(
            "block_storage.set_volume_metadata",
            lambda: bs.set_volume_metadata(volume_id, **metadata),
        )

    def delete_volume(self, volume_id: str) -> None:
        self.provider.delete("volume", volume_id)

    def create_snapshot(self, volume_id: str, name: str) -> str:
        bs = self.provider.conn.block_storage
        snap = self._call(
            "block_storage.create_snapshot",
            lambda: bs.create_snapshot(volume_id=volume_id, name=name, force=True),
        )
        self._poll(
            lambda: str(
                self._call("block_storage.get_snapshot", lambda: bs.get_snapshot(snap.id)).status
            ),
            "available",
            f"snapshot {snap.id}",
        )
        return str(snap.id)

    def create_volume_from(
        self, name: str, size: int, *, snapshot_id: str | None = None, image_id: str | None = None
    ) -> str:
        bs = self.provider.conn.block_storage
        origin = {"snapshot_id": snapshot_id} if snapshot_id else {"image_id": image_id}
        volume = self._call(
            "block_storage.create_volume",
            lambda: bs.create_volume(
                name=name, size=size, metadata={TEMPORARY_KEY: "true"}, **origin
            ),
        )
        self._until(str(volume.id), lambda v: v["status"] == "available", "available")
        return str(volume.id)

    def delete_snapshot(self, snapshot_id: str) -> None:
        bs = self.provider.conn.block_storage
        try:
            self._call(
                "block_storage.delete_snapshot",
                lambda: bs.delete_snapshot(snapshot_id, ignore_missing=False),
            )
        except NotFoundError:
            return

        def status() -> str:
            try:
                return str(
                    self._call(
                        "block_storage.get_snapshot", lambda: bs.get_snapshot(snapshot_id)
                    ).status
                )
            except NotFoundError:
                return "deleted"

        self._poll(status, "deleted", f"snapshot {snapshot_id}")

    def delete_image(self, image_id: str) -> None:
        image = self.provider.conn.image
        self._call("image.delete_image", lambda: image.delete_image(image_id, ignore_missing=True))

    def find_volume(self, name: str) -> str | None:
        bs = self.provider.conn.block_storage
        found = self._call("block_storage.volumes(name)", lambda: list(bs.volumes(name=name)))
        return str(found[0].id) if found else None

    def find_snapshot(self, name: str) -> str | None:
        bs = self.provider.conn.block_storage
        found = self._call("block_storage.snapshots(name)", lambda: list(bs.snapshots(name=name)))
        return str(found[0].id) if found else None

    def find_image(self, name: str) -> str | None:
        image = self.provider.conn.image
        found = self._call("image.images(name)", lambda: list(image.images(name=name)))
        return str(found[0].id) if found else None

    # -- helpers ------------------------------------------------------------------------------
    def _existing(self, volume_id: str) -> dict[str, Any]:
        found = self.volume(volume_id)
        if found is None:
            raise NotFoundError(
                f"{self.provider.label}: volume {volume_id} not found", call="get volume"
            )
        return found

    def _wait_server(self, server_id: str, status: str) -> None:
        compute = self.provider.conn.compute
        self._poll(
            lambda: str(
                self._call("compute.get_server", lambda: compute.get_server(server_id)).status
            ),
            status,
            f"server {server_id}",
        )

    def _poll(self, read: Any, wanted: str, what: str) -> None:
        """Poll ``read()`` until it says ``wanted``; an error status or the timeout raises."""
        deadline = time.monotonic() + self.wait.timeout
        while True:
            current = read()
            if current.lower() == wanted.lower():
                return
            if current.lower() in ("error", "killed", "error_deleting"):
                raise ProviderError(
                    f"{self.provider.label}: {what} went to {current} waiting for {wanted}",
                    call=f"wait {what}",
                )
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"{self.provider.label}: {what} still {current} after "
                    f"{self.wait.timeout:g}s waiting for {wanted}",
                    call=f"wait {what}",
                    retryable=True,
                )
            time.sleep(self.wait.interval)

    def _until(self, volume_id: str, done: Any, what: str) -> None:
        deadline = time.monotonic() + self.wait.timeout
        while True:
            current = self.volume(volume_id)
            if current is None or done(current):
                return
            if current["status"].startswith("error"):
                raise ProviderError(
                    f"{self.provider.label}: volume {volume_id} went to {current['status']} "
                    f"while waiting to be {what}",
                    call="wait volume",
                )
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"{self.provider.label}: volume {volume_id} not {what} after "
                    f"{self.wait.timeout:g}s (status {current['status']})",
                    call="wait volume",
                    retryable=True,
                )
            time.sleep(self.wait.interval)


def _left(out: dict[str, int], name: str, limit: Any, used: Any) -> None:
    if limit is None or int(limit) < 0:  # -1: unlimited
        return
    out[name] = max(0, int(limit) - int(used or 0))
