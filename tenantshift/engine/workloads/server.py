"""A server: its disks copied between the conversion hosts, then booted in the destination.

Phases:

1. ``source_stopped``: the source server is SHUTOFF (stopped first when the manifest allows,
   and then started again when the source is restored).
2. ``source_disks``: a readable volume per disk, without touching the server's own data: the
   boot volume is snapshotted and a temporary volume made from the snapshot; an image-booted
   server's root disk becomes a server image and a temporary volume from it; data volumes are
   detached from the (stopped) server and read directly.
3. ``destination_volumes``: one destination volume per disk (same size, the mapped volume type,
   bootable flag, the source volume's name and metadata, our marker).
4. ``attached``: sources to the source conversion host, copies to the destination one.
5. ``copied``: each disk copied and verified.
6. ``source_restored``: everything undone at the source (and detached at the destination):
   attachments, temporary volumes, the snapshot or image; data volumes back on their server at
   the same device. (A cutover detaches only the copies here: the source side waits for
   ``source_released``, after the boot, so it is not part of the downtime.)
7. ``server``: the server booted from the copies, with its ports (fixed IPs kept), flavor,
   keypair, availability zone and metadata.
8. ``settled``: stopped again unless ``workloads.start_destination_servers``.
9. ``source_released`` (a cutover only): the source side restored as in phase 6.

Warm (``workloads.mode: warm``, ``Change.warm``): a **sync** runs phases 1-6 with the source
running: phase 1 only reads the server, phase 2 snapshots every volume (a data volume cannot
leave a running server), and phase 5 is a delta copy into the destination volumes an earlier
sync made (only chunks whose hash differs move); ``finish`` marks the destination volumes with
the sync's generation, time and digest, and nothing boots. A **cutover** is the cold sequence
with a delta copy, and the source server stays stopped once the destination one is booted
(if anything fails before, the cleanup starts it again).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tenantshift.engine.state.temporary import Temporary
from tenantshift.engine.workloads.adopt import destination_volume
from tenantshift.engine.workloads.base import Data, Migration, copied_line, copy_record
from tenantshift.engine.workloads.registry import (
    Cloud,
    Info,
    Needs,
    Sizes,
    WorkloadError,
    register_migration,
)
from tenantshift.engine.workloads.temporaries import clean_up
from tenantshift.manifest import Workloads
from tenantshift.plans import Change
from tenantshift.providers.workload import (
    MIGRATED_KEY,
    SYNC_KEY,
    image_snapshot_ids,
    parse_sync_mark,
)

#: Statuses of a server boot that is still under way (waited for, not replaced).
BOOTING = frozenset({"BUILD", "REBUILD"})
#: A sync mark's digest while a copy may be writing the volume: matches no index, so the
#: next delta rebuilds the index from what the volume holds.
DIRTY = "copying"


@register_migration
class ServerMigration(Migration):
    kind = "server"
    WARM = True
    MADE_IN = {
        Temporary.STOPPED: "source_stopped",
        Temporary.IMAGE: "source_disks",
        Temporary.SNAPSHOT: "source_disks",
        Temporary.VOLUME: "source_disks",
        Temporary.DETACHED: "source_disks",
        Temporary.ATTACHMENT: "attached",
    }
    PHASES = (
        "source_stopped",
        "source_disks",
        "destination_volumes",
        "attached",
        "copied",
        "source_restored",
        "server",
        "settled",
        "source_released",
    )

    # -- plan time ------------------------------------------------------------------------------
    @classmethod
    def needs(cls, change: Change, info: Info, sizes: Sizes) -> Needs:
        """Destination volumes, gigabytes, instances, cores and RAM; at the source, the
        temporaries that read its boot disk (a snapshot and a volume)."""
        if change.target_id is not None:
            return {}
        volumes = [str(v) for v in info.get("volumes") or []]
        root = cls._root_gb(info)
        disks = cls._disks(info, sizes)
        boot = root or (disks[0] if disks else 0)
        need = {
            ("destination", "instances"): 1 if change.warm != "sync" else 0,
            ("destination", "cores"): int(str(info.get("vcpus") or 0)),
            ("destination", "ram"): int(str(info.get("ram") or 0)),
            # What an earlier sync made is there already.
            ("destination", "volumes"): len(disks) - int(info.get("synced_volumes") or 0),
            ("destination", "gigabytes"): sum(disks) - int(info.get("synced_gb") or 0),
            ("source", "volumes"): 1 if boot else 0,
            ("source", "gigabytes"): boot,
        }
        if change.warm == "sync":
            # A running server's every volume is read through a snapshot and a volume.
            need.update({("destination", "cores"): 0, ("destination", "ram"): 0})
            need[("source", "volumes")] = len(disks)
            need[("source", "gigabytes")] = sum(disks)
            if volumes:
                need[("source", "snapshots")] = len(volumes)
        elif not root and volumes:
            need[("source", "snapshots")] = 1
        return need

    @classmethod
    def gib_to_move(cls, change: Change, info: Info, sizes: Sizes) -> int:
        return sum(cls._disks(info, sizes))

    @staticmethod
    def _root_gb(info: Info) -> int:
        return 0 if not info.get("image_id") else int(str(info.get("root_gb") or 1))

    @classmethod
    def _disks(cls, info: Info, sizes: Sizes) -> list[int]:
        """Each disk's size in GiB: its volumes, and an image-booted server's root disk."""
        root = cls._root_gb(info)
        volumes = [str(v) for v in info.get("volumes") or []]
        return [sizes.get(v, 0) for v in volumes] + ([root] if root else [])

    @classmethod
    def describe(cls, change: Change, info: Info) -> str:
        volumes = list(info.get("volumes") or [])
        sync = change.warm == "sync"
        disks = ["root disk via a server image"] if info.get("image_id") else []
        if disks and sync:
            disks[0] += " (each sync reads the whole disk at the source)"
        for index, _ in enumerate(volumes):
            boot = not info.get("image_id") and index == 0
            if sync and not info.get("image_id"):
                disks.append(f"{'boot' if boot else 'data'} volume via the server image")
            elif boot or sync:
                disks.append(f"{'boot' if boot else 'data'} volume via a snapshot")
            else:
                disks.append("a data volume, detached")
        copied = f"{len(disks)} disk(s): {', '.join(disks)}"
        if sync:
            return f"sync {copied}, the server running; no server is booted"
        ports = len((change.after or {}).get("ports") or [])
        return f"copy {copied}; boot with {ports} port(s)"

    @classmethod
    def source_problem(
        cls, info: Info, workloads: Workloads, warm: str | None = None
    ) -> str | None:
        status = info.get("status")
        if warm is not None:
            return None  # a sync reads snapshots of the running server; a cutover stops it
        if status not in (None, "SHUTOFF") and not workloads.stop_source_servers:
            return (
                f"the source server is {status}: migration is cold; stop it, or set "
                "workloads.stop_source_servers"
            )
        return None

    def phases(self) -> tuple[str, ...]:
        if self.change.warm == "sync":
            return self.PHASES[: self.PHASES.index("source_restored") + 1]
        if self.change.warm == "cutover":
            return self.PHASES
        return self.PHASES[: self.PHASES.index("settled") + 1]

    async def resume_point(self, done_phase: str, data: Data) -> str:
        """A cutover resumed before its boot goes on only if the source server is still
        stopped: one that runs again (the cleanup of a failed run started it) may have
        written since the final delta, so the cutover starts over."""
        if self.change.warm != "cutover" or not done_phase or self._done(done_phase, "server"):
            return done_phase
        status = await self.block(self.src.server.status, self.source_id)
        if status == "SHUTOFF":
            return done_phase
        self.step(f"the source server is {status} again: the cutover starts over")
        await clean_up(self.ctx, owner=self.node.id)
        for key in ("stopped_at", "timings"):
            data.pop(key, None)
        self.ctx.journal.advance(self.node.id, "", data)
        return ""

    # -- phases -----------------------------------------------------------------------------
    async def _source_stopped(self, data: Data) -> None:
        server = await self.block(self.src.server.disks, self.source_id)
        if server is None:
            raise WorkloadError(f"source server {self.source_id} is gone")
        if self.change.warm == "cutover":
            data.setdefault("stopped_at", time.time())  # the downtime starts here
        if server["status"] != "SHUTOFF" and self.change.warm != "sync":
            if not self.change.warm and not self.ctx.settings.workloads.stop_source_servers:
                raise WorkloadError(
                    f"source server is {server['status']}: stop it, or set "
                    "workloads.stop_source_servers"
                )
            # Journaled like any temporary: the source ends as it began, running again.
            seq = self.ctx.journal.intend_temporary(
                self.node.id,
                "source",
                Temporary.STOPPED,
                self.source_id,
                {"server_id": self.source_id},
            )
            await self.block(self.src.server.stop, self.source_id)
            self.ctx.journal.temporary_created(seq, self.source_id)
        data["volumes"] = server["volumes"]
        data["image_id"] = server["image_id"]
        data["root_gb"] = int(server["root_gb"])

    async def _source_disks(self, data: Data) -> None:
        await self.host_ids(data)
        disks: list[Data] = []
        volumes = list(data["volumes"])
        if data["image_id"]:
            disks.append(await self._root_from_image(data))
        # A running volume-backed server: every volume from one server image (Nova
        # snapshots them together, quiescing the guest where its agent allows).
        together = (
            await self._snapshots_together()
            if self.change.warm == "sync" and not data["image_id"]
            else {}
        )
        for index, attached in enumerate(volumes):
            boot = not data["image_id"] and index == 0
            volume = await self.block(self.src.volume.get, attached["volume_id"])
            if volume is None:
                raise WorkloadError(f"volume {attached['volume_id']} of the server is gone")
            disk: Data = {
                "role": "boot" if boot else "data",
                "source_volume": volume["id"],
                "device": attached["device"],
                "size": volume["size"],
                "name": volume["name"],
                "description": volume["description"],
                "volume_type": volume["volume_type"],
                "metadata": volume["metadata"],
                "image_metadata": volume["image_metadata"],
                "bootable": boot or volume["is_bootable"],
            }
            if volume["id"] in together:
                disk["copy_from"] = await self._volume_from(
                    together[volume["id"]], volume["id"], int(volume["size"])
                )
            elif boot or self.change.warm == "sync":
                # The boot volume cannot leave its server, nor any volume a running one: read
                # a snapshot of it instead.
                disk["copy_from"] = await self._from_snapshot(volume["id"], int(volume["size"]))
            else:
                await self._detach_from_server(volume["id"], attached["device"])
                disk["copy_from"] = volume["id"]
            disks.append(disk)
        data["disks"] = disks

    async def _destination_volumes(self, data: Data) -> None:
        mapping = self._volume_type_map()
        for disk in data["disks"]:
            marker = self.marker_for(disk["source_volume"] or f"{self.source_id}-root")
            params = {
                "name": disk["name"],
                "description": disk["description"],
                "size": disk["size"],
                "volume_type": mapping(disk["volume_type"]),
                "availability_zone": None,
                "is_bootable": disk["bootable"],
                "image_metadata": disk.get("image_metadata") or {},
                "metadata": {
                    k: v for k, v in disk["metadata"].items() if not k.startswith("tenantshift")
                },
            }
            disk["dst_volume"] = await destination_volume(self, params, marker, data["dst_host"])

    async def _attached(self, data: Data) -> None:
        # Nova attaches to one server one volume at a time; the two hosts are two servers (in
        # two clouds), so their attachments go side by side: part of a cutover's downtime.
        async def attach_all(cloud: Cloud, host: str, key: str) -> None:
            for disk in data["disks"]:
                await self.attach(cloud, host, disk[key])

        # Both lanes end before a failure is raised: nothing is left attaching behind it.
        outcomes = await asyncio.gather(
            attach_all("source", data["src_host"], "copy_from"),
            attach_all("destination", data["dst_host"], "dst_volume"),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _copied(self, data: Data) -> None:
        copies = []
        for disk in data["disks"]:
            await self.check_attached("source", data["src_host"], disk["copy_from"])
            await self.check_attached("destination", data["dst_host"], disk["dst_volume"])
            # What an earlier sync left in the destination volume: only what differs moves.
            mark = await self._sync_mark(disk["dst_volume"]) if self.change.warm else None
            disk["generation"] = (mark or {}).get("generation", 0)
            if mark is not None and mark["digest"] != DIRTY:
                # From now on the volume may hold anything between two syncs (a copy killed
                # on this pair, then resumed on another whose index still says the old digest):
                # until ``finish`` marks it again, no host's index is trusted for it.
                dirty = f"{mark['generation']} {mark['at']} {DIRTY}"
                await self.block(
                    self.dst.volume.set_metadata, disk["dst_volume"], {SYNC_KEY: dirty}
                )
            # A temporary volume made in this migration is its own generation.
            result = await self.copy(
                disk["copy_from"],
                disk["dst_volume"],
                disk["copy_from"],
                delta_base=(mark or {}).get("digest"),
                size_gib=int(disk["size"]),
            )
            copies.append(copy_record(disk["copy_from"], disk["dst_volume"], result))
        data["copies"] = copies

    async def _source_restored(self, data: Data) -> None:
        if self.change.warm == "cutover":
            # Downtime: only the copies' detachment stands between the final delta and the
            # boot. The source side (its host's attachments, the temporaries, the data volumes
            # back on the stopped server) is restored once the copy runs (``source_released``).
            await clean_up(self.ctx, owner=self.node.id, cloud="destination")
            return
        await clean_up(self.ctx, owner=self.node.id)

    async def _source_released(self, data: Data) -> None:
        """A cutover's source side, restored after the boot; the server stays stopped."""
        await clean_up(self.ctx, owner=self.node.id)

    async def _server(self, data: Data) -> None:
        server_id = await self._booted()
        if server_id is None:
            spec = await self._server_spec(data)
            server_id = await self.block(self.dst.server.boot, spec)
        self.ctx.ids.set(self.change.address, server_id)
        data["dst_server"] = server_id
        if self.change.warm == "cutover":
            data.setdefault("booted_at", time.time())  # the downtime ends here
            # From now on the source server stays stopped: its stop is no longer a temporary
            # that a cleanup would undo (two servers would run on the same data).
            journal = self.ctx.journal
            for row in journal.pending_temporaries(self.node.id):
                if row["kind"] == Temporary.STOPPED:
                    journal.temporary_cleaned(int(row["seq"]))

    async def _booted(self) -> str | None:
        """The server a killed run booted, checked: one that failed to boot (``ERROR``) is
        deleted, so its volumes are free for the boot that replaces it."""
        found = await self.block(self.dst.server.find_marked, self.marker)
        if found is None:
            return None
        status = await self.block(self.dst.server.status, found)
        if status in BOOTING or status in ("ACTIVE", "SHUTOFF"):
            return str(found)
        self.step(f"replacing the server {found}: it is {status}")
        await self.block(self.ctx.destination.delete, "server", str(found))
        return None

    async def _settled(self, data: Data) -> None:
        if not self.ctx.settings.workloads.start_destination_servers:
            await self.block(self.dst.server.stop, data["dst_server"])

    async def finish(self, data: Data) -> str:
        if self.change.warm == "sync":
            return await self._finish_sync(data)
        digest = hashlib.sha256(
            "".join(str(c["digest"]) for c in data["copies"]).encode()
        ).hexdigest()
        for copy in data["copies"]:
            await self.block(
                self.dst.volume.set_metadata,
                copy["destination"],
                {MIGRATED_KEY: str(copy["digest"])},
            )
        await self.block(self.dst.server.set_metadata, data["dst_server"], {MIGRATED_KEY: digest})
        line = f"booted as {data['dst_server']}: {copied_line(data['copies'])}"
        if self.change.warm == "cutover":
            line += self._finish_cutover(data)
        return line

    async def _finish_sync(self, data: Data) -> str:
        """Mark each destination volume with what it now holds (the next sync's delta base)
        and record the sync's figures."""
        generation = max(int(d.get("generation") or 0) for d in data["disks"]) + 1
        at = datetime.now(UTC).isoformat(timespec="seconds")
        for copy in data["copies"]:
            mark = f"{generation} {at} {copy['digest']}"
            await self.block(self.dst.volume.set_metadata, copy["destination"], {SYNC_KEY: mark})
        self._record("sync", generation, data)
        return f"synced (generation {generation}): {copied_line(data['copies'])}"

    def _finish_cutover(self, data: Data) -> str:
        """The cutover's downtime is recorded."""
        generation = max(int(d.get("generation") or 0) for d in data["disks"]) + 1
        downtime = self._record("cutover", generation, data)
        return f"; downtime {downtime:.1f} s, the source server stays stopped"

    def _record(self, phase: str, generation: int, data: Data) -> float:
        copies = data["copies"]
        done = self.ctx.journal.syncs(self.node.id)
        if done and (done[-1]["phase"], done[-1]["generation"]) == (phase, generation):
            return float(done[-1].get("downtime") or 0.0)  # recorded before a kill
        downtime = 0.0
        if phase == "cutover":
            downtime = float(data.get("booted_at", time.time())) - float(
                data.get("stopped_at", time.time())
            )
        self.ctx.journal.record_sync(
            self.node.id,
            {
                "phase": phase,
                "generation": generation,
                "read_bytes": sum(int(c.get("read_bytes") or 0) for c in copies),
                "data_bytes": sum(int(c["data_bytes"]) for c in copies),
                "wire_bytes": sum(int(c["wire_bytes"]) for c in copies),
                "copy_seconds": round(sum(float(c.get("seconds") or 0) for c in copies), 3),
                "timings": data.get("timings", {}),
                "downtime": round(downtime, 3) if phase == "cutover" else None,
                "finished": time.time(),
            },
        )
        return downtime

    async def _sync_mark(self, volume_id: str) -> dict[str, Any] | None:
        volume = await self.block(self.dst.volume.get, volume_id)
        return parse_sync_mark((volume or {}).get("synced"))

    # -- helpers ----------------------------------------------------------------------------
    async def _root_from_image(self, data: Data) -> Data:
        image = await self.temporary(
            Temporary.IMAGE,
            self._name("root", self.source_id),
            lambda name: self.src.server.create_image(self.source_id, name),
        )
        volume = await self.temporary(
            Temporary.VOLUME,
            self._name("rootvol", self.source_id),
            lambda name: self.src.volume.create_temporary(name, data["root_gb"], image_id=image),
        )
        # Cinder copied the server image's properties (hw_*, os_*) onto the volume made from it.
        made = await self.block(self.src.volume.get, volume)
        return {
            "role": "boot",
            "source_volume": None,
            "device": None,
            "size": data["root_gb"],
            "name": f"{(self.change.after or {}).get('name') or 'server'}-root",
            "description": f"root disk of server {self.source_id}",
            "volume_type": None,
            "metadata": {},
            "image_metadata": made["image_metadata"] if made else {},
            "bootable": True,
            "copy_from": volume,
        }

    async def _from_snapshot(self, volume_id: str, size: int) -> str:
        def snapshot(name: str) -> str:
            return self.src.volume.snapshot(volume_id, name)

        snapshot_id = await self.temporary(
            Temporary.SNAPSHOT, self._name("snap", volume_id), snapshot
        )
        return await self._volume_from(snapshot_id, volume_id, size)

    async def _volume_from(self, snapshot_id: str, volume_id: str, size: int) -> str:
        def volume(name: str) -> str:
            return self.src.volume.create_temporary(name, size, snapshot_id=snapshot_id)

        return await self.temporary(Temporary.VOLUME, self._name("boot", volume_id), volume)

    async def _snapshots_together(self) -> dict[str, str]:
        """Source volume -> its snapshot, all from one server image of the running server.
        The image and then each snapshot are journaled (the image's undo deletes snapshots a
        kill left unjournaled, since it names them)."""
        image = await self.temporary(
            Temporary.IMAGE,
            self._name("disks", self.source_id),
            lambda name: self.src.server.create_image(self.source_id, name),
        )
        record = await self.block(self.src.image.get, image)
        journal = self.ctx.journal
        known = {
            r["resource_id"]
            for r in journal.pending_temporaries(self.node.id)
            if r["kind"] == Temporary.SNAPSHOT
        }
        together: dict[str, str] = {}
        for snapshot_id in image_snapshot_ids(record):
            if snapshot_id not in known:
                seq = journal.intend_temporary(
                    self.node.id, "source", Temporary.SNAPSHOT, f"{snapshot_id}@{image}"
                )
                journal.temporary_created(seq, snapshot_id)
            together[await self.block(self.src.volume.snapshot_ready, snapshot_id)] = snapshot_id
        return together

    async def temporary(self, kind: Temporary, name: str, create: Callable[[str], str]) -> str:
        """Create a source temporary once: journaled before it exists, and on a resumed phase
        found again (by its journal row, else by its unique name) and checked, instead of made
        twice. One that is not usable (a snapshot or volume in ``error``, gone) is made again."""
        journal = self.ctx.journal
        seq: int | None = None
        known: str | None = None
        for row in journal.pending_temporaries(self.node.id):
            if row["kind"] == kind and row["name"] == name:
                seq, known = int(row["seq"]), row["resource_id"]
                break
        if seq is None:
            seq = journal.intend_temporary(self.node.id, "source", kind, name)
        found = known or await self.block(self._finder(kind), name)
        if found is not None and not await self._usable(kind, str(found)):
            self.step(f"replacing the temporary {kind} {found}")
            await self.block(self._deleter(kind), str(found))
            found = None
        resource_id = found if found is not None else await self.block(create, name)
        journal.temporary_created(seq, str(resource_id))
        return str(resource_id)

    def _finder(self, kind: Temporary) -> Callable[[str], str | None]:
        finders: dict[Temporary, Callable[[str], str | None]] = {
            Temporary.SNAPSHOT: self.src.volume.find_snapshot,
            Temporary.VOLUME: self.src.volume.find_named,
            Temporary.IMAGE: self.src.image.find_named,
        }
        return finders[kind]

    def _deleter(self, kind: Temporary) -> Callable[[str], None]:
        deleters: dict[Temporary, Callable[[str], None]] = {
            Temporary.SNAPSHOT: self.src.volume.delete_snapshot,
            Temporary.VOLUME: self.src.volume.delete,
            Temporary.IMAGE: self.src.image.discard,
        }
        return deleters[kind]

    async def _usable(self, kind: Temporary, found: str) -> bool:
        """A temporary found again is what its create waits for: available, active."""
        if kind is Temporary.SNAPSHOT:
            status = await self.block(self.src.volume.snapshot_status, found)
            return status == "available"
        if kind is Temporary.VOLUME:
            volume = await self.block(self.src.volume.get, found)
            return volume is not None and volume["status"] in ("available", "in-use")
        image = await self.block(self.src.image.get, found)
        return image is not None and image["status"] == "active"

    async def _detach_from_server(self, volume_id: str, device: str | None) -> None:
        """Take a data volume off its stopped server; journaled so it always goes back."""
        journal = self.ctx.journal
        name = f"{volume_id}@{self.source_id}"
        if not any(
            r["kind"] == Temporary.DETACHED and r["name"] == name
            for r in journal.pending_temporaries(self.node.id)
        ):
            seq = journal.intend_temporary(
                self.node.id,
                "source",
                Temporary.DETACHED,
                name,
                {"server_id": self.source_id, "volume_id": volume_id, "device": device},
            )
        else:
            seq = None
        await self.block(self.src.volume.detach, self.source_id, volume_id)
        if seq is not None:
            journal.temporary_created(seq, volume_id)

    async def _server_spec(self, data: Data) -> dict[str, Any]:
        after = dict(self.change.after or {})
        disks = data["disks"]
        boot = [d for d in disks if d["role"] == "boot"]
        rest = [d for d in disks if d["role"] != "boot"]
        devices = [
            {
                "boot_index": 0 if index == 0 else -1,
                "uuid": disk["dst_volume"],
                "source_type": "volume",
                "destination_type": "volume",
                "delete_on_termination": False,
            }
            for index, disk in enumerate(boot + rest)
        ]
        spec: dict[str, Any] = {
            "name": after.get("name"),
            "flavor_id": await self.block(self.dst.server.flavor_id, str(after.get("flavor"))),
            "networks": [{"port": self.ctx.ids.get(port)} for port in after.get("ports") or []]
            or "none",
            "block_device_mapping": devices,
            "metadata": {**(after.get("metadata") or {}), "tenantshift-src": self.marker},
        }
        if after.get("keypair"):
            # A keypair reference is its address; Nova wants the name, which is its key.
            spec["key_name"] = str(after["keypair"]).partition(".")[2]
        if after.get("availability_zone"):
            spec["availability_zone"] = after["availability_zone"]
        return spec

    def _volume_type_map(self) -> Callable[[str | None], str | None]:
        table = dict(self.ctx.settings.volume_types)  # map.volume_types
        return lambda value: table.get(value, value) if value is not None else None

    def _name(self, what: str, of: str) -> str:
        """A unique, recognisable name for a temporary (found again by it after a crash)."""
        tag = hashlib.sha256(f"{self.node.id}:{self.source_id}".encode()).hexdigest()[:8]
        return f"tenantshift-{what}-{of[:8]}-{tag}"
