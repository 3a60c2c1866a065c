"""The verbs a workload migration needs beyond CRUD: attach, detach, snapshot, boot, wait, mark.

A provider that can move workloads offers them as its ``volume_ops`` attribute (``None`` when it
cannot, e.g. a snapshot file). Every verb returns when the cloud has settled and is idempotent
where it can be: attaching what is attached, detaching what is not, deleting what is gone are
not errors, so a resumed or repeated step is harmless. Temporaries are created under unique
names, so one whose id was never journaled (a crash in between) is still found.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

#: Metadata key on a destination volume or server whose data was copied and verified (its value
#: is the copy's digest). Without it the copy is a migration that has not finished.
MIGRATED_KEY = "tenantshift-migrated"

#: Metadata key on a temporary volume made at the source to read a disk: never migrated itself.
TEMPORARY_KEY = "tenantshift-temporary"


@runtime_checkable
class VolumeOps(Protocol):
    # -- servers --------------------------------------------------------------------------------
    def server_id(self, name_or_id: str) -> str:
        """The id of a server of the project (a conversion host), by id or unique name."""
        ...

    def server_status(self, name_or_id: str) -> str:
        """That server's current status (``ACTIVE``, ``SHUTOFF``...), read now."""
        ...

    def server(self, server_id: str) -> dict[str, Any] | None:
        """``{"id", "status", "image_id", "flavor": {"disk", ...}, "volumes": [{"volume_id",
        "device"}], "metadata"}`` (volumes in attachment order), or None when gone."""
        ...

    def stop_server(self, server_id: str) -> None:
        """Stop and wait for SHUTOFF (a stopped server is left alone)."""
        ...

    def start_server(self, server_id: str) -> None:
        """Start and wait for ACTIVE (a running server is left alone)."""
        ...

    def create_server_image(self, server_id: str, name: str) -> str:
        """Snapshot an image-booted server's root disk; wait until the image is active."""
        ...

    def find_server_by_marker(self, source_id: str) -> dict[str, Any] | None:
        """The server carrying our provenance marker for ``source_id``."""
        ...

    def create_server(self, spec: dict[str, Any]) -> str:
        """Boot from the volumes in ``spec`` (name, flavor, ports, block devices, key, AZ,
        metadata) and wait for ACTIVE; returns the id."""
        ...

    def set_server_metadata(self, server_id: str, metadata: dict[str, str]) -> None: ...

    def flavor_id(self, name: str) -> str:
        """The id of a flavor visible to the project, by name."""
        ...

    def headroom(self) -> dict[str, int]:
        """How many more the project's quotas allow: ``instances``, ``cores``, ``ram`` (MiB),
        ``volumes``, ``gigabytes``, ``snapshots``; unlimited or unreadable ones are absent."""
        ...

    # -- volumes --------------------------------------------------------------------------------
    def volume(self, volume_id: str) -> dict[str, Any] | None:
        """``{"id", "status", "size", "attached_to": [server ids], "metadata", ...}`` or None."""
        ...

    def attach(self, server_id: str, volume_id: str, device: str | None = None) -> None:
        """Attach (at ``device`` when given) and wait until ``in-use`` by ``server_id``."""
        ...

    def detach(self, server_id: str, volume_id: str) -> None:
        """Detach and wait until the volume no longer lists ``server_id``."""
        ...

    def set_metadata(self, volume_id: str, metadata: dict[str, str]) -> None:
        """Add or overwrite these metadata keys (others are kept)."""
        ...

    def create_snapshot(self, volume_id: str, name: str) -> str:
        """Snapshot a volume (in use or not) and wait until available."""
        ...

    def create_volume_from(
        self, name: str, size: int, *, snapshot_id: str | None = None, image_id: str | None = None
    ) -> str:
        """A temporary volume from a snapshot or an image, waited until available."""
        ...

    def delete_volume(self, volume_id: str) -> None: ...

    def delete_snapshot(self, snapshot_id: str) -> None: ...

    def delete_image(self, image_id: str) -> None: ...

    def find_volume(self, name: str) -> str | None: ...

    def find_snapshot(self, name: str) -> str | None: ...

    def find_image(self, name: str) -> str | None: ...
