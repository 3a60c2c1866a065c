"""Cinder volumes: their bytes move between conversion hosts, so they are workloads.

A detached volume migrates on its own (``> migrate``); a volume attached to a server moves with
that server, so it is left out here with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tenantshift.resources.base import REGISTRY, Field, Kind


def _migrates_with(info: Mapping[str, Any], conversion_hosts: frozenset[str]) -> str | None:
    if info.get("temporary"):
        return "a temporary volume of a migration in progress (its cleanup removes it)"
    servers = sorted(set(info.get("attached_to") or []) - conversion_hosts)
    if servers:
        return f"attached to server {', '.join(servers)}: it migrates with its server"
    return None


VOLUME = REGISTRY.register(
    Kind(
        name="volume",
        doc="A block storage volume, keyed by name (unnamed volumes as 'unnamed').",
        fields=(
            Field("name", is_name=True),
            Field("description", default=""),
            Field("size", grow_only=True),
            Field("volume_type", mapping="volume_types", replace=True),
            Field("availability_zone", mapping="availability_zones", replace=True),
            Field("is_bootable", default=False),
            Field("metadata", default={}),
            # What Glance said about the image a volume was made from (``hw_*`` properties tell
            # Nova the disk bus, firmware, ...): a boot volume without it may not boot the same.
            Field("image_metadata", default={}),
        ),
        key=lambda p, _: str(p["name"] or "unnamed"),
        workload=True,
        migrates_with=_migrates_with,
    )
)
