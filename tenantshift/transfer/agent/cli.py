"""Command line of the agent: ``python agent.pyz COMMAND ...``.

Requests and secrets arrive on stdin, never as arguments (arguments show up in ``ps`` and in
sshd's logs). Answers are JSON on stdout; ``serve`` answers with the binary stream.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import IO

from . import PROTOCOL_VERSION

# Each command imports only what it uses (below): starting the agent is on the critical
# path of every copy, on both hosts.

F_SETPIPE_SZ = 1031


def _print(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tenantshift-agent")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="protocol version, codecs, python")
    serve = sub.add_parser("serve", help="stream a volume (request on stdin)")
    serve.add_argument("--device-dir", required=True)
    # The volumes this invocation may read: fixed in the key's forced command.
    serve.add_argument("--volume-id", action="append", required=True, dest="volume_ids")
    sub.add_parser("pull", help="pull a volume from the source host (request on stdin)")
    digest = sub.add_parser("digest", help="content digest of a volume's device")
    digest.add_argument("--device-dir", required=True)
    digest.add_argument("--volume-id", required=True)
    digest.add_argument("--chunk-size", type=int, default=4 * 1024 * 1024)
    digest.add_argument("--hash", default="sha256")
    auth = sub.add_parser("authorize", help="add the key line on stdin to authorized_keys")
    auth.add_argument("--marker", required=True)
    auth.add_argument("--file")
    auth.add_argument("--ttl", type=int, help="seconds until the line expires")
    rev = sub.add_parser("revoke", help="remove this run's key lines from authorized_keys")
    which = rev.add_mutually_exclusive_group(required=True)
    which.add_argument("--marker")
    which.add_argument("--every-run", action="store_true", help="the lines of every run")
    rev.add_argument("--file")
    clean = sub.add_parser("cleanup", help="remove the run dir")
    clean.add_argument("run_dir")
    ctl = sub.add_parser("control", help="answer authorize/revoke/cleanup lines on stdin")
    ctl.add_argument("run_dir")
    args = parser.parse_args(argv)

    if args.command == "info":
        _print(_info())
        return 0
    if args.command == "serve":
        from . import source

        try:  # a bigger pipe to sshd, when stdout is one
            import fcntl

            fcntl.fcntl(1, F_SETPIPE_SZ, 1024 * 1024)
        except OSError:
            pass
        out = os.fdopen(1, "wb", buffering=1024 * 1024, closefd=False)
        try:
            return source.main(sys.stdin.buffer, out, args.device_dir, args.volume_ids)
        except BrokenPipeError:
            return 3
    if args.command == "pull":
        from . import pull

        return pull.main(sys.stdin.buffer, sys.stdout)
    if args.command == "digest":
        from . import extents, sink

        try:
            fd = extents.open_device(args.device_dir, args.volume_id, os.O_RDONLY)
        except extents.DeviceNotFound as exc:
            _print({"error": str(exc), "volume_id": args.volume_id})
            return 2
        try:
            size = extents.device_size(fd)
            value = sink.device_digest(fd, size, args.chunk_size, args.hash)
            _print({"size": size, "digest": value})
        finally:
            os.close(fd)
        return 0
    from . import keys

    if args.command == "authorize":
        _print(keys.authorize(sys.stdin.read(16384), args.marker, args.file, args.ttl))
        return 0
    if args.command == "revoke":
        _print(keys.revoke(args.marker, args.file, every_run=args.every_run))
        return 0
    if args.command == "cleanup":
        _print(keys.cleanup(args.run_dir))
        return 0
    if args.command == "control":
        return control(args.run_dir, sys.stdin.buffer)
    return 2  # pragma: no cover (argparse rejects unknown commands)


def _info() -> dict[str, object]:
    from . import codecs, hashes

    return {
        "protocol": PROTOCOL_VERSION,
        "codecs": codecs.available(),
        "hashes": hashes.available(),
        "python": list(sys.version_info[:3]),
    }


def control(run_dir: str, stdin: IO[bytes]) -> int:
    """The session's control channel on a host: one process for the whole session, so that
    authorising and revoking a copy's key and the final clean-up are a line each on an open
    channel instead of a new SSH session and interpreter each (which cost 0.1-0.5 s apiece
    on a busy host). Runs as the login user, like those commands did. The first line out
    says where it runs (run dir, uid) and what it can do (codecs, hashes). EOF (the
    orchestrator went away) ends it and leaves the run dir for the engine's sweep."""
    from . import keys

    keys.check_run_dir(run_dir)
    _print({"run_dir": run_dir, "uid": os.getuid(), **_info()})
    for raw in iter(lambda: stdin.readline(65536), b""):
        try:
            req = json.loads(raw.decode("utf-8"))
            op = req.get("op") if isinstance(req, dict) else None
            if op == "authorize":
                ttl = req.get("ttl")
                answer: dict[str, object] = dict(keys.authorize(
                    str(req["line"]), str(req["marker"]), req.get("file"),
                    int(ttl) if ttl is not None else None,
                ))  # fmt: skip
            elif op == "revoke":
                answer = keys.revoke(str(req["marker"]), req.get("file"))
            elif op == "cleanup":
                _print(keys.cleanup(run_dir))
                return 0
            else:
                answer = {"error": f"unknown control operation {op!r}"}
        except (ValueError, KeyError, TypeError, OSError) as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"[:1500]}
        _print(answer)
    return 0
