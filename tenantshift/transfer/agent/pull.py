"""``pull``: the destination agent's command. Opens its own SSH connection to the source host
(OpenSSH client, the run's ephemeral key, the pinned source host key), feeds the stream to a
``Sink`` and reports progress and the result as JSON lines on stdout. Every failure, a
malformed stream included, is reported as one JSON error line, never as a traceback.

Only these small JSON lines go back to the orchestrator; volume data flows source -> here.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import secrets
import struct
import subprocess
import sys
import threading
import time
from typing import IO, Any

from . import codecs, extents, index, keys, validate
from .codecs import CodecError
from .framing import FramingError, Reader
from .sink import RemoteError, Sink, VerifyError, verify_entries
from .state import MAX_PARTS, State, StateDirError

F_SETPIPE_SZ = 1031
READ_BUFFER = 32 * 1024


def ssh_argv(ssh: dict[str, Any]) -> list[str]:
    """The OpenSSH client command for the source host. Every option that could make it trust a
    host or a key it was not given is pinned: no config file, no agent, no other identities,
    the run's known_hosts only, strict checking."""
    return [
        str(ssh.get("command", "ssh")),
        "-F", "/dev/null",
        "-T", "-x", "-a", "-e", "none",
        "-i", str(ssh["identity"]),
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=" + str(ssh["known_hosts"]),
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "HostKeyAlias=" + str(ssh["host_key_alias"]),
        "-o", "CheckHostIP=no",
        "-o", "Compression=no",
        "-o", "LogLevel=ERROR",
        "-o", f"ConnectTimeout={int(ssh.get('connect_timeout', 30))}",
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=4",
        "-c", str(ssh["ciphers"]),
        "-p", str(ssh["port"]),
        "-l", str(ssh["user"]),
        str(ssh["address"]),
        "serve",  # ignored: the key's forced command decides what runs
    ]  # fmt: skip


