"""Kept only so ``from tenantshift.engine.convhosts.cloud import DeployError`` (the CLI's) keeps
working: the cloud calls moved to ``tenantshift.providers.convhost_ops`` (the protocol) and
``tenantshift.providers.openstack.convhost_ops``; ``DeployError`` lives in :mod:`.deploy`.
Import from there; this module goes once nothing imports it."""

from tenantshift.engine.convhosts.deploy import DeployError

__all__ = ["DeployError"]
