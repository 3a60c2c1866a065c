"""Resource kinds, declared once as data, and the snapshot/desired-state machinery over them.

Importing this package registers every kind; ``REGISTRY`` iterates them in reference order.
"""

from tenantshift.resources import (  # noqa: F401  (each module registers its kind)
    image,
    keypair,
    network,
    port,
    router,
    router_interface,
    security_group,
    security_group_rule,
    server,
    subnet,
    volume,
)
from tenantshift.resources.base import REGISTRY, Field, Kind, Record, Resource, split_address
from tenantshift.resources.desired import derive_desired
from tenantshift.resources.snapshot import Snapshot, normalize

__all__ = [
    "REGISTRY",
    "Field",
    "Kind",
    "Record",
    "Resource",
    "Snapshot",
    "derive_desired",
    "normalize",
    "split_address",
]
