"""A transfer session: the agent installed on both conversion hosts and an ephemeral key that
lets the destination host, and only it, pull from the source host for the session's lifetime.

Set-up (``open``):
1. verified asyncssh control connections to both hosts;
2. the agent zip into a fresh 0700 directory on each;
3. a new ed25519 key pair, generated here, authorised on the source in authorized_keys with
   ``restrict`` and a forced command (``agent serve --device-dir <source device_dir>``);
4. its private key and the source's host key (as verified by step 1) written 0600 into the
   destination's run directory.

Tear-down (``close``) revokes the key line, deletes both run directories (with the private key)
and closes the connections, whatever happened before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import asyncssh

from tenantshift.manifest.schema import ConversionHost, ConversionHosts

from . import ssh
from .agent import codecs as agent_codecs  # stdlib only; the preference table is shared
from .bundle import agent_zip
from .errors import (
    DeviceNotFoundError,
    HostKeyError,
    StreamError,
    TransferError,
    VerificationError,
)
from .model import Progress, TransferOptions, TransferResult, VolumeCopy

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]

#: HostKeyAlias the destination's ssh client checks the source host key under.
HOST_KEY_ALIAS = "tenantshift-source"


class TransferSession:
    """``async with TransferSession(hosts) as session: await session.copy(...)``."""

    def __init__(self, hosts: ConversionHosts, options: TransferOptions | None = None) -> None:
        self.hosts = hosts
        self.options = options or TransferOptions()
        self.marker = f"tenantshift-transfer-{secrets.token_hex(16)}"
        self.source_run_dir: str | None = None
        self.destination_run_dir: str | None = None
        self._src: asyncssh.SSHClientConnection | None = None
        self._dst: asyncssh.SSHClientConnection | None = None
        self._authorized = False
        self._pull_ssh: dict[str, Any] = {}

    async def __aenter__(self) -> TransferSession:
        try:
            await self.open()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- set-up and tear-down

    async def open(self) -> None:
        src_host, dst_host = self.hosts.source, self.hosts.destination
        timeout = self.options.connect_timeout
        src, dst = await asyncio.gather(
            ssh.connect(src_host, "source", timeout),
            ssh.connect(dst_host, "destination", timeout),
            return_exceptions=True,
        )
        # Keep whichever connected, so close() closes it even when the other failed.
        self._src = src if isinstance(src, asyncssh.SSHClientConnection) else None
        self._dst = dst if isinstance(dst, asyncssh.SSHClientConnection) else None
        for outcome in (src, dst):
            if isinstance(outcome, BaseException):
                raise outcome
        assert self._src is not None and self._dst is not None
        bundle = agent_zip()
        # One after the other: a failed second install must not lose the first run dir.
        self.source_run_dir = await ssh.install_agent(self._src, src_host, "source", bundle)
        self.destination_run_dir = await ssh.install_agent(
            self._dst, dst_host, "destination", bundle
        )
        key = asyncssh.generate_private_key("ssh-ed25519", comment=self.marker)
        await self._authorize_on_source(key)
        await self._provision_destination(key)
        log.info(
            "transfer session ready: %s pulls from %s",
            ssh.describe(dst_host, "destination"),
            ssh.describe(src_host, "source"),
        )

    def _forced_command(self) -> str:
        host = self.hosts.source
        assert self.source_run_dir
        return ssh.agent_command(
            host, self.source_run_dir, "serve", "--device-dir", host.device_dir, root=True
        )

    async def _authorize_on_source(self, key: asyncssh.SSHKey) -> None:
        assert self._src and self.source_run_dir
        host = self.hosts.source
        command = self._forced_command().replace("\\", "\\\\").replace('"', '\\"')
        opts = f'restrict,command="{command}"'
        if self.options.source_from:
            opts += f',from="{self.options.source_from}"'
        public = key.export_public_key("openssh").decode().split()[:2]
        line = f"{opts} {public[0]} {public[1]} {self.marker}\n"
        args = ["authorize", "--marker", self.marker]
        if self.options.source_authorized_keys:
            args += ["--file", self.options.source_authorized_keys]
        self._authorized = True  # before the call: a failure half-way is still revoked
        answer = await ssh.run_json(
            self._src,
            ssh.agent_command(host, self.source_run_dir, *args),
            f"authorising the run's key on the {ssh.describe(host, 'source')}",
            line,
        )
        log.debug("ephemeral key authorised in %s", answer.get("file"))

    async def _provision_destination(self, key: asyncssh.SSHKey) -> None:
        assert self._src and self._dst and self.destination_run_dir
        host = self.hosts.destination
        # The key the orchestrator verified (or, under insecure-skip, saw): the destination
        # trusts exactly that one, under a fixed alias, with strict checking.
        server_key = self._src.get_server_host_key()
        if server_key is None:
            raise HostKeyError("the source host presented no host key")
        host_key = " ".join(server_key.export_public_key("openssh").decode().split()[:2])
        payload = json.dumps(
            {
                "key": key.export_private_key("openssh").decode(),
                "known_hosts": f"{HOST_KEY_ALIAS} {host_key}\n",
            }
        )
        answer = await ssh.run_json(
            self._dst,
            ssh.agent_command(host, self.destination_run_dir, "put-key", self.destination_run_dir),
            f"provisioning the pull key on the {ssh.describe(host, 'destination')}",
            payload,
        )
        src = self.hosts.source
        self._pull_ssh = {
            "address": src.address,
            "port": src.port,
            "user": src.user,
            "identity": answer["key"],
            "known_hosts": answer["known_hosts"],
            "host_key_alias": HOST_KEY_ALIAS,
            "ciphers": ",".join(ssh.CIPHERS),
            "connect_timeout": int(self.options.connect_timeout),
        }

    async def close(self) -> None:
        """Revoke the key, remove both run directories, close the connections. Best effort
        and shielded from cancellation: leftovers are logged (without key material)."""
        await asyncio.shield(self._close())

    async def _close(self) -> None:
        src_host, dst_host = self.hosts.source, self.hosts.destination
        steps: list[tuple[str, asyncssh.SSHClientConnection | None, ConversionHost, str]] = []
        if self._authorized and self.source_run_dir:
            args = ["revoke", "--marker", self.marker]
            if self.options.source_authorized_keys:
                args += ["--file", self.options.source_authorized_keys]
            steps.append(
                ("revoking the run's key", self._src, src_host,
                 ssh.agent_command(src_host, self.source_run_dir, *args))
            )  # fmt: skip
        for conn, host, run_dir in (
            (self._dst, dst_host, self.destination_run_dir),
            (self._src, src_host, self.source_run_dir),
        ):
            if run_dir:
                steps.append(
                    ("removing the run directory", conn, host,
                     ssh.agent_command(host, run_dir, "cleanup", run_dir))
                )  # fmt: skip
        for what, conn, host, command in steps:
            if conn is None:
                continue
            try:
                await ssh.run_json(conn, command, what)
            except (TransferError, OSError, asyncssh.Error) as exc:
                log.warning("%s: %s failed: %s", host.address, what, exc)
        self._authorized = False
        self.source_run_dir = self.destination_run_dir = None
        for conn in (self._src, self._dst):
            if conn is not None:
                conn.close()
                with contextlib.suppress(Exception):
                    await conn.wait_closed()
        self._src = self._dst = None

    # -- copies

    def _pull_request(self, copy: VolumeCopy) -> dict[str, Any]:
        o = self.options
        return {
            "source_volume_id": copy.source_volume_id,
            "destination_volume_id": copy.destination_volume_id,
            "device_dir": self.hosts.destination.device_dir,
            "state_dir": o.state_dir,
            "chunk_size": o.chunk_size,
            "hash": o.hash_algorithm,
            "codecs": agent_codecs.preference(o.compression),
            "target_zeroed": o.target_zeroed,
            "verify": o.verify,
            "checkpoint_bytes": o.checkpoint_bytes,
            "rate_limit": o.rate_limit,
            "progress_interval": o.progress_interval,
            "ssh": self._pull_ssh,
        }

    async def copy(
        self, copy: VolumeCopy, progress: ProgressCallback | None = None
    ) -> TransferResult:
        """Copy one volume (resuming an interrupted copy of the same pair). Runs on its own
        SSH connection from the destination to the source; raises a TransferError subclass."""
        if self._dst is None or not self.destination_run_dir:
            raise TransferError("the transfer session is not open")
        host = self.hosts.destination
        started = time.monotonic()
        command = ssh.agent_command(host, self.destination_run_dir, "pull", root=True)
        request = json.dumps(self._pull_request(copy)) + "\n"
        async with self._dst.create_process(command, encoding="utf-8") as proc:
            proc.stdin.write(request)
            proc.stdin.write_eof()
            result: dict[str, Any] | None = None
            error: dict[str, Any] | None = None
            async for line in proc.stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                kind = message.get("type")
                if kind == "progress" and progress is not None:
                    progress(_progress(copy, message, time.monotonic() - started))
                elif kind == "result":
                    result = message
                elif kind == "error":
                    error = message
            stderr = (await proc.stderr.read()).strip()
            status = await proc.wait(check=False)
        if error is not None:
            raise _error(copy, error)
        if result is None:
            raise StreamError(
                f"volume {copy.source_volume_id}: the destination agent stopped without a result "
                f"(exit status {status.exit_status}){': ' + stderr[-1500:] if stderr else ''}"
            )
        return TransferResult(
            source_volume_id=copy.source_volume_id,
            destination_volume_id=copy.destination_volume_id,
            bytes_logical=int(result["size"]),
            bytes_allocated=int(result["allocated"]),
            bytes_data=int(result["data_bytes"]),
            bytes_wire=int(result["wire_bytes"]),
            seconds=time.monotonic() - started,
            copy_seconds=float(result["copy_seconds"]),
            resumed_from=int(result["resumed_from"]),
            codec=str(result["codec"]),
            chunks=int(result.get("chunks_total", result["chunks_sent"])),
            digest=result.get("digest"),
            verified=bool(result["verified"]),
        )


def _progress(copy: VolumeCopy, message: dict[str, Any], seconds: float) -> Progress:
    done, size = int(message["position"]), int(message["size"])
    elapsed = max(seconds, 1e-6)
    return Progress(
        source_volume_id=copy.source_volume_id,
        destination_volume_id=copy.destination_volume_id,
        bytes_done=done,
        bytes_total=size,
        data_bytes=int(message["data_bytes"]),
        wire_bytes=int(message["wire_bytes"]),
        seconds=seconds,
        rate=done / elapsed,
        wire_rate=int(message["wire_bytes"]) / elapsed,
    )


def _error(copy: VolumeCopy, message: dict[str, Any]) -> TransferError:
    kind = str(message.get("kind"))
    text = str(message.get("message", ""))
    side = str(message.get("side", "source"))
    if kind == "device_not_found":
        volume = str(message.get("volume_id") or copy.source_volume_id)
        return DeviceNotFoundError(f"{side} conversion host: {text}", volume, side)
    if kind == "host_key":
        return HostKeyError(
            f"volume {copy.source_volume_id}: the destination host refused the source host's "
            f"key: {text}"
        )
    if kind == "verify":
        return VerificationError(f"volume {copy.source_volume_id}: {text}")
    if kind in ("stream", "auth"):
        return StreamError(f"volume {copy.source_volume_id}: {text}")
    return TransferError(f"volume {copy.source_volume_id}: {kind}: {text}")


async def copy_volumes(
    hosts: ConversionHosts,
    copies: Sequence[VolumeCopy],
    *,
    options: TransferOptions | None = None,
    copy_parallelism: int = 2,
    progress: ProgressCallback | None = None,
) -> list[TransferResult]:
    """Copy ``copies`` with at most ``copy_parallelism`` at once, in one session. Each copy
    has its own SSH connection between the hosts (one sshd process serves all channels of a
    connection, so only separate connections use more cores). All copies run to the end; if
    any failed, an ExceptionGroup of their TransferErrors is raised (results of the others
    are on its ``results`` attribute)."""
    if copy_parallelism < 1:
        raise ValueError("copy_parallelism must be at least 1")
    limit = asyncio.Semaphore(copy_parallelism)

    async with TransferSession(hosts, options) as session:

        async def one(copy: VolumeCopy) -> TransferResult:
            async with limit:
                return await session.copy(copy, progress)

        outcomes = await asyncio.gather(*(one(c) for c in copies), return_exceptions=True)
    results = [o for o in outcomes if isinstance(o, TransferResult)]
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:
        for exc in errors:
            if not isinstance(exc, Exception):
                raise exc  # cancellation and the like are not copy failures
        group = ExceptionGroup(
            f"{len(errors)} of {len(copies)} volume copies failed",
            [e for e in errors if isinstance(e, Exception)],
        )
        group.results = results  # type: ignore[attr-defined]
        raise group
    return results
