"""Glance images owned by the source project: their bytes move from Glance to Glance, so they
are workloads (streamed by the migration, no conversion host involved).

Public images of other projects are the cloud's, not the tenant's: the provider lists only the
project's own images (private, shared, community, public). A server image a migration made as
a temporary, and an image without data (queued, saving, killed), are left out with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tenantshift.resources.base import REGISTRY, Field, Kind

#: The names a server migration gives its temporary server images (``tenantshift-root-<8
#: hex>-<8 hex>``, engine/workloads/server.py ``_name``): the provider reports such an image as
#: ``temporary`` even without the temporary property (one made before images carried it).
TEMPORARY_NAME = re.compile(r"tenantshift-[a-z]+-[0-9a-f]{8}-[0-9a-f]{8}")


def _migrates_with(info: Mapping[str, Any], conversion_hosts: frozenset[str]) -> str | None:
    if info.get("temporary"):
        return "a temporary server image of a migration in progress (its cleanup removes it)"
    status = info.get("status")
    if status not in (None, "active"):
        return f"the image is {status}: only an active image's data can be read"
    return None


IMAGE = REGISTRY.register(
    Kind(
        name="image",
        doc="A Glance image of the project with its data, keyed by name ('unnamed' without).",
        fields=(
            Field("name", is_name=True),
            # Glance cannot change the formats of an image that has data.
            Field("disk_format", replace=True),
            Field("container_format", replace=True),
            Field("min_disk", default=0),
            Field("min_ram", default=0),
            Field("visibility", default="shared"),
            Field("protected", default=False),
            Field("hidden", default=False),
            Field("tags", default=[], unordered=True),
            # The user's own properties (hw_*, os_distro, ...): values are strings in Glance.
            Field("properties", default={}),
        ),
        key=lambda p, _: str(p["name"] or "unnamed"),
        workload=True,
        migrates_with=_migrates_with,
    )
)
