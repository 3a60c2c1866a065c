"""The run's ephemeral key: authorising it on the source host, and provisioning it (with the
pinned source host key) on the destination host.

The key is authorised with ``restrict`` and a forced command, so whoever holds it can only run
the source agent's ``serve`` for devices in one directory, with no shell, no forwarding and no
pty, and only until the orchestrator revokes it at the end of the run.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from typing import IO

MARKER_RE = re.compile(r"^tenantshift-transfer-[0-9a-f]{16,64}$")
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


def _locked(path: str) -> IO[str]:
    # A separate lock file: the keys file itself is replaced by rename, which would leave a
    # second waiter holding a lock on the old inode.
    lock = open(path + ".tenantshift-lock", "a", encoding="utf-8")  # noqa: SIM115 (returned)
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def _rewrite(path: str, lines: list[str]) -> None:
    mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o600
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".authorized_keys.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(lines))
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def authorize(line: str, marker: str, explicit: str | None = None) -> dict[str, str]:
    if (
        not MARKER_RE.match(marker)
        or not line.rstrip().endswith(" " + marker)
        or "\n" in line.strip()
    ):
        raise ValueError("refusing an authorized_keys line without this run's marker")
    path = authorized_keys_path(explicit)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with _locked(path):
        lines = _read_lines(path)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        _rewrite(path, [*lines, line.strip() + "\n"])
    return {"file": path}


def revoke(marker: str, explicit: str | None = None) -> dict[str, object]:
    if not MARKER_RE.match(marker):
        raise ValueError("not a tenantshift transfer marker")
    path = authorized_keys_path(explicit)
    if not os.path.exists(path):
        return {"file": path, "removed": 0}
    with _locked(path):
        lines = _read_lines(path)
        keep = [ln for ln in lines if not ln.rstrip().endswith(" " + marker)]
        if len(keep) != len(lines):
            _rewrite(path, keep)
    return {"file": path, "removed": len(lines) - len(keep)}


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readlines()
    except FileNotFoundError:
        return []


def put_pull_key(run_dir: str, data: dict[str, str]) -> dict[str, str]:
    """Write the ephemeral private key and the pinned source host key into the run dir."""
    _check_run_dir(run_dir)
    out = {}
    for name, field in (("id_ed25519", "key"), ("known_hosts", "known_hosts")):
        path = os.path.join(run_dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data[field])
        out[field] = path
    return out


def _check_run_dir(run_dir: str) -> None:
    # Cleanup deletes a whole directory: make sure it is one of ours.
    if not os.path.basename(os.path.normpath(run_dir)).startswith(RUN_DIR_PREFIX):
        raise ValueError(f"{run_dir} is not a tenantshift transfer run directory")


def cleanup(run_dir: str) -> dict[str, object]:
    _check_run_dir(run_dir)
    existed = os.path.isdir(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"removed": existed}


def dumps(obj: object) -> str:
    return json.dumps(obj, sort_keys=True)
