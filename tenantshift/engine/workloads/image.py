"""A Glance image: a queued destination image with our marker, the source's data streamed into
it chunk by chunk (never held whole), verified against the source's hashes, then marked.

No conversion host takes part: the data passes through this process as a stream, bounded by
``CHUNK`` bytes at a time. Verification has three legs: the bytes read hash to the source's
``os_hash_value`` (the download was complete and intact), and the destination Glance's own
``os_hash_value`` and ``checksum`` of what it stored equal the source's (the upload was).

Resuming never uploads into an image this process did not just create: a copy left by a killed
run (``queued``, ``saving``, ``killed``, or ``active`` with other bytes) is deleted and made
again. The create carries the marker, so every copy is found, and one run leaves exactly one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tenantshift import faults
from tenantshift.engine.walk.context import ApplyContext
from tenantshift.engine.walk.nodes import Node
from tenantshift.engine.workloads.base import Data, Migration
from tenantshift.engine.workloads.registry import Info, WorkloadError, register_migration
from tenantshift.plans import Change
from tenantshift.providers.workload import MIGRATED_KEY

log = logging.getLogger(__name__)

#: Bytes read and sent at a time: what the stream holds in memory, whatever the image's size.
CHUNK = 4 * 2**20

#: What must match between the source and a copy for their data to be the same.
DATA_KEYS = ("size", "checksum", "os_hash_algo", "os_hash_value")


def same_data(copy: Mapping[str, Any], source: Mapping[str, Any]) -> bool:
    """An active copy whose Glance hashes equal the source's holds the source's bytes."""
    if copy.get("status") != "active" or copy.get("size") != source.get("size"):
        return False
    if source.get("os_hash_value"):
        return bool(
            copy.get("os_hash_algo") == source.get("os_hash_algo")
            and copy.get("os_hash_value") == source.get("os_hash_value")
        )
    return bool(source.get("checksum")) and copy.get("checksum") == source.get("checksum")


@register_migration
class ImageMigration(Migration):
    kind = "image"
    PHASES = ("destination_image", "uploaded")
    NEEDS_HOSTS = False

    def __init__(self, ctx: ApplyContext, node: Node) -> None:
        super().__init__(ctx, node)
        self.src_images = self.src.image
        self.dst_images = self.dst.image
        #: Copies this process created (queued, empty): the only ones it uploads into.
        self._fresh: set[str] = set()

    @classmethod
    def describe(cls, change: Change, info: Info) -> str:
        size = int(str(info.get("size") or 0))
        algo = info.get("os_hash_algo") or "md5 checksum"
        return f"stream {size / 2**20:.1f} MiB from Glance to Glance, verified by {algo}"

    async def _destination_image(self, data: Data) -> None:
        source = await self.block(self.src_images.get, self.source_id)
        if source is None:
            raise WorkloadError(f"source image {self.source_id} is gone")
        if source["status"] != "active":
            raise WorkloadError(f"source image {self.source_id} is {source['status']}: no data")
        data["source"] = {k: source.get(k) for k in DATA_KEYS}
        await self._clean_slate(data)

    async def _uploaded(self, data: Data) -> None:
        current = await self.block(self.dst_images.get, data["dst_image"])
        if current is not None and same_data(current, data["source"]):
            return  # uploaded and verified by Glance before a kill: nothing to send again
        if current is None or current["status"] != "queued" or current["id"] not in self._fresh:
            # Left by a killed run, half-uploaded or not: replaced, never written into.
            self.step("replacing an unfinished copy")
            await self._clean_slate(data)
            if data.get("done"):
                return
            # Journaled before any byte moves, so a kill now resumes with this copy's id.
            self.ctx.journal.advance(self.node.id, "destination_image", data)
        data["copy"] = await self._stream(data["dst_image"], data["source"])

    async def finish(self, data: Data) -> str:
        after = self.change.after or {}
        digest = str(data["source"].get("os_hash_value") or data["source"].get("checksum"))
        if after.get("protected"):
            await self.block(
                self.ctx.destination.update, "image", data["dst_image"], {"protected": True}
            )
        # Last: the key that says the copy is complete.
        await self.block(self.dst_images.set_properties, data["dst_image"], {MIGRATED_KEY: digest})
        copy = data.get("copy") or {}
        size = int(data["source"].get("size") or 0)
        algo = data["source"].get("os_hash_algo") or "md5"
        sent = (
            f"streamed {size / 2**20:.1f} MiB Glance to Glance in {copy.get('chunks', 0)} "
            f"chunks, {algo} verified"
            if copy
            else f"{size / 2**20:.1f} MiB, already uploaded, {algo} verified"
        )
        return f"copied to {data['dst_image']}: {sent} ({digest[:16]})"

    # -- helpers ----------------------------------------------------------------------------
    async def _clean_slate(self, data: Data) -> None:
        """Keep the one copy that holds the source's data, if any; delete every other copy of
        this source; make a fresh copy when none is kept."""
        kept: str | None = None
        for found in await self.block(self.dst_images.marked, self.marker):
            if kept is None and same_data(found, data["source"]):
                kept = str(found["id"])
                continue
            log.info("%s: deleting unfinished copy %s", self.change.address, found["id"])
            await self.block(self.dst_images.discard, str(found["id"]))
        data["done"] = kept is not None
        if kept is None:
            params = dict(self.change.after or {})
            made = await self.block(self.ctx.destination.create, "image", params, self.marker)
            kept = str(made["id"])
            self._fresh.add(kept)
        self.ctx.ids.set(self.change.address, kept)
        data["dst_image"] = kept

    async def _stream(self, image_id: str, source: Mapping[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        total = int(source.get("size") or 0)

        def progress(done: int) -> None:
            faults.at_bytes(done)  # the kill tests: a SIGKILL in the middle of the upload
            loop.call_soon_threadsafe(self._report, done, total)

        result = await self.block(self._transfer, image_id, source, progress)
        await self._verify(image_id, source, result)
        return result

    def _report(self, done: int, total: int) -> None:
        try:
            self.ctx.listener.progress(self.node, done, total)
        except Exception:  # a broken display must not stop a migration
            log.exception("progress listener failed")

    def _transfer(
        self, image_id: str, source: Mapping[str, Any], progress: Callable[[int], None]
    ) -> dict[str, Any]:
        """Runs in a worker thread: read the source and write the copy in one pass."""
        algo = str(source.get("os_hash_algo") or "sha512")
        digest = hashlib.new(algo)
        md5 = hashlib.md5(usedforsecurity=False)
        counts = {"bytes": 0, "chunks": 0}

        def counted(chunks: Iterator[bytes]) -> Iterator[bytes]:
            for chunk in chunks:
                digest.update(chunk)
                md5.update(chunk)
                counts["bytes"] += len(chunk)
                counts["chunks"] += 1
                progress(counts["bytes"])
                yield chunk

        with self.src_images.read_data(self.source_id, CHUNK) as chunks:
            self.dst_images.write_data(image_id, counted(chunks))
        return {**counts, "os_hash_algo": algo, "hash": digest.hexdigest(), "md5": md5.hexdigest()}

    async def _verify(self, image_id: str, source: Mapping[str, Any], sent: Data) -> None:
        copy = await self.block(self.dst_images.get, image_id)
        problems = []
        if sent["bytes"] != source.get("size"):
            problems.append(f"read {sent['bytes']} bytes of {source.get('size')}")
        if source.get("os_hash_value") and sent["hash"] != source["os_hash_value"]:
            problems.append(f"the bytes read do not hash to the source's {sent['os_hash_algo']}")
        if source.get("checksum") and sent["md5"] != source["checksum"]:
            problems.append("the bytes read do not match the source's checksum")
        if copy is None or not same_data(copy, source):
            problems.append(
                "the destination's hashes differ from the source's"
                if copy is not None
                else "the destination copy is gone"
            )
        elif source.get("checksum") and copy.get("checksum") != source["checksum"]:
            problems.append("the destination's checksum differs from the source's")
        if problems:
            # A copy that failed to verify is never left to look like one that is resumable.
            await self.block(self.dst_images.discard, image_id)
            raise WorkloadError(
                f"{self.change.address}: the copy of image {self.source_id} failed to verify: "
                + "; ".join(problems)
            )
