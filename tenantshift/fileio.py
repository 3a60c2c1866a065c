"""Writing the tool's own files: private to the user, atomic, no predictable temporaries.

Plans and snapshots hold the tenant's whole inventory (CIDRs, routes, public keys), and a plan
decides what apply does: other local users must neither read them nor plant a file (a symlink)
under a name we are about to write.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from tenantshift.errors import LocalFileError

FILE_MODE = 0o600
DIR_MODE = 0o700


def write_private(path: Path, text: str | bytes) -> None:
    """Replace ``path`` with ``text`` (or bytes: a picture) atomically, mode 0600.

    The temporary comes from ``mkstemp`` (random name, ``O_EXCL``, mode 0600) in the target's
    directory, so ``os.replace`` is a rename on one filesystem: a reader sees the old file or
    the new one, never half of it, and a symlink at ``path`` is replaced, not followed.
    ``LocalFileError`` when the system refuses.
    """
    try:
        _replace(path, text)
    except OSError as exc:
        # The path is the user's (-o, the state directory): a missing permission, a full disk
        # or a directory where the file should go is theirs to fix, not a bug of ours.
        raise LocalFileError(f"{path}: cannot write it: {exc.strerror or exc}") from exc


def _replace(path: Path, text: str | bytes) -> None:
    directory = path.parent
    if not directory.exists():
        directory.mkdir(parents=True, mode=DIR_MODE)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
