"""Conversion hosts tenantshift deploys for the user (``conversion-hosts deploy|remove|status``):
``cloud`` (OpenStack calls, markers), ``hostkeys`` (console log, trust policy), ``reach`` (SSH),
``deploy`` (the resumable, idempotent orchestration and its record)."""
