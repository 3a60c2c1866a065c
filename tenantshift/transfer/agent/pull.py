"""``pull``: the destination agent's command. Opens its own SSH connection to the source host
(OpenSSH client, the run's ephemeral key, the pinned source host key), feeds the stream to a
``Sink`` and reports progress and the result as JSON lines on stdout.

Only these small JSON lines go back to the orchestrator; volume data flows source -> here.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from typing import IO, Any

from . import codecs, extents
from .framing import Reader
from .sink import RemoteError, Sink, VerifyError
from .state import State

F_SETPIPE_SZ = 1031


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


def _attempt(request: dict[str, Any], fd: int, state: State, out: IO[str]) -> Sink:
    last = [0.0]
    interval = float(request.get("progress_interval", 0.5))

    def progress(sink: Sink) -> None:
        now = time.monotonic()
        if now - last[0] >= interval:
            last[0] = now
            _emit(out, _progress(sink))

    sink = Sink(
        fd,
        state,
        target_zeroed=bool(request.get("target_zeroed", False)),
        checkpoint_bytes=int(request.get("checkpoint_bytes", 256 * 1024 * 1024)),
        progress=progress,
    )
    source_request = {
        "volume_id": request["source_volume_id"],
        "start": state.offset,
        "chunk_size": request["chunk_size"],
        "hash": request["hash"],
        "codecs": [c for c in request["codecs"] if c in codecs.available()],
        "rate_limit": request.get("rate_limit"),
    }
    proc = subprocess.Popen(
        ssh_argv(request["ssh"]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    tail = _Tail(proc.stderr)
    tail.start()
    try:
        with contextlib.suppress(OSError):  # a bigger pipe: fewer wake-ups (64 KiB default)
            fcntl.fcntl(proc.stdout.fileno(), F_SETPIPE_SZ, 1024 * 1024)
        proc.stdin.write((json.dumps(source_request) + "\n").encode("utf-8"))
        proc.stdin.close()
        stream = open(proc.stdout.fileno(), "rb", buffering=1024 * 1024, closefd=False)  # noqa: SIM115
        reader = Reader(stream)
        try:
            hello = sink.start(reader)
            _emit(out, {"type": "hello", "hello": hello, "resumed_from": state.offset})
            sink.run(reader)
        except EOFError:
            code = proc.wait(timeout=30)
            tail.join(timeout=5)
            stderr = tail.text()
            raise RemoteError(
                _classify_ssh_failure(stderr),
                f"the stream from the source host ended at offset {sink.position} "
                f"(ssh exit status {code})" + (f": {stderr}" if stderr else ""),
            ) from None
        return sink
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _progress(sink: Sink) -> dict[str, Any]:
    return {
        "type": "progress",
        "position": sink.position,
        "size": int(sink.hello.get("size", 0)),
        "data_bytes": sink.data_bytes,
        "wire_bytes": sink.wire_bytes,
    }


def pull(request: dict[str, Any], out: IO[str]) -> int:
    started = time.monotonic()
    volume_id = str(request["destination_volume_id"])
    try:
        path = extents.find_device(str(request["device_dir"]), volume_id)
    except extents.DeviceNotFound as exc:
        _emit(out, {"type": "error", "kind": "device_not_found", "message": str(exc),
                    "volume_id": volume_id, "side": "destination"})  # fmt: skip
        return 2
    fd = os.open(path, os.O_RDWR)
    state = State(
        str(request["state_dir"]),
        {
            "source_volume_id": request["source_volume_id"],
            "destination_volume_id": volume_id,
            "chunk_size": request["chunk_size"],
            "hash": request["hash"],
        },
    )
    try:
        try:
            sink = _attempt(request, fd, state, out)
        except RemoteError as exc:
            if exc.kind != "stale_state":
                raise
            state.reset()  # the saved resume point is for another volume size: start over
            sink = _attempt(request, fd, state, out)
        copied = time.monotonic()
        result: dict[str, Any] = {
            "type": "result",
            "size": int(sink.hello["size"]),
            "allocated": int(sink.hello["allocated"]),
            "codec": sink.hello["codec"],
            "hash": sink.hello["hash"],
            "resumed_from": sink.resumed_from,
            "data_bytes": sink.data_bytes,
            "wire_bytes": sink.wire_bytes,
            "chunks_sent": sink.chunks,
            "copy_seconds": copied - started,
            "verified": False,
            "digest": None,
        }
        if request.get("verify", True):
            result.update(sink.verify(), verified=True)
        result["seconds"] = time.monotonic() - started
        _emit(out, result)
        return 0
    except RemoteError as exc:
        side = "destination" if exc.kind in ("target_too_small",) else "source"
        _emit(out, {"type": "error", "kind": exc.kind, "message": str(exc),
                    "volume_id": exc.volume_id, "side": side})  # fmt: skip
        return 1
    except VerifyError as exc:
        _emit(out, {"type": "error", "kind": "verify", "message": str(exc), "side": "destination"})
        return 1
    finally:
        state.close()
        os.close(fd)


def main(stdin: IO[bytes], out: IO[str]) -> int:
    request = json.loads(stdin.readline(1024 * 1024).decode("utf-8"))
    try:
        return pull(request, out)
    except BrokenPipeError:
        return 3  # the orchestrator went away: stop quietly, the state file has the resume point


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.stdin.buffer, sys.stdout))
