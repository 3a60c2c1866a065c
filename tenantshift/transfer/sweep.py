"""Removing key lines that outlived their session (tenantshift was killed, or the final
revocation failed). They expire by themselves (``TransferOptions.key_lifetime``); this removes
them now. The engine's cleanup calls it with the markers it journaled, or with none to remove
the lines of every tenantshift run on the source host."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import asyncssh

from tenantshift.manifest.schema import HostPair, as_pair

from . import ssh
from .agent.keys import MARKER_RE
from .bundle import agent_zip
from .errors import TransferError
from .model import TransferOptions


async def sweep_leftover_keys(
    hosts: HostPair,
    markers: Sequence[str] | None = None,
    *,
    options: TransferOptions | None = None,
) -> int:
    """Remove from the source host's authorized_keys the key lines of the sessions
    ``markers`` (``TransferSession.marker``: each session's lines and its copies' lines), or,
    with ``markers=None``, of every tenantshift run (only when no other run is using the
    host). Returns how many lines were removed; raises TransferError when it could not
    check."""
    options = options or TransferOptions()
    for marker in markers or ():
        if not MARKER_RE.match(marker):
            raise ValueError(f"{marker!r} is not a tenantshift transfer marker")
    host = as_pair(hosts).source
    selections = [["--every-run"]] if markers is None else [["--marker", m] for m in markers]
    keys_file = ["--file", options.source_authorized_keys] if options.source_authorized_keys else []
    conn = await ssh.connect(host, "source", options.connect_timeout)
    try:
        run_dir, _ = await ssh.install_agent(conn, host, "source", agent_zip())
        removed = 0
        try:
            for selection in selections:
                answer = await ssh.run_json(
                    conn,
                    ssh.agent_command(host, run_dir, "revoke", *selection, *keys_file),
                    f"sweeping leftover keys on the {ssh.describe(host, 'source')}",
                )
                removed += int(answer.get("removed", 0))
        finally:
            with contextlib.suppress(TransferError, OSError, asyncssh.Error):
                await ssh.run_json(
                    conn, ssh.agent_command(host, run_dir, "cleanup", run_dir), "cleanup"
                )
        return removed
    finally:
        conn.close()
        with contextlib.suppress(Exception):
            await conn.wait_closed()


async def remove_run_dirs(
    hosts: HostPair,
    role: str,
    run_dirs: Sequence[str],
    *,
    options: TransferOptions | None = None,
) -> int:
    """Remove the run directories a killed session left on one host (``role``: source or
    destination). The agent refuses any path that is not a tenantshift run directory, and a
    directory already gone counts as removed. Returns how many existed."""
    options = options or TransferOptions()
    pair = as_pair(hosts)
    host = pair.source if role == "source" else pair.destination
    conn = await ssh.connect(host, role, options.connect_timeout)
    try:
        own, _ = await ssh.install_agent(conn, host, role, agent_zip())
        removed = 0
        for run_dir in [*run_dirs, own]:
            answer = await ssh.run_json(
                conn,
                ssh.agent_command(host, own, "cleanup", run_dir),
                f"removing {run_dir} on the {ssh.describe(host, role)}",
            )
            removed += int(bool(answer.get("removed"))) if run_dir != own else 0
        return removed
    finally:
        conn.close()
        with contextlib.suppress(Exception):
            await conn.wait_closed()
