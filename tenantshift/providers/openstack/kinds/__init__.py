"""Per-kind handlers of the OpenStack provider. Importing this package registers them all.

A new kind: a module here with a ``@register_handler`` class, imported below. The provider's
``KINDS`` follows the resource registry's reference order, whatever the import order.
"""

from tenantshift.providers.openstack.kinds import (  # noqa: F401  (each module registers)
    image,
    keypair,
    neutron,
    port,
    router_interface,
    server,
    volume,
)
from tenantshift.providers.openstack.kinds.base import (
    KindHandler,
    MetadataProvenance,
    NeutronTags,
    ProvenanceStore,
    ProviderContext,
    QuotaSource,
    Usage,
    Wait,
    handler_classes,
    register_handler,
)
from tenantshift.providers.openstack.kinds.image import ImageHandler
from tenantshift.providers.openstack.kinds.server import ServerHandler
from tenantshift.providers.openstack.kinds.volume import VolumeHandler

__all__ = [
    "ImageHandler",
    "KindHandler",
    "MetadataProvenance",
    "NeutronTags",
    "ProvenanceStore",
    "ProviderContext",
    "QuotaSource",
    "ServerHandler",
    "Usage",
    "VolumeHandler",
    "Wait",
    "handler_classes",
    "register_handler",
]
