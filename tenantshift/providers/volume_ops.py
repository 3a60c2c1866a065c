"""The verbs a workload migration needs beyond CRUD: attach, detach, wait, mark.

A provider that can move volumes offers them as its ``volume_ops`` attribute (``None`` when it
cannot, e.g. a snapshot file). Every verb is idempotent and returns when the cloud has settled:
attaching what is attached, detaching what is not, deleting what is gone are not errors, so a
resumed or repeated step is harmless.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

#: Cinder metadata key on a destination volume whose data was copied and verified; its value
#: is the copy's digest. Without it the volume is a migration that has not finished.
MIGRATED_KEY = "tenantshift-migrated"


@runtime_checkable
class VolumeOps(Protocol):
    def server_id(self, name_or_id: str) -> str:
        """The id of a server of the project (a conversion host), by id or unique name."""
        ...

    def server_status(self, name_or_id: str) -> str:
        """That server's current status (``ACTIVE``, ``SHUTOFF``...), read now."""
        ...

    def volume(self, volume_id: str) -> dict[str, Any] | None:
        """``{"id", "status", "size", "attached_to": [server ids], "metadata", ...}`` or None."""
        ...

    def attach(self, server_id: str, volume_id: str) -> None:
        """Attach and wait until the volume is ``in-use`` by ``server_id``."""
        ...

    def detach(self, server_id: str, volume_id: str) -> None:
        """Detach and wait until the volume no longer lists ``server_id``."""
        ...

    def set_metadata(self, volume_id: str, metadata: dict[str, str]) -> None:
        """Add or overwrite these metadata keys (others are kept)."""
        ...

    def delete_volume(self, volume_id: str) -> None:
        """Delete and wait until gone."""
        ...
