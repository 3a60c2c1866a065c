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

__all__ = [
    "KindHandler",
    "MetadataProvenance",
    "NeutronTags",
    "ProvenanceStore",
    "ProviderContext",
    "QuotaSource",
    "Usage",
    "Wait",
    "handler_classes",
    "register_handler",
]