class _Tail(threading.Thread):
    """Keeps the last few KiB of the ssh client's stderr for error messages."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.chunks: collections.deque[bytes] = collections.deque(maxlen=16)

    def run(self) -> None:
        for line in iter(lambda: self.stream.read(4096), b""):
            self.chunks.append(line)

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace").strip()[-2000:]


def _emit(out: IO[str], obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj, sort_keys=True) + "\n")
    out.flush()


def _classify_ssh_failure(stderr: str) -> str:
    if "Host key verification failed" in stderr or "HOST IDENTIFICATION HAS CHANGED" in stderr:
        return "host_key"
    if "Permission denied" in stderr:
        return "auth"
    return "stream"


def parse_request(request: Any) -> dict[str, Any]:
    """The orchestrator's request, checked before anything touches a path (volume ids become
    file names in the state directory, as root)."""
    if not isinstance(request, dict):
        raise validate.RequestError("the request is not a JSON object")
    ssh = request.get("ssh")
    if not isinstance(ssh, dict) or not isinstance(ssh.get("key"), str):
        raise validate.RequestError("ssh settings or the copy's key are missing")
    for name in ("address", "user", "known_hosts", "host_key_alias", "ciphers"):
        # these become ssh client arguments, run as root: never options
        value = validate.text(ssh.get(name), f"ssh.{name}")
        if value.startswith("-"):
            raise validate.RequestError(f"ssh.{name} must not start with '-'")
    validate.integer(ssh.get("port"), "ssh.port", 1, 65535)
    chunk_size = validate.chunk_size(request.get("chunk_size"))
    state_dir = validate.text(request.get("state_dir"), "state_dir")
    if not os.path.isabs(state_dir):
        raise validate.RequestError("state_dir must be an absolute path")
    return {
        "source_volume_id": validate.volume_id(request.get("source_volume_id"), "source_volume_id"),
        "destination_volume_id": validate.volume_id(
            request.get("destination_volume_id"), "destination_volume_id"
        ),
        "source_generation": validate.generation(request.get("source_generation")),
        "device_dir": validate.text(request.get("device_dir"), "device_dir"),
        "state_dir": state_dir,
        "chunk_size": chunk_size,
        "hash": validate.hash_name(request.get("hash")),
        "codecs": validate.codec_list(request.get("codecs")),
        "target_zeroed": validate.flag(request.get("target_zeroed", False), "target_zeroed"),
        "verify": validate.flag(request.get("verify", True), "verify"),
        "reread": validate.flag(request.get("reread", False), "reread"),
        "checkpoint_bytes": validate.integer(
            request.get("checkpoint_bytes", 256 * 1024 * 1024), "checkpoint_bytes", 1
        ),
        "rate_limit": validate.rate_limit(request.get("rate_limit")),
        "progress_interval": validate.number(
            request.get("progress_interval", 0.5), "progress_interval", 0.0, 3600.0
        ),
        "ssh": ssh,
        "wait_for_go": validate.flag(request.get("wait_for_go", False), "wait_for_go"),
        "streams": validate.integer(request.get("streams", 1), "streams", 0, MAX_PARTS),
        "delta_base": validate.generation(request.get("delta_base")),
    }


class _Stream:
    """One SSH connection to the source and the sink it feeds (one part of the volume)."""

    def __init__(
        self, request: dict[str, Any], sink: Sink, fields: dict[str, Any], blob: bytes = b""
    ) -> None:
        self.sink = sink
        self.error: BaseException | None = None
        source_request = {
            "volume_id": request["source_volume_id"],
            "chunk_size": request["chunk_size"],
            "hash": request["hash"],
            "codecs": sink.codecs_offered,
            "rate_limit": request["rate_limit"],
            # A resumed copy is verified against what the source holds *now*, not against
            # anything remembered on this side.
            "verify_prefix": bool(request["verify"]),
            **fields,
        }
        if blob:
            source_request["delta_index"] = len(blob)  # the index follows the line
        self.proc = subprocess.Popen(
            ssh_argv(request["ssh"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self.tail = _Tail(self.proc.stderr)
        self.tail.start()
        with contextlib.suppress(OSError):  # a bigger pipe: fewer wake-ups (64 KiB default)
            fcntl.fcntl(self.proc.stdout.fileno(), F_SETPIPE_SZ, 1024 * 1024)
        try:
            self.proc.stdin.write((json.dumps(source_request) + "\n").encode("utf-8") + blob)
            self.proc.stdin.close()
        except BrokenPipeError:
            # ssh already exited (refused key, unreachable host): reading its stdout then
            # ends at once, and _eof() reports its exit status and stderr. Not the
            # orchestrator's pipe: that BrokenPipeError means "stop quietly".
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        # A small buffer for the record headers: a payload larger than it is read straight
        # into its destination (BufferedReader.readinto bypasses the buffer then).
        stream = open(self.proc.stdout.fileno(), "rb", buffering=READ_BUFFER, closefd=False)  # noqa: SIM115
        self.reader = Reader(stream)

    def _eof(self) -> RemoteError:
        code = self.proc.wait(timeout=30)
        self.tail.join(timeout=5)
        stderr = self.tail.text()
        return RemoteError(
            _classify_ssh_failure(stderr),
            f"the stream from the source host ended at offset {self.sink.position} "
            f"(ssh exit status {code})" + (f": {stderr}" if stderr else ""),
        )

    def start(self) -> dict[str, Any]:
        try:
            return self.sink.start(self.reader)
        except EOFError:
            raise self._eof() from None

    def run(self) -> None:
        try:
            self.sink.run(self.reader)
        except EOFError:
            self.error = self._eof()
        except BaseException as exc:  # reported by the thread that waits for us
            self.error = exc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _attempt(
    request: dict[str, Any],
    fd: int,
    state: State,
    out: IO[str],
    held: index.Hashes | None = None,
) -> list[Sink]:
    """One attempt at the copy: one stream per part of the volume, each in its own thread
    (reading from ssh, decompressing, hashing and writing release the GIL, so the streams
    overlap on several cores). Returns the sinks, in part order. ``held``: a delta copy's
    index of what the destination holds (one stream, sent to the source)."""
    lock = threading.Lock()
    last = [0.0]
    interval = float(request["progress_interval"])
    streams: list[_Stream] = []

    def progress(_: Sink) -> None:
        now = time.monotonic()
        if now - last[0] >= interval:
            with lock:
                last[0] = now
                _emit(out, _progress([s.sink for s in streams]))

    offered = [c for c in request["codecs"] if c in codecs.available()] or ["none"]
    plans: list[dict[str, Any]]
    if held is not None:  # a delta copy: one stream, from the start, never resumed
        plans = [{"start": 0}]
    elif state.parts:  # resume: each part from where it got to
        plans = [{"begin": b, "start": d, "end": e} for b, e, d in state.parts]
    elif _streams(request, fd) > 1:
        n = _streams(request, fd)
        plans = [{"split": [i, n]} for i in range(n)]
    else:
        plans = [{"start": 0}]
    try:
        for part, fields in enumerate(plans):
            sink = Sink(
                fd,
                state,
                chunk_size=request["chunk_size"],
                hash_name=request["hash"],
                codecs_offered=offered,
                target_zeroed=request["target_zeroed"],
                checkpoint_bytes=request["checkpoint_bytes"],
                progress=progress,
                part=part,
                split="split" in fields,
                index=held,
            )
            blob = index.pack(held, request["hash"]) if held is not None else b""
            streams.append(_Stream(request, sink, fields, blob))
        hellos = [s.start() for s in streams]
        sinks = [s.sink for s in streams]
        if not state.parts:
            _check_tiling(sinks)
            state.start_parts([[s.begin, s.end, s.position] for s in sinks], sinks[0].size)
        _emit(out, {"type": "hello", "hello": hellos[0], "streams": len(streams),
                    "resumed_from": sum(s.resumed_from - s.begin for s in sinks)})  # fmt: skip
        threads = [threading.Thread(target=s.run, daemon=True) for s in streams]
        for t in threads:
            t.start()
        failed: _Stream | None = None
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.05)
            failed = failed or next((s for s in streams if s.error is not None), None)
            if failed is not None:  # one broke: stop the others, report the first error
                for s in streams:
                    s.stop()
        failed = failed or next((s for s in streams if s.error is not None), None)
        if failed is not None and failed.error is not None:
            raise failed.error
        if len(sinks) > 1:
            state.complete()  # every part is done: a finished copy is never resumed from
        return sinks
    finally:
        for s in streams:
            s.stop()


#: ``streams: 0`` (auto): one stream per this much of the target's size, at most AUTO_MAX.
AUTO_BYTES_PER_STREAM = 2 * 1024 * 1024 * 1024
AUTO_MAX = 4


def _streams(request: dict[str, Any], fd: int) -> int:
    if request["streams"]:
        return int(request["streams"])
    return max(1, min(AUTO_MAX, extents.device_size(fd) // AUTO_BYTES_PER_STREAM))


def _check_tiling(sinks: list[Sink]) -> None:
    """The parts the source computed must cover the volume exactly, in order (every stream
    computed them from what it saw; a source that changed in between fails here)."""
    at = 0
    for sink in sinks:
        if sink.begin != at or sink.size != sinks[0].size:
            raise RemoteError("protocol", "the source's parts do not tile the volume")
        at = sink.end
    if at != sinks[0].size:
        raise RemoteError("protocol", "the source's parts do not tile the volume")


def _progress(sinks: list[Sink]) -> dict[str, Any]:
    return {
        "type": "progress",
        "position": sum(s.position - s.begin for s in sinks if s.size),
        "size": max((s.size for s in sinks), default=0),
        "data_bytes": sum(s.data_bytes for s in sinks),
        "wire_bytes": sum(s.wire_bytes for s in sinks),
    }


def _held(request: dict[str, Any], fd: int, state: State) -> tuple[index.Hashes, bool, float]:
    """A delta copy's index of the destination volume: the one the last verified copy left,
    when it is for this volume as of ``delta_base``, else rebuilt by reading the volume
    here. Returns it, whether it was rebuilt, and the seconds that took."""
    began = time.monotonic()
    size = extents.device_size(fd)
    volume, chunk, hash_name = (
        request["destination_volume_id"],
        request["chunk_size"],
        request["hash"],
    )
    held = index.load(state.dir_fd, volume, size, chunk, hash_name, request["delta_base"])
    if held is not None:
        return held, False, 0.0
    return index.rebuild(fd, size, chunk, hash_name), True, time.monotonic() - began


def _copy(request: dict[str, Any], fd: int, state: State, out: IO[str]) -> dict[str, Any]:
    """One copy: resume if the state allows, verify, and start over once when the resumed
    prefix does not match what the source holds now (a changed source, or a state file that
    lied). A delta copy (``delta_base``) sends only the chunks the destination's index does
    not hold. Every verified copy leaves the index for the next delta."""
    started = time.monotonic()
    sinks: list[Sink] = []
    copied = verify_seconds = 0.0
    verified: dict[str, Any] = {}
    held: index.Hashes | None = None
    rebuilt, index_seconds = False, 0.0
    if request["delta_base"] is not None:
        held, rebuilt, index_seconds = _held(request, fd, state)
        state.reset()  # a delta copy starts from the beginning: it is cheap
        request = dict(request, target_zeroed=False)  # the volume holds older data
    # From the first write on, the index no longer describes the volume until it is verified.
    index.remove(state.dir_fd, request["destination_volume_id"])
    for attempt in range(2):
        resumed = bool(state.parts)
        try:
            sinks = _attempt(request, fd, state, out, held)
            copied = time.monotonic()
            if request["verify"]:
                first = sinks[0]
                ranges = (
                    [(0, first.size)]
                    if request["reread"]
                    else [(s.begin, s.resumed_from) for s in sinks]
                )
                entries = [e for s in sinks for e in s.entries]
                verified = verify_entries(
                    fd, first.size, first.chunk_size, first.hash_name, entries, ranges
                )
                index.save(
                    state.dir_fd,
                    request["destination_volume_id"],
                    first.size,
                    first.chunk_size,
                    first.hash_name,
                    verified["digest"],
                    index.from_entries(entries, first.size, first.chunk_size),
                )
            verify_seconds = time.monotonic() - copied
            break
        except RemoteError as exc:
            if exc.kind != "stale_state" or attempt:
                raise
        except VerifyError:
            if not resumed or attempt:
                raise
        state.reset()
        sinks = []
    first = sinks[0]
    result: dict[str, Any] = {
        "type": "result",
        "size": first.size,
        "allocated": int(first.hello["allocated"]),
        "codec": first.hello["codec"],
        "hash": first.hello["hash"],
        "streams": len(sinks),
        "resumed_from": sum(s.resumed_from - s.begin for s in sinks),
        "data_bytes": sum(s.data_bytes for s in sinks),
        "wire_bytes": sum(s.wire_bytes for s in sinks),
        "chunks_sent": sum(s.chunks for s in sinks),
        "read_bytes": sum(int(s.summary.get("read_bytes") or 0) for s in sinks),
        "delta": held is not None,
        "chunks_changed": sum(s.chunks + s.chunks_zeroed for s in sinks) if held is not None else 0,
        "index_bytes": len(index.pack(held, request["hash"])) if held is not None else 0,
        "index_rebuilt": rebuilt,
        "index_seconds": index_seconds,
        "copy_seconds": copied - started,
        "verify_seconds": verify_seconds,
        "verified": bool(verified),
        "digest": None,
    }
    result.update(verified)
    result["seconds"] = time.monotonic() - started
    return result


def _error(kind: str, message: str, side: str, volume_id: str | None = None) -> dict[str, Any]:
    out = {"type": "error", "kind": kind, "message": message, "side": side}
    if volume_id is not None:
        out["volume_id"] = volume_id
    return out


#: Anything a malformed stream or request can raise: reported as a protocol error, never as
#: a traceback.
_PROTOCOL_ERRORS = (
    FramingError,
    CodecError,
    validate.RequestError,
    ValueError,
    KeyError,
    TypeError,
    OverflowError,
    struct.error,
    MemoryError,
)


def pull(request: Any, out: IO[str], stdin: IO[bytes] | None = None) -> int:
    try:
        req = parse_request(request)
    except validate.RequestError as exc:
        _emit(out, _error("protocol", f"bad pull request: {exc}", "destination"))
        return 2
    volume_id = req["destination_volume_id"]
    try:
        fd = extents.open_device(req["device_dir"], volume_id, os.O_RDWR)
    except extents.DeviceNotFound as exc:
        _emit(out, _error("device_not_found", str(exc), "destination", volume_id))
        return 2
    key_path = None
    state = None
    try:
        state = State(
            req["state_dir"],
            {
                "source_volume_id": req["source_volume_id"],
                "destination_volume_id": volume_id,
                "source_generation": req["source_generation"],
                "chunk_size": req["chunk_size"],
                "hash": req["hash"],
            },
        )
        key_path = _write_key(req["ssh"])
        if req["wait_for_go"]:
            # The orchestrator authorises the copy's key on the source meanwhile (the set-up
            # above overlaps that round trip); "go" says the key line is in place.
            line = stdin.readline(16) if stdin is not None else b""
            if line.strip() != b"go":
                _emit(out, _error("cancelled", "the copy was cancelled before it started",
                                  "destination"))  # fmt: skip
                return 2
        _emit(out, _copy(req, fd, state, out))
        return 0
    except RemoteError as exc:
        side = "destination" if exc.kind in ("target_too_small",) else "source"
        _emit(out, _error(exc.kind, str(exc), side, exc.volume_id))
        return 1
    except VerifyError as exc:
        _emit(out, _error("verify", str(exc), "destination"))
        return 1
    except StateDirError as exc:
        _emit(out, _error("state_dir", str(exc), "destination"))
        return 1
    except _PROTOCOL_ERRORS as exc:
        _emit(out, _error("protocol", f"{type(exc).__name__}: {exc}"[:2000], "source"))
        return 1
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        _emit(out, _error("io", str(exc), "destination", volume_id))
        return 1
    finally:
        if key_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(key_path)
        if state is not None:
            state.close()
        os.close(fd)


def _write_key(ssh: dict[str, Any]) -> str:
    """The copy's private key, for the ssh client, into the run directory beside the pinned
    known_hosts (removed after the copy). Never a directory of its own: the run directory is
    journaled by the orchestrator, so a pull killed before its ``finally`` leaves the key only
    where the next run's sweep removes it."""
    run_dir = os.path.dirname(str(ssh["known_hosts"]))
    keys.check_run_dir(run_dir)
    path = os.path.join(run_dir, f"pull-{os.getpid()}-{secrets.token_hex(8)}.key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(str(ssh["key"]))
    ssh["identity"] = path
    return path


def main(stdin: IO[bytes], out: IO[str]) -> int:
    try:
        request = json.loads(stdin.readline(1024 * 1024).decode("utf-8"))
    except ValueError:
        _emit(out, _error("protocol", "the pull request is not a JSON line", "destination"))
        return 2
    try:
        return pull(request, out, stdin)
    except BrokenPipeError:
        return 3  # the orchestrator went away: stop quietly, the state file has the resume point


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.stdin.buffer, sys.stdout))
