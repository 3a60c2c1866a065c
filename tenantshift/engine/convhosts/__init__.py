"""Conversion hosts tenantshift deploys for the user (``conversion-hosts deploy|remove|status``):
``deploy`` (the resumable, idempotent orchestration, its record and ``DeployError``),
``hostkeys`` (console log, trust policy), ``reach`` (SSH). The cloud calls are the provider's
(``tenantshift.providers.convhost_ops``); ``cloud`` only re-exports ``DeployError``."""
