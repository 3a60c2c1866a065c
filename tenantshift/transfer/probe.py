"""Plan-time checks of the conversion hosts: what would stop a copy, found before anything runs.

Each host is connected to exactly as a copy would (its host key verified), then asked in one
command whether its Python runs, its device directory exists and, for a non-root login, whether
``sudo -n`` works. Nothing is installed or changed on the hosts.
"""

from __future__ import annotations

import asyncio
import shlex

from tenantshift.manifest.schema import ConversionHost, HostPair, as_pair

from . import ssh
from .errors import TransferError

#: Prints one word per problem; the exit status is 0 either way, so every check is reported.
_CHECK = "import os,sys; d=sys.argv[1];print('' if os.path.isdir(d) else 'no-device-dir')"


async def _probe(host: ConversionHost, role: str, timeout: float) -> str | None:
    where = ssh.describe(host, role)
    try:
        conn = await ssh.connect(host, role, timeout)
    except TransferError as exc:
        return str(exc)
    try:
        command = shlex.join([host.python, "-c", _CHECK, host.device_dir])
        result = await conn.run(command, check=False)
        if result.exit_status != 0:
            return f"{where}: {host.python!r} does not run there (exit {result.exit_status})"
        if "no-device-dir" in str(result.stdout):
            return f"{where}: its device_dir {host.device_dir!r} does not exist"
        if ssh.sudo(host):
            sudo = await conn.run(shlex.join([*ssh.sudo(host), "true"]), check=False)
            if sudo.exit_status != 0:
                return f"{where}: {host.user!r} cannot run sudo without a password"
        return None
    finally:
        conn.close()


async def probe_hosts(hosts: HostPair, timeout: float = 15.0) -> list[str]:
    """The problems of both hosts (empty when both are ready), checked concurrently."""
    hosts = as_pair(hosts)
    found = await asyncio.gather(
        _probe(hosts.source, "source", timeout),
        _probe(hosts.destination, "destination", timeout),
    )
    return [problem for problem in found if problem]
