"""A detached volume: a destination twin, both attached to their conversion hosts, the bytes
copied and verified between the hosts, both detached, the twin marked migrated."""

from __future__ import annotations

from tenantshift.engine.state.temporary import Temporary
from tenantshift.engine.workloads.adopt import destination_volume
from tenantshift.engine.workloads.base import Data, Migration, copied_line, copy_record
from tenantshift.engine.workloads.registry import (
    Info,
    Needs,
    Sizes,
    WorkloadError,
    register_migration,
)
from tenantshift.engine.workloads.temporaries import clean_up
from tenantshift.plans import Change
from tenantshift.providers.workload import MIGRATED_KEY


@register_migration
class VolumeMigration(Migration):
    kind = "volume"
    PHASES = ("destination_volume", "attached", "copied", "detached")
    MADE_IN = {Temporary.ATTACHMENT: "attached"}

    @classmethod
    def needs(cls, change: Change, info: Info, sizes: Sizes) -> Needs:
        if change.target_id is not None:
            return {}
        size = int((change.after or {}).get("size") or 0)
        return {("destination", "volumes"): 1, ("destination", "gigabytes"): size}

    @classmethod
    def describe(cls, change: Change, info: Info) -> str:
        return f"copy {(change.after or {}).get('size')} GiB between the conversion hosts, verified"

    async def _destination_volume(self, data: Data) -> None:
        source = await self.block(self.src.volume.get, self.source_id)
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
        found = await destination_volume(self, params, self.marker, data["dst_host"])
        self.ctx.ids.set(self.change.address, found)
        data["dst_volume"] = found
        # What the source was when this migration began: a resumed copy continues only
        # against the same generation (attaching it later changes its updated_at).
        data["generation"] = str(source.get("updated_at") or "")

    async def _attached(self, data: Data) -> None:
        await self.attach("source", data["src_host"], self.source_id)
        await self.attach("destination", data["dst_host"], data["dst_volume"])

    async def _copied(self, data: Data) -> None:
        await self.check_attached("source", data["src_host"], self.source_id)
        await self.check_attached("destination", data["dst_host"], data["dst_volume"])
        result = await self.copy(self.source_id, data["dst_volume"], data.get("generation"))
        data["copies"] = [copy_record(self.source_id, data["dst_volume"], result)]

    async def _detached(self, data: Data) -> None:
        await clean_up(self.ctx, owner=self.node.id)

    async def finish(self, data: Data) -> str:
        digest = str(data["copies"][0]["digest"])
        await self.block(self.dst.volume.set_metadata, data["dst_volume"], {MIGRATED_KEY: digest})
        return f"copied to {data['dst_volume']}: {copied_line(data['copies'])} ({digest[:16]})"
