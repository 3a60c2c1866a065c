"""The verbs a workload migration needs beyond CRUD, declared per kind.

As openstacksdk puts ``attach``/``detach`` on its ``Volume`` and ``stop``/``create_image`` on its
``Server``, each workload kind's verbs live on that kind's handler: the OpenStack provider's
``VolumeHandler``, ``ServerHandler`` and ``ImageHandler`` implement the protocols below, and so
do the memory provider's fakes (``memory_workloads.py``), which is what lets every phase and
every kill point of a migration run in the unit suite. A provider that can move workloads
offers them as ``workloads`` (a ``WorkloadVerbs``); one that cannot (a snapshot file) has
``workloads = None``.

Every verb returns when the cloud has settled, and is idempotent where it can be: attaching
what is attached, detaching what is not, deleting what is gone are not errors, so a resumed or
repeated step is harmless. Temporaries are created under unique names, so one whose id was
never journaled (a crash in between) is still found.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from tenantshift.resources import Record

#: Metadata key on a destination volume or server whose data was copied and verified (its value
#: is the copy's digest). Without it the copy is a migration that has not finished.
MIGRATED_KEY = "tenantshift-migrated"

#: Metadata key on a temporary volume made at the source to read a disk: never migrated itself.
TEMPORARY_KEY = "tenantshift-temporary"

#: Metadata key on a destination volume a warm migration synced: ``<generation> <time>
#: <digest>`` (the record's ``synced``). The digest is the next sync's delta base.
SYNC_KEY = "tenantshift-synced"


def image_snapshot_ids(image: Record | None) -> list[str]:
    """The volume snapshots a server image refers to: Nova's image of a volume-backed server
    is only a block device mapping (property ``block_device_mapping``, JSON) of snapshots it
    made of each volume. Deleting the image leaves them; whoever deletes it deletes them."""
    raw = ((image or {}).get("properties") or {}).get("block_device_mapping")
    try:
        mapping = json.loads(raw) if isinstance(raw, str) else []
    except ValueError:
        return []
    return [
        str(entry["snapshot_id"])
        for entry in mapping
        if isinstance(mapping, list)
        if isinstance(entry, dict) and entry.get("snapshot_id")
    ]


def parse_sync_mark(value: object) -> dict[str, Any] | None:
    """A ``SYNC_KEY`` value as ``generation``, ``at``, ``digest`` (None: not synced, or a
    value we did not write, which then counts as no sync: the next copy is a full one)."""
    parts = str(value).split(" ") if isinstance(value, str) else []
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    return {"generation": int(parts[0]), "at": parts[1], "digest": parts[2]}


class VolumeVerbs(Protocol):
    def get(self, id: str) -> Record | None:
        """The volume's record (``status``, ``size``, ``is_bootable``, ``image_metadata``,
        ``attached_to``: server ids, ``provenance``, ``migrated``, ``synced``, ``updated_at``,
        ...)."""
        ...

    def delete(self, id: str) -> None:
        """Delete and wait until gone (gone already is done)."""
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

    def snapshot(self, volume_id: str, name: str) -> str:
        """Snapshot a volume (in use or not) and wait until the snapshot is available."""
        ...

    def snapshot_status(self, snapshot_id: str) -> str | None:
        """A snapshot's status, None when it is gone."""
        ...

    def snapshot_ready(self, snapshot_id: str) -> str:
        """Wait until a snapshot another service made (Nova's server image of a volume-backed
        server) is available; returns the id of the volume it was taken of."""
        ...

    def delete_snapshot(self, snapshot_id: str) -> None: ...

    def find_snapshot(self, name: str) -> str | None: ...

    def create_temporary(
        self, name: str, size: int, *, snapshot_id: str | None = None, image_id: str | None = None
    ) -> str:
        """A temporary volume from a snapshot or an image, marked temporary, waited until
        available."""
        ...

    def find_named(self, name: str) -> str | None:
        """A volume of the project by its (unique, temporary) name."""
        ...


class ServerVerbs(Protocol):
    def id_of(self, name_or_id: str) -> str:
        """The id of a server of the project (a conversion host), by id or unique name."""
        ...

    def status(self, name_or_id: str) -> str:
        """That server's current status (``ACTIVE``, ``SHUTOFF``...), read now."""
        ...

    def disks(self, server_id: str) -> dict[str, Any] | None:
        """``{"id", "status", "image_id", "root_gb", "volumes": [{"volume_id", "device"}]}``
        (volumes in device order), or None when the server is gone."""
        ...

    def stop(self, server_id: str) -> None:
        """Stop and wait for SHUTOFF (a stopped server is left alone)."""
        ...

    def start(self, server_id: str) -> None:
        """Start and wait for ACTIVE (a running server is left alone)."""
        ...

    def create_image(self, server_id: str, name: str) -> str:
        """Snapshot an image-booted server's root disk, marked temporary; wait until active."""
        ...

    def find_marked(self, marker: str) -> str | None:
        """The id of the server carrying our provenance marker ``marker``."""
        ...

    def boot(self, spec: dict[str, Any]) -> str:
        """Boot from the volumes in ``spec`` (name, flavor, ports, block devices, key, AZ,
        metadata with the marker) and wait for ACTIVE; returns the id."""
        ...

    def set_metadata(self, server_id: str, metadata: dict[str, str]) -> None: ...

    def flavor_id(self, name: str) -> str:
        """The id of a flavor visible to the project, by name."""
        ...


class ImageVerbs(Protocol):
    def get(self, id: str) -> Record | None:
        """The image's record (``status``, ``size``, ``checksum``, ``os_hash_algo``,
        ``os_hash_value``, ``provenance``, ``migrated``, ``protected``...)."""
        ...

    def marked(self, marker: str) -> list[Record]:
        """Every image of the project carrying this provenance marker (one listing)."""
        ...

    def discard(self, image_id: str) -> None:
        """Delete an image, unprotecting it first; one that is gone already is done."""
        ...

    def find_named(self, name: str) -> str | None: ...

    def read_data(self, image_id: str, chunk_size: int) -> AbstractContextManager[Iterator[bytes]]:
        """The image's data in chunks of at most ``chunk_size`` bytes, streamed."""
        ...

    def write_data(self, image_id: str, chunks: Iterable[bytes]) -> None:
        """Upload ``chunks`` as the data of a queued image, streamed (one attempt: a stream
        cannot be sent twice); returns once Glance has stored and hashed it."""
        ...

    def set_properties(self, image_id: str, properties: dict[str, str]) -> None:
        """Add or overwrite these properties (others are kept)."""
        ...


@dataclass(frozen=True)
class WorkloadVerbs:
    """What a provider offers workload migrations: each workload kind's verbs, and the
    project's headroom for the plan's quota check."""

    volume: VolumeVerbs
    server: ServerVerbs
    image: ImageVerbs
    #: How many more the quotas allow: ``instances``, ``cores``, ``ram`` (MiB), ``volumes``,
    #: ``gigabytes``, ``snapshots``; unlimited or unreadable ones are absent.
    headroom: Callable[[], dict[str, int]]
