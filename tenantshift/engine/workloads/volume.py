"""A detached volume: a destination twin, both attached to their conversion hosts, the bytes
copied and verified between the hosts, both detached, the twin marked migrated."""

from __future__ import annotations

import logging

from tenantshift.engine.workloads.base import Data, Migration, WorkloadError, copied_line
from tenantshift.engine.workloads.temporaries import clean_up
from tenantshift.providers.volume_ops import MIGRATED_KEY

log = logging.getLogger(__name__)


class VolumeMigration(Migration):
    PHASES = ("destination_volume", "attached", "copied", "detached")

    async def _destination_volume(self, data: Data) -> None:
        source = await self.block(self.src.volume, self.source_id)
        if source is None:
            raise WorkloadError(f"source volume {self.source_id} is gone")
        await self.host_ids(data)
        # Attached only to the source conversion host: an earlier, killed run of ours did it.
        ours = set(source.get("attached_to") or []) <= {data["src_host"]}
        if source["status"] not in ("available", "in-use") or not ours:
            raise WorkloadError(
                f"source volume {self.source_id} is {source['status']} (attached to "
                f"{', '.join(source.get('attached_to') or []) or 'nothing'}): a detached volume "
                "must stay detached while it migrates"
            )
        params = dict(self.change.after or {})
        destination = self.ctx.destination
        found = await self.block(destination.find, "volume", self.marker, params)
        if found is None:
            found = await self.block(destination.create, "volume", params, self.marker)
        self.ctx.ids.set(self.change.address, str(found["id"]))
        data["dst_volume"] = str(found["id"])
        # What the source was when this migration began: a resumed copy continues only
        # against the same generation (attaching it later changes its updated_at).
        data["generation"] = str(source.get("updated_at") or "")

    async def _attached(self, data: Data) -> None:
        await self.attach("source", data["src_host"], self.source_id)
        await self.attach("destination", data["dst_host"], data["dst_volume"])

    async def _copied(self, data: Data) -> None:
        result = await self.copy(self.source_id, data["dst_volume"], data.get("generation"))
        data["copies"] = [
            {
                "source": self.source_id,
                "destination": data["dst_volume"],
                "digest": result.digest,
                "data_bytes": result.bytes_data,
                "wire_bytes": result.bytes_wire,
                "codec": result.codec,
                "resumed_from": result.resumed_from,
            }
        ]

    async def _detached(self, data: Data) -> None:
        await clean_up(self.ctx, owner=self.node.id)

    async def finish(self, data: Data) -> str:
        digest = str(data["copies"][0]["digest"])
        await self.block(self.dst.set_metadata, data["dst_volume"], {MIGRATED_KEY: digest})
        return f"copied to {data['dst_volume']}: {copied_line(data['copies'])} ({digest[:16]})"
