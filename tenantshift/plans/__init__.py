"""Plans: the diff of desired against actual, its renderers and its file format."""

from tenantshift.plans.diff import diff
from tenantshift.plans.model import Action, Change, FieldChange, Fingerprint, Plan, Reason

__all__ = ["Action", "Change", "FieldChange", "Fingerprint", "Plan", "Reason", "diff"]
