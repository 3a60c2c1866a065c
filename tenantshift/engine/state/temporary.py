"""The closed set of temporary changes a migration journals before it makes them.

Each is journaled *intended* before it exists and *cleaned* once undone (``Journal``); its undo
is registered next to the migrations that make it (``workloads/temporaries.py``, one function
per member, checked complete by a test), so the cleanup node, ``tenantshift cleanup`` and the
sweep before an apply can always put the clouds back.
"""

from __future__ import annotations

from enum import StrEnum


class Temporary(StrEnum):
    #: A volume attached to a conversion host (undo: detach it).
    ATTACHMENT = "attachment"
    #: A data volume taken off its stopped source server (undo: attach it back at its device).
    DETACHED = "detached"
    #: A source server we stopped (undo: start it; the source ends as it began).
    STOPPED = "stopped"
    #: A temporary source volume made from a snapshot or a server image (undo: delete it).
    VOLUME = "volume"
    #: A snapshot of a source boot volume (undo: delete it).
    SNAPSHOT = "snapshot"
    #: A server image of an image-booted source server's root disk (undo: delete it).
    IMAGE = "image"
    #: The transfer session's copy key on a source conversion host (undo: revoke it).
    COPY_KEY = "copy_key"
    #: The transfer session's run directory on a conversion host (undo: remove it).
    RUN_DIR = "run_dir"
