"""The off-the-shelf pipelines ``benchmarks/transfer.py`` compares ours with, as shell scripts
run *on the destination host* (it pulls from the source host over SSH, like our agent).

Every pipeline uses the same SSH client settings (the devcloud's key, the pinned known_hosts,
aes128-gcm) and ends with an fsync of the destination (``sync FILE``), as our copy does, so
wall times compare like with like.

- ``naive``: ``ssh src dd | dd`` (everything read and sent, zeros written).
- ``sparse-dd``: the same with ``dd conv=sparse`` at the destination (zeros still sent).
- ``nbdkit-qemu-img``: os-migrate's way: nbdkit's file plugin on the source on a Unix socket,
  ``ssh -L`` to it, ``qemu-img convert`` from the forwarded socket.
- ``nbdkit-nbdcopy``, ``qemu-nbd-nbdcopy``: the same forwarding, ``nbdcopy`` as the client
  (its default: 4 NBD connections, each a channel of the one SSH connection).
- ``floor``: ``ssh src cat`` of a file holding exactly the volume's non-zero bytes to
  /dev/null, plus the time of an fsync of that many bytes on the destination (measured
  separately, after the same bytes were written to a file there without timing).
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

#: Debian packages the NBD pipelines need (bookworm: nbdkit 1.32, qemu-utils 7.2,
#: libnbd-bin 1.14 for nbdcopy).
APT = {
    "/usr/bin/nbdkit": "nbdkit",
    "/usr/bin/qemu-img": "qemu-utils",
    "/usr/bin/nbdcopy": "libnbd-bin",
}

#: NBD pipelines: (server, client).
NBD = {
    "nbdkit-qemu-img": ("nbdkit", "qemu-img"),
    "nbdkit-nbdcopy": ("nbdkit", "nbdcopy"),
    "qemu-nbd-nbdcopy": ("qemu-nbd", "nbdcopy"),
}
METHODS = ("naive", "sparse-dd", "nbdkit-qemu-img", "nbdkit-nbdcopy", "qemu-nbd-nbdcopy", "floor")


def ensure_tools() -> None:
    """apt-get install the NBD tools if missing (the benchmark's set-up; a fresh CI machine
    has Debian's registry, nothing else)."""
    missing = sorted({pkg for path, pkg in APT.items() if not Path(path).exists()})
    if not missing:
        return
    print(f"installing {' '.join(missing)} from Debian", flush=True)
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def ssh_argv(source: Any, cipher: str) -> list[str]:
    return [
        "ssh", "-F", "/dev/null", "-T", "-x", "-a", "-i", str(source.key_file),
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={source.known_hosts}",
        "-o", "BatchMode=yes", "-o", "Compression=no", "-c", cipher, "-p", str(source.port),
        "-l", source.user, source.address,
    ]  # fmt: skip


def _nbd_server(kind: str, src: str, sock: str) -> str:
    """The source side of an NBD pipeline: start the server on ``sock``, say ``ready`` once
    the socket exists, stop it when the client closes our stdin."""
    if kind == "nbdkit":
        server = f"nbdkit -r -f -U {shlex.quote(sock)} file {shlex.quote(src)}"
    else:  # qemu-nbd: -t persistent, --shared so nbdcopy's 4 connections are all served
        server = f"qemu-nbd -r -t --shared=8 -f raw -k {shlex.quote(sock)} {shlex.quote(src)}"
    d = shlex.quote(str(Path(sock).parent))
    return (
        f"mkdir -p {d} && rm -f {shlex.quote(sock)}; {server} & pid=$!; "
        f"while [ ! -S {shlex.quote(sock)} ]; do sleep 0.01; done; echo ready; "
        f"read x; kill $pid; wait $pid; rm -rf {d}"
    )


def script(method: str, source: Any, cipher: str, src: str, dst: str, tag: str, blob: str) -> str:
    """A bash script for the destination host that runs ``method`` and fsyncs the result."""
    ssh = shlex.join(ssh_argv(source, cipher))
    q_src, q_dst = shlex.quote(src), shlex.quote(dst)
    if method in ("naive", "sparse-dd"):
        writer = f"dd of={q_dst} bs=4M status=none conv=notrunc"
        if method == "sparse-dd":  # fullblock: from a pipe dd would test partial blocks
            writer = f"dd of={q_dst} bs=64K iflag=fullblock conv=sparse,notrunc status=none"
        remote = shlex.quote(f"dd if={q_src} bs=4M status=none")
        return f"set -e; {ssh} {remote} | {writer}; sync {q_dst}"
    if method == "floor":
        return f"set -e; {ssh} {shlex.quote('cat ' + shlex.quote(blob))} > /dev/null"
    server_kind, client = NBD[method]
    local = f"/tmp/tenantshift-bench-{tag}-l.sock"
    remote_sock = f"/tmp/tenantshift-bench-{tag}-r/s.sock"
    server = shlex.quote(_nbd_server(server_kind, src, remote_sock))
    uri = shlex.quote(f"nbd+unix:///?socket={local}")
    if client == "qemu-img":  # os-migrate: qemu-img convert from the forwarded NBD export
        copy = f"qemu-img convert -n -f raw -O raw {uri} {q_dst}"
    else:
        copy = f"nbdcopy {uri} {q_dst}"
    return (
        "set -e; "
        f"rm -f {shlex.quote(local)}; "
        f"coproc SSH {{ exec {ssh} -o ExitOnForwardFailure=yes "
        f"-L {shlex.quote(local + ':' + remote_sock)} {server}; }}; "
        'read -r ready <&"${SSH[0]}"; '
        f"{copy}; sync {q_dst}; "
        'exec {SSH[1]}>&-; wait "$SSH_PID"; '
        f"rm -f {shlex.quote(local)}"
    )


def fsync_script(blob: str, source: Any, cipher: str, scratch: str) -> str:
    """For the floor: copy the blob untimed, then print the seconds one fsync of it takes."""
    ssh = shlex.join(ssh_argv(source, cipher))
    q = shlex.quote(scratch)
    return (
        f"set -e; {ssh} {shlex.quote('cat ' + shlex.quote(blob))} > {q}; "
        f"python3 -c 'import os,sys,time; fd=os.open(sys.argv[1],os.O_RDONLY); "
        f"t=time.monotonic(); os.fsync(fd); print(time.monotonic()-t)' {q}; rm -f {q}"
    )
