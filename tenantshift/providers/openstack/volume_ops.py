"""``VolumeOps`` over openstacksdk: attach and detach through Nova, wait on Cinder's status."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from tenantshift.providers.base import NotFoundError, ProviderError
from tenantshift.providers.openstack.kinds.base import Wait

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

    def volume(self, volume_id: str) -> dict[str, Any] | None:
        bs = self.provider.conn.block_storage
        try:
            res = self._call("block_storage.get_volume", lambda: bs.get_volume(volume_id))
        except NotFoundError:
            return None
        return {
            "id": str(res.id),
            "status": str(res.status),
            "size": int(res.size),
            "attached_to": sorted(str(a.get("server_id")) for a in res.attachments or []),
            "metadata": dict(res.metadata or {}),
            "updated_at": res.updated_at,
        }

    def attach(self, server_id: str, volume_id: str) -> None:
        current = self._existing(volume_id)
        if server_id not in current["attached_to"]:
            compute = self.provider.conn.compute
            try:
                self._call(
                    "compute.create_volume_attachment",
                    lambda: compute.create_volume_attachment(server_id, volume_id=volume_id),
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

    # -- helpers ------------------------------------------------------------------------------
    def _existing(self, volume_id: str) -> dict[str, Any]:
        found = self.volume(volume_id)
        if found is None:
            raise NotFoundError(
                f"{self.provider.label}: volume {volume_id} not found", call="get volume"
            )
        return found

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
