"""The OpenStack provider (openstacksdk): networks, subnets, routers and their interfaces,
security groups and rules, keypairs. Build one with ``OpenStackProvider.from_cloud_ref``.

Each kind is a handler in ``kinds/`` (``register_handler``); ``KINDS`` lists those registered."""

from tenantshift.providers.openstack.connection import (
    ConflictError,
    ForbiddenError,
    RetryPolicy,
    connect,
)
from tenantshift.providers.openstack.provider import KINDS, OpenStackProvider
from tenantshift.providers.openstack.records import PROVENANCE_PREFIX

__all__ = [
    "KINDS",
    "PROVENANCE_PREFIX",
    "ConflictError",
    "ForbiddenError",
    "OpenStackProvider",
    "RetryPolicy",
    "connect",
]
