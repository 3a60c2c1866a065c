"""The memory cloud's workload verbs: volumes with bytes, attachments, snapshots, servers that
stop and start, server images, Glance data. A fast test double, never the proof a feature works.

They behave like Cinder, Nova and Glance where a migration's logic depends on it: a volume is
``in-use`` while attached, a snapshot and a volume made from it hold the bytes of the moment it
was taken, a server boots only from bootable copies, a server image of an image-booted server
holds its root disk, an image's hashes are Glance's. Every verb is one counted cloud call
(``tenantshift.faults``), so a test can kill a migration between any two of them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from tenantshift.providers.base import NotFoundError, ProviderError
from tenantshift.providers.workload import MIGRATED_KEY, SYNC_KEY, WorkloadVerbs
from tenantshift.resources import Record


class MemoryData:
    """What the memory cloud stores beyond records: bytes, devices, snapshots, flavors."""

    def __init__(self) -> None:
        #: Volume id -> its bytes.
        self.blocks: dict[str, bytes] = {}
        #: Image id -> its bytes.
        self.images: dict[str, bytes] = {}
        #: (server id, volume id) -> the device the volume is attached at.
        self.devices: dict[tuple[str, str], str] = {}
        #: Snapshot id -> {"name", "volume_id", "status", "data"}.
        self.snapshots: dict[str, dict[str, Any]] = {}
        #: Flavor name -> {"id", "vcpus", "ram", "disk"}.
        self.flavors: dict[str, dict[str, Any]] = {
            "m1.tiny": {"id": "f-tiny", "vcpus": 1, "ram": 512, "disk": 1},
            "m1.small": {"id": "f-small", "vcpus": 1, "ram": 2048, "disk": 20},
        }


class MemoryCloud(Protocol):
    """What the verbs use of the memory cloud (``MemoryProvider``)."""

    label: str
    data: MemoryData
    headroom_left: dict[str, int]

    def records_of(self, kind: str) -> dict[str, Record]: ...

    def insert(
        self, kind: str, params: dict[str, Any], provenance: str | None = None
    ) -> Record: ...

    def call(
        self, operation: str, kind: str, params: Mapping[str, Any]
    ) -> AbstractContextManager[None]: ...

    def get(self, kind: str, id: str) -> Record | None: ...

    def delete(self, kind: str, id: str) -> None: ...


def image_hashes(data: bytes) -> dict[str, Any]:
    return {
        "size": len(data),
        "checksum": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "os_hash_algo": "sha512",
        "os_hash_value": hashlib.sha512(data).hexdigest(),
    }


class _Verbs:
    def __init__(self, cloud: MemoryCloud) -> None:
        self.cloud = cloud
        self.data = cloud.data

    def _record(self, kind: str, id: str) -> Record:
        record = self.cloud.records_of(kind).get(id)
        if record is None:
            raise NotFoundError(f"{self.cloud.label}: {kind} {id} not found", call=f"get {kind}")
        return record


class MemoryVolumes(_Verbs):
    def get(self, id: str) -> Record | None:
        return self.cloud.get("volume", id)

    def delete(self, id: str) -> None:
        self.cloud.delete("volume", id)

    def attach(self, server_id: str, volume_id: str, device: str | None = None) -> None:
        with self.cloud.call("attach", "volume", {"server": server_id, "volume": volume_id}):
            volume = self._record("volume", volume_id)
            self._record("server", server_id)
            if server_id in volume["attached_to"]:
                return
            if volume["attached_to"] or volume["status"] != "available":
                raise ProviderError(
                    f"409 Conflict: volume {volume_id} is {volume['status']}",
                    call="compute.create_volume_attachment",
                )
            taken = {d for (s, _), d in self.data.devices.items() if s == server_id}
            device = device or next(
                f"/dev/vd{c}" for c in "bcdefghijklmnopqrstuvwxyz" if f"/dev/vd{c}" not in taken
            )
            self.data.devices[(server_id, volume_id)] = device
            volume["attached_to"] = [server_id]
            volume["status"] = "in-use"

    def detach(self, server_id: str, volume_id: str) -> None:
        with self.cloud.call("detach", "volume", {"server": server_id, "volume": volume_id}):
            volume = self.cloud.records_of("volume").get(volume_id)
            if volume is None or server_id not in volume["attached_to"]:
                return
            self.data.devices.pop((server_id, volume_id), None)
            volume["attached_to"] = []
            volume["status"] = "available"

    def set_metadata(self, volume_id: str, metadata: dict[str, str]) -> None:
        with self.cloud.call("set_metadata", "volume", metadata):
            volume = self._record("volume", volume_id)
            if MIGRATED_KEY in metadata:
                volume["migrated"] = metadata[MIGRATED_KEY]
            if SYNC_KEY in metadata:
                volume["synced"] = metadata[SYNC_KEY]
            user = {k: v for k, v in metadata.items() if not k.startswith("tenantshift-")}
            volume["metadata"] = {**(volume.get("metadata") or {}), **user}

    def snapshot(self, volume_id: str, name: str) -> str:
        with self.cloud.call("snapshot", "volume", {"volume": volume_id}):
            self._record("volume", volume_id)
            snapshot_id = str(uuid.uuid4())
            self.data.snapshots[snapshot_id] = {
                "name": name,
                "volume_id": volume_id,
                "status": "available",
                "data": self.data.blocks.get(volume_id, b""),
            }
            return snapshot_id

    def snapshot_status(self, snapshot_id: str) -> str | None:
        with self.cloud.call("get_snapshot", "volume", {}):
            found = self.data.snapshots.get(snapshot_id)
            return str(found["status"]) if found else None

    def snapshot_ready(self, snapshot_id: str) -> str:
        with self.cloud.call("get_snapshot", "volume", {}):
            found = self.data.snapshots.get(snapshot_id)
            if found is None:
                raise NotFoundError(f"snapshot {snapshot_id} not found", call="get snapshot")
            return str(found["volume_id"])

    def delete_snapshot(self, snapshot_id: str) -> None:
        with self.cloud.call("delete_snapshot", "volume", {}):
            self.data.snapshots.pop(snapshot_id, None)

    def find_snapshot(self, name: str) -> str | None:
        with self.cloud.call("find_snapshot", "volume", {}):
            return next((i for i, s in self.data.snapshots.items() if s["name"] == name), None)

    def create_temporary(
        self, name: str, size: int, *, snapshot_id: str | None = None, image_id: str | None = None
    ) -> str:
        with self.cloud.call("create_temporary", "volume", {"name": name}):
            if snapshot_id is not None:
                if snapshot_id not in self.data.snapshots:
                    raise NotFoundError(f"snapshot {snapshot_id} not found", call="create volume")
                data, image_metadata = self.data.snapshots[snapshot_id]["data"], {}
            else:
                image = self._record("image", str(image_id))
                data = self.data.images.get(str(image_id), b"")
                image_metadata = dict(image.get("properties") or {})
            record = self.cloud.insert(
                "volume", {"name": name, "size": size, "image_metadata": image_metadata}
            )
            record.update(status="available", attached_to=[], temporary=True, migrated=None)
            record["updated_at"] = record["created_at"]
            self.data.blocks[record["id"]] = data
            return str(record["id"])

    def find_named(self, name: str) -> str | None:
        with self.cloud.call("find_named", "volume", {}):
            found = [v for v in self.cloud.records_of("volume").values() if v["name"] == name]
            return str(found[0]["id"]) if found else None


class MemoryServers(_Verbs):
    def id_of(self, name_or_id: str) -> str:
        with self.cloud.call("find", "server", {}):
            servers = self.cloud.records_of("server")
            if name_or_id in servers:
                return name_or_id
            found = [s for s in servers.values() if s["name"] == name_or_id]
            if len(found) != 1:
                raise NotFoundError(
                    f"{self.cloud.label}: no server {name_or_id!r} (a conversion host)",
                    call="compute.find_server",
                )
            return str(found[0]["id"])

    def status(self, name_or_id: str) -> str:
        server_id = self.id_of(name_or_id)
        with self.cloud.call("get", "server", {}):
            return str(self._record("server", server_id)["status"])

    def disks(self, server_id: str) -> dict[str, Any] | None:
        with self.cloud.call("disks", "server", {}):
            server = self.cloud.records_of("server").get(server_id)
            if server is None:
                return None
            volumes = sorted(
                (
                    {"volume_id": v, "device": d}
                    for (s, v), d in self.data.devices.items()
                    if s == server_id
                ),
                key=lambda a: a["device"],
            )
            return {
                "id": server_id,
                "status": server["status"],
                "image_id": server.get("image_id"),
                "root_gb": int(server.get("root_gb") or 1),
                "volumes": volumes,
            }

    def stop(self, server_id: str) -> None:
        with self.cloud.call("stop", "server", {}):
            self._record("server", server_id)["status"] = "SHUTOFF"

    def start(self, server_id: str) -> None:
        with self.cloud.call("start", "server", {}):
            self._record("server", server_id)["status"] = "ACTIVE"

    def create_image(self, server_id: str, name: str) -> str:
        with self.cloud.call("create_image", "server", {"name": name}):
            server = self._record("server", server_id)
            base = self.cloud.records_of("image").get(str(server.get("image_id")))
            data = self.data.blocks.get(f"root:{server_id}", b"")
            properties = dict((base or {}).get("properties") or {})
            if not server.get("image_id"):
                # As Nova: a volume-backed server's image is a snapshot of each of its volumes,
                # named after the image, listed in its block device mapping.
                mapping = []
                for index, volume_id in enumerate(server.get("volumes") or []):
                    snapshot_id = str(uuid.uuid4())
                    self.data.snapshots[snapshot_id] = {
                        "name": f"snapshot for {name}",
                        "volume_id": volume_id,
                        "status": "available",
                        "data": self.data.blocks.get(volume_id, b""),
                    }
                    mapping.append(
                        {"source_type": "snapshot", "snapshot_id": snapshot_id, "boot_index": index}
                    )
                properties["block_device_mapping"] = json.dumps(mapping)
            record = self.cloud.insert(
                "image",
                {
                    "name": name,
                    "disk_format": "qcow2",
                    "container_format": "bare",
                    "properties": properties,
                },
            )
            record.update(status="active", temporary=True, migrated=None, **image_hashes(data))
            self.data.images[record["id"]] = data
            return str(record["id"])

    def find_marked(self, marker: str) -> str | None:
        with self.cloud.call("find_marked", "server", {}):
            found = [
                s for s in self.cloud.records_of("server").values() if s["provenance"] == marker
            ]
            return str(found[0]["id"]) if found else None

    def boot(self, spec: dict[str, Any]) -> str:
        with self.cloud.call("boot", "server", spec):
            flavor = next(
                (f for f, d in self.data.flavors.items() if d["id"] == spec["flavor_id"]), None
            )
            devices = list(spec.get("block_device_mapping") or [])
            volumes = self.cloud.records_of("volume")
            for device in devices:
                volume = volumes.get(device["uuid"])
                if volume is None:
                    raise ProviderError(f"HTTP 400: volume {device['uuid']} not found", call="boot")
                if device["boot_index"] == 0 and not volume["is_bootable"]:
                    raise ProviderError(
                        f"HTTP 400: Block Device {device['uuid']} is not bootable.",
                        call="compute.create_server",
                    )
                if volume["attached_to"]:
                    raise ProviderError(f"HTTP 400: volume {device['uuid']} is in use", call="boot")
            networks = spec.get("networks")
            ports = [n["port"] for n in networks] if isinstance(networks, list) else []
            metadata = dict(spec.get("metadata") or {})
            marker = metadata.pop("tenantshift-src", None)
            record = self.cloud.insert(
                "server",
                {
                    "name": spec.get("name"),
                    "flavor": flavor,
                    "availability_zone": spec.get("availability_zone"),
                    "keypair": self._keypair_id(spec.get("key_name")),
                    "ports": ports,
                    "metadata": metadata,
                },
                provenance=marker,
            )
            record.update(status="ACTIVE", image_id=None, migrated=None)
            for index, device in enumerate(devices):
                volume = volumes[device["uuid"]]
                volume.update(attached_to=[record["id"]], status="in-use")
                self.data.devices[(record["id"], volume["id"])] = f"/dev/vd{'abcdefgh'[index]}"
            return str(record["id"])

    def set_metadata(self, server_id: str, metadata: dict[str, str]) -> None:
        with self.cloud.call("set_metadata", "server", metadata):
            server = self._record("server", server_id)
            if MIGRATED_KEY in metadata:
                server["migrated"] = metadata[MIGRATED_KEY]

    def flavor_id(self, name: str) -> str:
        with self.cloud.call("find_flavor", "server", {}):
            if name not in self.data.flavors:
                raise NotFoundError(f"{self.cloud.label}: no flavor {name!r}", call="find_flavor")
            return str(self.data.flavors[name]["id"])

    def _keypair_id(self, name: str | None) -> str | None:
        if name is None:
            return None
        found = [k for k in self.cloud.records_of("keypair").values() if k["name"] == name]
        return str(found[0]["id"]) if found else None


class MemoryImages(_Verbs):
    def get(self, id: str) -> Record | None:
        return self.cloud.get("image", id)

    def marked(self, marker: str) -> list[Record]:
        with self.cloud.call("marked", "image", {}):
            images = self.cloud.records_of("image").values()
            return [copy.deepcopy(r) for r in images if r["provenance"] == marker]

    def discard(self, image_id: str) -> None:
        with self.cloud.call("discard", "image", {}):
            self.cloud.records_of("image").pop(image_id, None)
            self.data.images.pop(image_id, None)

    def find_named(self, name: str) -> str | None:
        with self.cloud.call("find_named", "image", {}):
            found = [i for i in self.cloud.records_of("image").values() if i["name"] == name]
            return str(found[0]["id"]) if found else None

    @contextmanager
    def read_data(self, image_id: str, chunk_size: int) -> Iterator[Iterator[bytes]]:
        with self.cloud.call("download", "image", {}):
            data = self.data.images.get(image_id, b"")
        yield iter([data[i : i + chunk_size] for i in range(0, len(data), chunk_size)])

    def write_data(self, image_id: str, chunks: Iterable[bytes]) -> None:
        with self.cloud.call("upload", "image", {}):
            image = self._record("image", image_id)
            if image["status"] != "queued":
                raise ProviderError(f"409 Conflict: image {image_id} is {image['status']}")
            image["status"] = "saving"
            data = b"".join(chunks)
            self.data.images[image_id] = data
            image.update(status="active", **image_hashes(data))

    def set_properties(self, image_id: str, properties: dict[str, str]) -> None:
        with self.cloud.call("set_properties", "image", properties):
            image = self._record("image", image_id)
            if MIGRATED_KEY in properties:
                image["migrated"] = properties[MIGRATED_KEY]
            user = {k: v for k, v in properties.items() if not k.startswith("tenantshift-")}
            image["properties"] = {**(image.get("properties") or {}), **user}


def memory_workloads(cloud: MemoryCloud) -> WorkloadVerbs:
    def headroom() -> dict[str, int]:
        with cloud.call("headroom", "quota", {}):
            return dict(cloud.headroom_left)

    return WorkloadVerbs(
        volume=MemoryVolumes(cloud),
        server=MemoryServers(cloud),
        image=MemoryImages(cloud),
        headroom=headroom,
    )
