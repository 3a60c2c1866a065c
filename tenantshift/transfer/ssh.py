"""SSH connections from the orchestrator to the conversion hosts (control only: commands,
JSON answers, progress; never volume data).

Host keys are always verified against the host's configuration unless it says
``host_key_policy: insecure-skip``. asyncssh falls back to ~/.ssh/known_hosts when given an
empty trust list, so an empty list is never passed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
from typing import Any

import asyncssh

from tenantshift.manifest.schema import ConversionHost

from .errors import ConnectError, HostKeyError, TransferError

log = logging.getLogger(__name__)

#: aes128-gcm first: ~590 MiB/s against ~425 MiB/s for OpenSSH's default chacha20 on the
#: machines we measured (with AES instructions). The others keep older servers reachable.
CIPHERS = (
    "aes128-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
)


def describe(host: ConversionHost, role: str) -> str:
    return f"{role} conversion host {host.address}:{host.port}"


def known_hosts_arg(host: ConversionHost) -> Any:
    """asyncssh's ``known_hosts`` for ``host``: the pinned key line, else its known_hosts
    file, else None (no check) when the policy explicitly skips."""
    if host.host_key_policy == "insecure-skip":
        return None
    if host.host_key is not None:
        return ([asyncssh.import_public_key(host.host_key)], [], [])
    if host.known_hosts is not None:
        return str(host.known_hosts)
    # The schema rejects this combination; refuse rather than trust ~/.ssh/known_hosts.
    raise HostKeyError("no host_key or known_hosts to verify against")


async def connect(host: ConversionHost, role: str, timeout: float) -> asyncssh.SSHClientConnection:
    where = describe(host, role)
    try:
        address = host.connect_address()
    except ValueError as exc:
        raise ConnectError(f"{role} conversion host: {exc}") from None
    if host.host_key_policy == "insecure-skip":
        log.warning("%s: host key checking is disabled (host_key_policy: insecure-skip)", where)
    try:
        return await asyncssh.connect(
            address,
            port=host.port,
            username=host.user,
            client_keys=[str(host.key_file)],
            known_hosts=known_hosts_arg(host),
            agent_path=None,
            config=None,
            encryption_algs=list(CIPHERS),
            compression_algs=["none"],
            connect_timeout=timeout,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        raise HostKeyError(
            f"{where}: its host key does not match the configured "
            f"{'host_key' if host.host_key else 'known_hosts'} ({exc.reason}); refusing to connect"
        ) from None
    except asyncssh.PermissionDenied:
        raise ConnectError(
            f"{where}: login as {host.user!r} with the configured key_file was refused"
        ) from None
    except (OSError, asyncssh.Error) as exc:
        raise ConnectError(f"{where}: cannot connect: {exc}") from None


def sudo(host: ConversionHost) -> list[str]:
    """Device access needs root: non-root users go through passwordless sudo."""
    return [] if host.user == "root" else ["sudo", "-n"]


def agent_command(host: ConversionHost, run_dir: str, *args: str, root: bool = False) -> str:
    argv = [*sudo(host)] if root else []
    argv += [host.python, f"{run_dir}/agent.pyz", *args]
    return shlex.join(argv)


async def run(
    conn: asyncssh.SSHClientConnection,
    command: str,
    what: str,
    stdin: str | bytes | None = None,
) -> str:
    """Run ``command``; its stdout, or a TransferError naming ``what`` with its stderr. The
    input may hold secrets: it is never part of a message."""
    data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
    result = await conn.run(command, input=data, encoding=None, check=False)
    out = result.stdout if isinstance(result.stdout, bytes) else (result.stdout or "").encode()
    err = result.stderr if isinstance(result.stderr, bytes) else (result.stderr or "").encode()
    if result.exit_status != 0:
        detail = err.decode("utf-8", "replace").strip()[-1500:]
        raise TransferError(f"{what} failed (exit status {result.exit_status}): {detail}")
    return out.decode("utf-8", "replace")


async def run_json(
    conn: asyncssh.SSHClientConnection, command: str, what: str, stdin: str | bytes | None = None
) -> dict[str, Any]:
    out = await run(conn, command, what, stdin)
    try:
        value = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise TransferError(f"{what}: unexpected answer {out[:200]!r}") from None
    if not isinstance(value, dict):
        raise TransferError(f"{what}: unexpected answer {out[:200]!r}")
    return value


#: Writes the agent zip (stdin) into a fresh private directory and prints its path and the
#: uid that owns it. mkdtemp makes the directory 0700, so other users on the host cannot swap
#: the agent; the forced command checks that owner before it runs the agent as root.
#: Reads the agent zip (its length on a first line, then the bytes; read with os.read, so no
#: buffer swallows what follows) into a fresh private directory, optionally writes a
#: known_hosts line (public: the argument) next to it, and becomes the agent's ``control``
#: loop on the same channel. mkdtemp makes the directory 0700, so other users on the host
#: cannot swap the agent; the forced command checks that owner before it runs it as root.
_INSTALL = (
    "import os,sys,tempfile\n"
    "def rd(n):\n"
    " b=b''\n"
    " while len(b)<n:\n"
    "  c=os.read(0,n-len(b))\n"
    "  if not c: sys.exit('install: stdin ended early')\n"
    "  b+=c\n"
    " return b\n"
    "n=b''\n"
    "while not n.endswith(b'\\n'): n+=rd(1)\n"
    "d=tempfile.mkdtemp(prefix='tenantshift-transfer-')\n"
    "def w(name,data):\n"
    " fd=os.open(os.path.join(d,name),os.O_WRONLY|os.O_CREAT|os.O_EXCL,0o600)\n"
    " with os.fdopen(fd,'wb') as f: f.write(data)\n"
    "w('agent.pyz',rd(int(n)))\n"
    "if sys.argv[1:]: w('known_hosts',sys.argv[1].encode())\n"
    "a=os.path.join(d,'agent.pyz')\n"
    "os.execv(sys.executable,[sys.executable,a,'control',d])\n"
)


class Control:
    """The agent's control loop on one host (see ``agent.cli.control``): one request line,
    one JSON answer line, one request at a time."""

    def __init__(
        self, process: asyncssh.SSHClientProcess[bytes], host: ConversionHost, role: str
    ) -> None:
        self.process = process
        self.where = describe(host, role)
        self.info: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    async def ready(self) -> dict[str, Any]:
        self.info = await self._answer("installing the agent")
        run_dir, uid = self.info.get("run_dir"), self.info.get("uid")
        if not isinstance(run_dir, str) or not run_dir.startswith("/") or not isinstance(uid, int):
            raise TransferError(f"installing the agent on the {self.where}: got {self.info!r}")
        return self.info

    async def _answer(self, what: str) -> dict[str, Any]:
        line = (await self.process.stdout.readline()).decode("utf-8", "replace")
        if not line:
            err = (await self.process.stderr.read()).decode("utf-8", "replace")[-1500:].strip()
            raise TransferError(f"{what} on the {self.where}: the agent stopped: {err}")
        try:
            value = json.loads(line)
        except ValueError:
            raise TransferError(f"{what} on the {self.where}: unexpected {line[:200]!r}") from None
        if not isinstance(value, dict):
            raise TransferError(f"{what} on the {self.where}: unexpected {line[:200]!r}")
        if "error" in value:
            raise TransferError(f"{what} on the {self.where} failed: {value['error']}")
        return value

    async def request(self, what: str, **request: Any) -> dict[str, Any]:
        """The request may hold secrets: it is never part of a message."""
        async with self._lock:
            self.process.stdin.write((json.dumps(request) + "\n").encode("utf-8"))
            return await self._answer(what)

    def close(self) -> None:
        self.process.close()


async def start_control(
    conn: asyncssh.SSHClientConnection,
    host: ConversionHost,
    role: str,
    bundle: bytes,
    known_hosts: str | None = None,
    timeout: float = 60.0,
) -> Control:
    """Install the agent in a fresh run directory and start its control loop there. A host
    whose login never runs the command (a shell start-up that blocks, e.g. on a stale lock)
    fails after ``timeout`` seconds instead of hanging the migration."""
    argv = [host.python, "-c", _INSTALL, *([known_hosts] if known_hosts else [])]
    process = await conn.create_process(shlex.join(argv), encoding=None)
    control = Control(process, host, role)
    try:
        process.stdin.write(f"{len(bundle)}\n".encode() + bundle)
        async with asyncio.timeout(timeout):
            await control.ready()
    except TimeoutError:
        process.close()
        raise TransferError(
            f"installing the agent on the {control.where}: no answer in {timeout:.0f} s "
            "(does a login shell there block, e.g. in .bashrc?)"
        ) from None
    except BaseException:
        process.close()
        raise
    return control


#: Writes the agent zip (stdin) into a fresh private directory and prints its path and the
#: uid that owns it (for one-off commands: the sweep of a later run).
_INSTALL_ONLY = (
    "import json,os,sys,tempfile;"
    "d=tempfile.mkdtemp(prefix='tenantshift-transfer-');"
    "fd=os.open(os.path.join(d,'agent.pyz'),os.O_WRONLY|os.O_CREAT|os.O_EXCL,0o600);"
    "f=os.fdopen(fd,'wb');f.write(sys.stdin.buffer.read());f.close();"
    "print(json.dumps({'run_dir':d,'uid':os.getuid()}))"
)


async def install_agent(
    conn: asyncssh.SSHClientConnection, host: ConversionHost, role: str, bundle: bytes
) -> tuple[str, int]:
    """The run directory and the uid owning it."""
    what = f"installing the agent on the {describe(host, role)}"
    answer = await run_json(conn, shlex.join([host.python, "-c", _INSTALL_ONLY]), what, bundle)
    run_dir, uid = answer.get("run_dir"), answer.get("uid")
    if not isinstance(run_dir, str) or not run_dir.startswith("/") or not isinstance(uid, int):
        raise TransferError(f"{what}: got {answer!r}")
    return run_dir, uid
