"""The authorized_keys line of a copy's ephemeral key on the source host.

``restrict`` turns off the pty, forwarding and ``~/.ssh/rc``; the forced command runs the
source agent's ``serve`` for the named volumes only; the agent adds ``expiry-time`` on the
host (in its local time, as sshd reads it). The command first checks that the agent file and
its directory belong to the user that installed them and are not group- or world-writable:
should the line outlive its run directory in /tmp, another local user who recreates that path
gets an exit status of 97, not root.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from tenantshift.manifest.schema import ConversionHost

from . import ssh
from .agent import validate
from .model import check_source_from

#: Exit status of the forced command when the agent file fails the ownership check.
GUARD_REFUSED = 97

#: ``python -I -c GUARD <uid> <agent.pyz> serve ...``: lstat (never follow) the run directory
#: and the agent, both owned by <uid> and not writable by group or others, then run the zip
#: with the remaining arguments. No quotes or backslashes, so it sits in command="..." as is.
GUARD = (
    "import os,sys,stat;u=int(sys.argv[1]);p=sys.argv[2];"
    "s=[os.lstat(x) for x in (os.path.dirname(p),p)];"
    "ok=stat.S_ISDIR(s[0].st_mode) and stat.S_ISREG(s[1].st_mode)"
    " and all(x.st_uid==u and not x.st_mode&0o22 for x in s);"
    f"ok or sys.exit({GUARD_REFUSED});"
    "del sys.argv[1:3];import runpy;runpy.run_path(p)"
)


def check_host_fields(host: ConversionHost, role: str) -> None:
    """Values that end up inside command="..." on the source: OpenSSH unescapes only ``\\"``
    there, so a quote, a backslash or a control character is refused rather than escaped."""
    for name in ("device_dir", "python", "user"):
        value = getattr(host, name)
        if not value or any(c in value for c in '"\\') or not value.isprintable():
            raise ValueError(
                f"{role} conversion host: {name} must not contain quotes, backslashes or "
                "control characters"
            )


def forced_command(
    host: ConversionHost, run_dir: str, owner_uid: int, volume_ids: Sequence[str]
) -> str:
    if not volume_ids:
        raise ValueError("a key line must name at least one volume")
    argv = [*ssh.sudo(host), host.python, "-I", "-c", GUARD, str(owner_uid)]
    argv += [f"{run_dir}/agent.pyz", "serve", "--device-dir", host.device_dir]
    for volume_id in volume_ids:
        argv += ["--volume-id", validate.volume_id(volume_id)]
    return shlex.join(argv)


def key_line(command: str, public_key: str, marker: str, source_from: str | None) -> str:
    """``public_key`` is ``<type> <base64>``. The agent inserts ``expiry-time`` after
    ``restrict`` when it appends the line."""
    if any(c in command for c in "\\\n\r"):  # check_host_fields keeps these out
        raise ValueError("the forced command holds a backslash or a line break")
    opts = 'restrict,command="{}"'.format(command.replace('"', '\\"'))
    if source_from:
        check_source_from(source_from)
        opts += f',from="{source_from}"'
    return f"{opts} {public_key} {marker}\n"
