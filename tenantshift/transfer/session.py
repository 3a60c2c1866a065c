"""A transfer session: the agent installed on both conversion hosts and an ephemeral key that
lets the destination host, and only it, pull from the source host for the session's lifetime.

Set-up (``open``):
1. verified asyncssh control connections to both hosts;
2. the agent zip into a fresh 0700 directory on each;
3. the source's host key (as verified by step 1) written 0600 into the destination's run
   directory.

Each copy (``copy``) generates its own ed25519 key pair here, authorises it on the source with
``restrict``, an ``expiry-time`` and a forced command naming that copy's source volume
(``keyline``), hands the private key to the destination's pull agent on stdin, and revokes the
line when the copy ends. Volumes need not be known when the session opens.

Tear-down (``close``) revokes every line of the session (by its marker), deletes both run
directories and closes the connections, whatever happened before; it raises ``RevokeError``
if the revocation failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

import asyncssh

from tenantshift.manifest.schema import ConversionHost, HostPair, as_pair

from . import ssh
from .agent import codecs as agent_codecs  # stdlib only; the preference table is shared
from .bundle import agent_zip
from .errors import (
    DeviceNotFoundError,
    HostKeyError,
    RevokeError,
    StreamError,
    TransferError,
    VerificationError,
)
from .keyline import check_host_fields, forced_command, key_line
from .model import Progress, TransferOptions, TransferResult, VolumeCopy

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]

#: HostKeyAlias the destination's ssh client checks the source host key under.
HOST_KEY_ALIAS = "tenantshift-source"


class TransferSession:
    """``async with TransferSession(hosts) as session: await session.copy(...)``.

    ``marker`` is known from construction on: record it before ``open()`` so that a cleanup
    after a crash can pass it to ``sweep_leftover_keys``. Every copy's key line ends with
    ``<marker>-<hex>``.
    """

    def __init__(self, hosts: HostPair, options: TransferOptions | None = None) -> None:
        hosts = as_pair(hosts)  # one session serves one pair of hosts
        check_host_fields(hosts.source, "source")
        check_host_fields(hosts.destination, "destination")
        self.hosts = hosts
        self.options = options or TransferOptions()
        self.marker = f"tenantshift-transfer-{secrets.token_hex(16)}"
        self.source_run_dir: str | None = None
        self.destination_run_dir: str | None = None
        self.leftover_marker: str | None = None
        """Set when close() could not revoke this session's key lines (see RevokeError)."""
        self._source_uid: int | None = None
        self._src: asyncssh.SSHClientConnection | None = None
        self._dst: asyncssh.SSHClientConnection | None = None
        self._authorized = False  # a key line may exist on the source
        #: markers of copies whose key line may still be in authorized_keys
        self._live_markers: set[str] = set()
        self._pull_ssh: dict[str, Any] = {}
        self._src_ctl: ssh.Control | None = None
        self._dst_ctl: ssh.Control | None = None
        self.hash_algorithm: str = self.options.hash_algorithm
        """The per-chunk hash copies use (``auto`` resolved when the session opens)."""

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
        try:
            await self.close()
        except RevokeError as err:
            if exc is None:
                raise
            # The body's error stays the one raised; leftover_marker says what to sweep.
            exc.add_note(str(err))

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
        for connected in (src, dst):
            if isinstance(connected, BaseException):
                raise connected
        assert self._src is not None and self._dst is not None
        # The key the orchestrator verified (or, under insecure-skip, saw): the destination
        # trusts exactly that one, under a fixed alias, with strict checking. It is written
        # with the destination's agent, and both installs run at once (one round trip).
        server_key = self._src.get_server_host_key()
        if server_key is None:
            raise HostKeyError("the source host presented no host key")
        host_key = " ".join(server_key.export_public_key("openssh").decode().split()[:2])
        bundle = agent_zip()
        started = await asyncio.gather(
            ssh.start_control(self._src, src_host, "source", bundle, timeout=2 * timeout),
            ssh.start_control(
                self._dst,
                dst_host,
                "destination",
                bundle,
                f"{HOST_KEY_ALIAS} {host_key}\n",
                timeout=2 * timeout,
            ),
            return_exceptions=True,
        )
        # Keep whichever agent started, so close() removes its run directory even when the
        # other failed.
        if isinstance(started[0], ssh.Control):
            self._src_ctl = started[0]
            self.source_run_dir = str(started[0].info["run_dir"])
            self._source_uid = int(started[0].info["uid"])
        if isinstance(started[1], ssh.Control):
            self._dst_ctl = started[1]
            self.destination_run_dir = str(started[1].info["run_dir"])
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        assert self._src_ctl is not None and self._dst_ctl is not None
        self.hash_algorithm = self.options.hash_algorithm
        if self.hash_algorithm == "auto":
            both = set(self._src_ctl.info.get("hashes", [])) & set(
                self._dst_ctl.info.get("hashes", [])
            )
            self.hash_algorithm = "xxh3" if "xxh3" in both else "sha256"
        assert self.destination_run_dir
        self._pull_ssh = {
            "address": src_host.address,
            "port": src_host.port,
            "user": src_host.user,
            "known_hosts": f"{self.destination_run_dir}/known_hosts",
            "host_key_alias": HOST_KEY_ALIAS,
            "ciphers": ",".join(ssh.CIPHERS),
            "connect_timeout": int(self.options.connect_timeout),
        }
        log.info(
            "transfer session ready: %s pulls from %s",
            ssh.describe(dst_host, "destination"),
            ssh.describe(src_host, "source"),
        )

    def _keys_file_args(self) -> list[str]:
        path = self.options.source_authorized_keys
        return ["--file", path] if path else []

    async def _authorize(
        self, key: asyncssh.SSHKey, marker: str, volume_ids: Sequence[str]
    ) -> None:
        """A key line that may run ``serve`` for ``volume_ids`` only, expiring by itself."""
        assert self._src and self.source_run_dir and self._source_uid is not None
        host = self.hosts.source
        command = forced_command(host, self.source_run_dir, self._source_uid, volume_ids)
        public = " ".join(key.export_public_key("openssh").decode().split()[:2])
        line = key_line(command, public, marker, self.options.source_from)
        self._authorized = True  # before the call: a failure half-way is still revoked
        if self._src_ctl is not None:
            answer = await self._src_ctl.request(
                "authorising a copy's key",
                op="authorize",
                line=line,
                marker=marker,
                ttl=self.options.key_lifetime,
                file=self.options.source_authorized_keys,
            )
        else:
            args = ["authorize", "--marker", marker, "--ttl", str(self.options.key_lifetime)]
            answer = await ssh.run_json(
                self._src,
                ssh.agent_command(host, self.source_run_dir, *args, *self._keys_file_args()),
                f"authorising a copy's key on the {ssh.describe(host, 'source')}",
                line,
            )
        log.debug("ephemeral key authorised in %s", answer.get("file"))

    async def _revoke(self, marker: str) -> None:
        if self._src is None or not self.source_run_dir:
            raise TransferError("no connection to the source host")
        host = self.hosts.source
        if self._src_ctl is not None:
            await self._src_ctl.request(
                "revoking a key", op="revoke", marker=marker,
                file=self.options.source_authorized_keys,
            )  # fmt: skip
            return
        await ssh.run_json(
            self._src,
            ssh.agent_command(
                host, self.source_run_dir, "revoke", "--marker", marker, *self._keys_file_args()
            ),
            f"revoking a key on the {ssh.describe(host, 'source')}",
        )

    async def close(self) -> None:
        """Revoke every key line of the session, remove both run directories, close the
        connections. Shielded from cancellation. Raises ``RevokeError`` (after everything
        else is done) if the key lines may still be there; other leftovers are logged."""
        await asyncio.shield(self._close())

    async def _close(self) -> None:
        src_host, dst_host = self.hosts.source, self.hosts.destination
        revoke_error: RevokeError | None = None

        async def source_side() -> None:
            nonlocal revoke_error
            # Every copy revokes its own line; the session's marker covers any that failed.
            if self._authorized and self._live_markers:
                try:
                    await self._revoke(self.marker)  # the session's lines and every copy's
                    self._live_markers.clear()
                except (TransferError, OSError, asyncssh.Error) as exc:
                    where = ssh.describe(src_host, "source")
                    revoke_error = RevokeError(
                        f"{where}: the session's key lines (marker {self.marker}) may still be "
                        f"in authorized_keys: {exc}; they expire by themselves, or sweep them "
                        "with sweep_leftover_keys",
                        self.marker,
                        where,
                    )
                    self.leftover_marker = self.marker
            await self._remove_run_dir(self._src, self._src_ctl, src_host, self.source_run_dir)

        # Both hosts at once: tear-down costs one round trip, not four.
        await asyncio.gather(
            source_side(),
            self._remove_run_dir(self._dst, self._dst_ctl, dst_host, self.destination_run_dir),
        )
        for ctl in (self._src_ctl, self._dst_ctl):
            if ctl is not None:
                ctl.close()
        self._src_ctl = self._dst_ctl = None
        self._authorized = False
        self.source_run_dir = self.destination_run_dir = None
        for conn in (self._src, self._dst):
            if conn is not None:
                conn.close()
                with contextlib.suppress(Exception):
                    await conn.wait_closed()
        self._src = self._dst = None
        if revoke_error is not None:
            raise revoke_error

    @staticmethod
    async def _remove_run_dir(
        conn: asyncssh.SSHClientConnection | None,
        ctl: ssh.Control | None,
        host: ConversionHost,
        run_dir: str | None,
    ) -> None:
        if not run_dir or conn is None:
            return
        try:
            if ctl is not None:
                await ctl.request("removing the run directory", op="cleanup")
                return
            await ssh.run_json(
                conn,
                ssh.agent_command(host, run_dir, "cleanup", run_dir),
                "removing the run directory",
            )
        except (TransferError, OSError, asyncssh.Error) as exc:
            log.warning("%s: removing the run directory failed: %s", host.address, exc)

    # -- copies

    def _pull_request(self, copy: VolumeCopy, key: asyncssh.SSHKey) -> dict[str, Any]:
        o = self.options
        return {
            "source_volume_id": copy.source_volume_id,
            "destination_volume_id": copy.destination_volume_id,
            "source_generation": copy.source_generation,
            "delta_base": copy.delta_base,
            "device_dir": self.hosts.destination.device_dir,
            "state_dir": o.state_dir,
            "chunk_size": copy.chunk_size or o.chunk_size,
            "hash": self.hash_algorithm,
            "codecs": agent_codecs.preference(o.compression),
            "target_zeroed": o.target_zeroed,
            "verify": o.verify,
            "reread": o.reread,
            "streams": o.streams,
            "checkpoint_bytes": o.checkpoint_bytes,
            "rate_limit": o.rate_limit,
            "progress_interval": o.progress_interval,
            # the copy's private key: on stdin, written 0600 by the pull agent for this copy
            "ssh": dict(self._pull_ssh, key=key.export_private_key("openssh").decode()),
        }

    async def copy(
        self, copy: VolumeCopy, progress: ProgressCallback | None = None
    ) -> TransferResult:
        """Copy one volume (resuming an interrupted copy of the same pair and source
        generation). Runs on its own SSH connection from the destination to the source, with
        a key of its own that may read this one source volume and is revoked when the copy
        ends. Raises a TransferError subclass."""
        if self._dst is None or self._src is None or not self.destination_run_dir:
            raise TransferError("the transfer session is not open")
        key = asyncssh.generate_private_key("ssh-ed25519")
        marker = f"{self.marker}-{secrets.token_hex(8)}"
        self._live_markers.add(marker)
        try:
            authorized = self._authorize(key, marker, [copy.source_volume_id])
            return await self._pull(copy, key, progress, authorized)
        finally:
            try:
                await asyncio.shield(self._revoke(marker))
                self._live_markers.discard(marker)
            except (TransferError, OSError, asyncssh.Error) as exc:
                # close() revokes by the session's marker, and raises if that fails too.
                log.warning("revoking the key of volume %s failed: %s", copy.source_volume_id, exc)

    async def _pull(
        self,
        copy: VolumeCopy,
        key: asyncssh.SSHKey,
        progress: ProgressCallback | None,
        authorized: Awaitable[None],
    ) -> TransferResult:
        """Start the pull agent while ``authorized`` puts the key line in place (the agent
        sets up, then waits for "go"), then follow its progress to its result."""
        assert self._dst is not None and self.destination_run_dir
        host = self.hosts.destination
        started = time.monotonic()
        command = ssh.agent_command(host, self.destination_run_dir, "pull", root=True)
        request = json.dumps(dict(self._pull_request(copy, key), wait_for_go=True)) + "\n"
        async with self._dst.create_process(command, encoding="utf-8") as proc:
            proc.stdin.write(request)
            try:
                await authorized
            except BaseException:
                proc.stdin.write_eof()  # no "go": the agent stops without connecting
                raise
            # The agent may have stopped already (a bad request, a missing device): its
            # error line tells why.
            with contextlib.suppress(BrokenPipeError, asyncssh.Error):
                proc.stdin.write("go\n")
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
            verify_seconds=float(result.get("verify_seconds", 0.0)),
            bytes_read=int(result.get("read_bytes", 0)),
            delta=bool(result.get("delta", False)),
            chunks_changed=int(result.get("chunks_changed", 0)),
            index_bytes=int(result.get("index_bytes", 0)),
            index_rebuilt=bool(result.get("index_rebuilt", False)),
            index_seconds=float(result.get("index_seconds", 0.0)),
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
    hosts: HostPair,
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
    are on its ``results`` attribute). If only the final revocation failed, RevokeError is
    raised with every result on its ``results``."""
    if copy_parallelism < 1:
        raise ValueError("copy_parallelism must be at least 1")
    limit = asyncio.Semaphore(copy_parallelism)
    revoke_error: RevokeError | None = None
    outcomes: list[TransferResult | BaseException] = []
    try:
        async with TransferSession(hosts, options) as session:

            async def one(copy: VolumeCopy) -> TransferResult:
                async with limit:
                    return await session.copy(copy, progress)

            outcomes = await asyncio.gather(*(one(c) for c in copies), return_exceptions=True)
    except RevokeError as exc:
        revoke_error = exc
    results = [o for o in outcomes if isinstance(o, TransferResult)]
    errors: list[Exception] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome  # cancellation and the like are not copy failures
            errors.append(outcome)
    if revoke_error is not None:
        revoke_error.results = results
        if not errors:
            raise revoke_error
        errors.append(revoke_error)
    if errors:
        group = ExceptionGroup(f"{len(errors)} of {len(copies)} volume copies failed", errors)
        group.results = results  # type: ignore[attr-defined]
        raise group
    return results
