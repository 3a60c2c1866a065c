"""The run's ephemeral key: authorising it on the source host, and provisioning it (with the
pinned source host key) on the destination host.

Each copy's key is authorised with ``restrict``, an ``expiry-time`` and a forced command, so
whoever holds it can only run the source agent's ``serve`` for the volumes named in that
command, with no shell, no forwarding and no pty, and only until the orchestrator revokes it
at the end of the copy (or it expires).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import stat
import tempfile
import time

#: A session's marker, optionally followed by one copy's suffix.
MARKER_RE = re.compile(r"\Atenantshift-transfer-[0-9a-f]{16,64}(-[0-9a-f]{8,32})?\Z")
RUN_DIR_PREFIX = "tenantshift-transfer-"


def _ancestor_cmdlines(limit: int = 8) -> list[list[str]]:
    out: list[list[str]] = []
    pid = os.getppid()
    for _ in range(limit):
        if pid <= 1:
            break
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                raw = f.read()
            with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
                stat = f.read()
        except OSError:
            break
        parts = [p.decode("utf-8", "replace") for p in raw.split(b"\0") if p]
        # sshd rewrites its title into one string ("sshd: /usr/sbin/sshd -D -f cfg [listener]")
        out.append(parts[0].split() if len(parts) == 1 else parts)
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def _sshd_config() -> str:
    """The config file of the sshd serving us: its ``-f`` argument, if an ancestor has one."""
    for argv in _ancestor_cmdlines():
        if not any(a.endswith("sshd") or a == "sshd:" for a in argv[:2]):
            continue
        for i, arg in enumerate(argv):
            if arg == "-f" and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith("-f") and len(arg) > 2:
                return arg[2:]
    return "/etc/ssh/sshd_config"


def _option(path: str, name: str, depth: int = 0) -> str | None:
    """First value of ``name`` outside Match blocks (sshd keeps the first one), following
    Include one level deep."""
    import glob

    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        words = line.strip().split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        key = words[0].lower()
        if key == "match":
            return None
        if key == "include" and depth < 2 and len(words) > 1:
            for pattern in words[1].split():
                if not os.path.isabs(pattern):
                    pattern = os.path.join("/etc/ssh", pattern)
                for inc in sorted(glob.glob(pattern)):
                    found = _option(inc, name, depth + 1)
                    if found:
                        return found
        elif key == name and len(words) > 1:
            return words[1].strip()
    return None


def authorized_keys_path(explicit: str | None = None) -> str:
    """Where sshd looks for this user's keys: ``explicit``, else the first AuthorizedKeysFile
    of the sshd that serves this session, else ``~/.ssh/authorized_keys``."""
    home = os.path.expanduser("~")
    if explicit:
        return os.path.expanduser(explicit)
    value = _option(_sshd_config(), "authorizedkeysfile")
    first = value.split()[0] if value else ".ssh/authorized_keys"
    user = os.environ.get("USER") or os.path.basename(home)
    first = first.replace("%%", "\0").replace("%h", home).replace("%u", user).replace("\0", "%")
    return first if os.path.isabs(first) else os.path.join(home, first)


def _open_locked(path: str, flags: int) -> tuple[int, str]:
    """The real file behind ``path`` (symlinks resolved, so a symlinked authorized_keys stays
    a symlink), opened and locked with flock on the file itself: no lock files are left
    behind. A revoke replaces the file by rename, so a waiter that got the lock on the old
    inode sees that and opens again."""
    for _ in range(50):
        real = os.path.realpath(path)
        fd = os.open(real, flags | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            now = os.stat(real)
        except FileNotFoundError:
            now = None
        held = os.fstat(fd)
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            return fd, real
        os.close(fd)
    raise OSError(f"{path} keeps being replaced; giving up")


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 16, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _comment(line: str) -> str:
    words = line.split()
    return words[-1] if words else ""


def authorize(
    line: str, marker: str, explicit: str | None = None, ttl: int | None = None
) -> dict[str, str]:
    """Append the key line, with ``expiry-time`` ``ttl`` seconds from now (sshd's local
    time, which is ours: sshd passes TZ on) so a line that outlives its run stops working."""
    line = line.strip()
    if (
        not MARKER_RE.match(marker)
        or _comment(line) != marker
        or not line.startswith("restrict,")
        or not line.isprintable()
    ):
        raise ValueError("refusing an authorized_keys line without this run's marker")
    if ttl is not None:
        if not 0 < ttl <= 30 * 24 * 3600:
            raise ValueError("ttl must be between 1 second and 30 days")
        expiry = time.strftime("%Y%m%d%H%M%S", time.localtime(time.time() + ttl))
        line = f'restrict,expiry-time="{expiry}",' + line[len("restrict,") :]
    path = authorized_keys_path(explicit)
    os.makedirs(os.path.dirname(os.path.realpath(path)), mode=0o700, exist_ok=True)
    # O_APPEND: whatever others append meanwhile (cloud-init, ssh-copy-id) stays.
    fd, _real = _open_locked(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    try:
        size = os.fstat(fd).st_size
        lead = b"\n" if size and os.pread(fd, 1, size - 1) != b"\n" else b""
        os.write(fd, lead + line.encode("utf-8") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"file": path}


def revoke(
    marker: str | None, explicit: str | None = None, every_run: bool = False
) -> dict[str, object]:
    """Remove the lines of run ``marker`` (its session line and its per-copy lines,
    ``<marker>-<hex>``), or with ``every_run`` the lines of every tenantshift run."""
    if every_run:

        def drop(comment: str) -> bool:
            return bool(MARKER_RE.match(comment))

    else:
        if marker is None or not MARKER_RE.match(marker):
            raise ValueError("not a tenantshift transfer marker")

        def drop(comment: str) -> bool:
            return comment == marker or (
                comment.startswith(f"{marker}-") and bool(MARKER_RE.match(comment))
            )

    path = authorized_keys_path(explicit)
    if not os.path.exists(path):
        return {"file": path, "removed": 0}
    fd, real = _open_locked(path, os.O_RDONLY)
    try:
        for _ in range(20):
            data = _read_all(fd)
            lines = data.decode("utf-8", "surrogateescape").splitlines(keepends=True)
            keep = [ln for ln in lines if not drop(_comment(ln))]
            removed = len(lines) - len(keep)
            if not removed:
                return {"file": path, "removed": 0}
            if _replace(fd, real, data, "".join(keep).encode("utf-8", "surrogateescape")):
                return {"file": path, "removed": removed}
        raise OSError(f"{path} keeps changing; the key lines are still there")
    finally:
        os.close(fd)


def _replace(fd: int, real: str, seen: bytes, new: bytes) -> bool:
    """Replace ``real`` (locked as ``fd``) with ``new`` unless it changed since it read as
    ``seen``: writers that do not take our lock append without waiting, and a line they
    added must not be lost. False when it changed (read again and retry)."""
    st = os.fstat(fd)
    tmp_fd, tmp = tempfile.mkstemp(dir=os.path.dirname(real), prefix=".authorized_keys.")
    try:
        os.write(tmp_fd, new)
        os.fchmod(tmp_fd, stat.S_IMODE(st.st_mode))
        if os.geteuid() == 0:
            os.fchown(tmp_fd, st.st_uid, st.st_gid)
        os.fsync(tmp_fd)
        os.close(tmp_fd)
        tmp_fd = -1
        if _read_all(fd) != seen:
            os.unlink(tmp)
            return False
        os.replace(tmp, real)
    except BaseException:
        if tmp_fd >= 0:
            os.close(tmp_fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(os.path.dirname(real), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


def check_run_dir(run_dir: str) -> None:
    # Cleanup deletes a whole directory: make sure it is one of ours.
    if not os.path.basename(os.path.normpath(run_dir)).startswith(RUN_DIR_PREFIX):
        raise ValueError(f"{run_dir} is not a tenantshift transfer run directory")


def cleanup(run_dir: str) -> dict[str, object]:
    check_run_dir(run_dir)
    existed = os.path.isdir(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"removed": existed}


def dumps(obj: object) -> str:
    return json.dumps(obj, sort_keys=True)
