"""Which provider a manifest's cloud reference means."""

from __future__ import annotations

from tenantshift.manifest import CloudRef
from tenantshift.providers import Provider
from tenantshift.providers.convhost_ops import ConversionHostOps
from tenantshift.providers.snapshot_file import SnapshotFileProvider


def open_provider(ref: CloudRef, label: str, *, concurrency: int | None = None) -> Provider:
    """A saved snapshot file -> a read-only provider; a clouds.yaml entry or inline auth -> the
    OpenStack provider, able to carry ``concurrency`` calls at once (``Limits.connections``)
    without opening a connection per call."""
    if ref.snapshot is not None:
        return SnapshotFileProvider(ref.snapshot)
    # Imported here: openstacksdk's import costs ~1 s, and `validate` never needs it.
    from tenantshift.providers.openstack import OpenStackProvider

    if concurrency is None:
        return OpenStackProvider.from_cloud_ref(ref, label=label)
    return OpenStackProvider.from_cloud_ref(ref, label=label, concurrency=concurrency)


def conversion_host_ops(ref: CloudRef, side: str) -> ConversionHostOps | None:
    """The cloud verbs deploying ``side``'s conversion host needs, through the OpenStack
    provider's retrying caller (labelled ``side`` in messages); ``None`` for a snapshot file,
    which holds no servers."""
    if ref.snapshot is not None:
        return None
    from tenantshift.providers.openstack import OpenStackProvider
    from tenantshift.providers.openstack.convhost_ops import OpenStackConversionHostOps

    return OpenStackConversionHostOps(OpenStackProvider.from_cloud_ref(ref, label=side), side)
