"""Which provider a manifest's cloud reference means."""

from __future__ import annotations

from tenantshift.manifest import CloudRef
from tenantshift.providers import Provider
from tenantshift.providers.snapshot_file import SnapshotFileProvider


def open_provider(ref: CloudRef, label: str) -> Provider:
    """A saved snapshot file -> a read-only provider; a clouds.yaml entry or inline auth -> the
    OpenStack provider."""
    if ref.snapshot is not None:
        return SnapshotFileProvider(ref.snapshot)
    # Imported here: openstacksdk's import costs ~1 s, and `validate` never needs it.
    from tenantshift.providers.openstack import OpenStackProvider

    return OpenStackProvider.from_cloud_ref(ref, label=label)
