"""The root of tenantshift's own errors.

Every failure the product expects (a bad manifest, a stale plan, a cloud that refused, a copy
that broke) is a :class:`TenantshiftError`, so the command line can show it as one line and
exit 1, while anything else (a ``ValueError`` from a bug, say) keeps its traceback. This module
sits at the package root and imports nothing of ours, so every layer can use it. The conversion
host agent (``transfer/agent``) is stdlib-only and never imports it: its errors come back as
JSON error lines that the transfer layer turns into ``TransferError``.
"""

from __future__ import annotations


class TenantshiftError(Exception):
    """An expected failure, with a message meant for the person running tenantshift."""


class UsageError(TenantshiftError):
    """A command was given options or values that do not go together."""


class LocalFileError(TenantshiftError):
    """A file or directory of ours on this machine (a saved plan, a report, the state
    directory) could not be written; the message names the path and the system's reason."""
