"""An sshd for each server booted from the conversion image, so a deployed conversion host
answers SSH like a real one.

What a conversion image's guest would do at boot, done by the fake driver at spawn:

- generate the guest's host key and print it into the console log between cloud-init's
  ``-----BEGIN SSH HOST KEY KEYS-----`` markers (unless the server's metadata says
  ``devcloud_console_host_keys: "false"``, to exercise trust on first use);
- authorise the server's keypair for ``cloud-user`` (the machine's sudo user, see
  devcloud/harness/install.py);
- show the attached volumes at ``<state>/guest/by-id`` (the guest's /dev/disk/by-id): sshd runs
  in a private mount namespace where that directory is the server's own by-id directory bind
  mounted, so two conversion hosts see their own devices at the same path.

Networking: packets never flow in the devcloud, and two devclouds on one machine share the
public CIDR, so a floating IP cannot be given to a local interface. The sshd listens on
127.0.0.1 at the port named by the server's metadata ``devcloud_ssh_port`` (documented in
docs/devcloud.md); a server without it gets no sshd.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
from typing import Any

from oslo_log import log as logging

from . import paths

LOG = logging.getLogger(__name__)

#: Image property that marks the conversion image (as nova keeps it: `image_<property>`).
IMAGE_PROPERTY = paths.CONVERSION_IMAGE_PROPERTY
PORT_KEY = "devcloud_ssh_port"
CONSOLE_KEYS_KEY = "devcloud_console_host_keys"
USER = "cloud-user"

_running: dict[str, subprocess.Popen[bytes]] = {}


def guest_by_id_dir() -> str:
    """Where every conversion-image server sees its own attached volumes."""
    return os.path.join(paths.state_dir(), "guest", "by-id")


def ssh_dir(server_id: str) -> str:
    return os.path.join(paths.host_dir(server_id), "ssh")


def is_conversion(instance: Any) -> bool:
    sysmeta = getattr(instance, "system_metadata", None) or {}
    return str(sysmeta.get(f"image_{IMAGE_PROPERTY}", "")).lower() == "true"


def _port(instance: Any) -> int | None:
    raw = (getattr(instance, "metadata", None) or {}).get(PORT_KEY)
    try:
        port = int(raw) if raw is not None else None
    except ValueError:
        port = None
    return port if port is not None and 1 <= port <= 65535 else None


def prepare(instance: Any) -> None:
    """Host key, authorized_keys, sshd_config and console log of a new conversion server."""
    port = _port(instance)
    d = ssh_dir(instance.uuid)
    os.makedirs(d, exist_ok=True)
    os.makedirs(guest_by_id_dir(), exist_ok=True)
    key = os.path.join(d, "ssh_host_ed25519_key")
    if not os.path.exists(key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        f"root@{instance.hostname or instance.uuid}", "-f", key], check=True)
    pw = pwd.getpwnam(USER)
    users = os.path.join(d, "users", USER)
    os.makedirs(users, exist_ok=True)
    os.chown(users, pw.pw_uid, pw.pw_gid)
    os.chmod(users, 0o700)
    auth = os.path.join(users, "authorized_keys")
    with open(auth, "w") as f:
        f.write((instance.key_data or "").strip() + "\n")
    os.chown(auth, pw.pw_uid, pw.pw_gid)
    os.chmod(auth, 0o600)
    if port is not None:
        with open(os.path.join(d, "sshd_config"), "w") as f:
            f.write("\n".join([
                "ListenAddress 127.0.0.1",
                f"Port {port}",
                f"HostKey {key}",
                f"PidFile {os.path.join(d, 'sshd.pid')}",
                f"AuthorizedKeysFile {os.path.join(d, 'users')}/%u/authorized_keys",
                "PermitRootLogin no",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PrintMotd no",
                "MaxStartups 100:30:200",
                "MaxSessions 50",
                "",
            ]))
    with open(key + ".pub") as f:
        public = f.read().strip()
    lines = [
        "[    0.000000] Linux version devcloud-fake (conversion image)",
        f"ci-info: devcloud: sshd on 127.0.0.1:{port}" if port else
        f"ci-info: devcloud: no sshd (no {PORT_KEY} in the server's metadata)",
        "-----BEGIN SSH HOST KEY FINGERPRINTS-----",
        subprocess.run(["ssh-keygen", "-lf", key + ".pub"], check=True, capture_output=True,
                       text=True).stdout.strip(),
        "-----END SSH HOST KEY FINGERPRINTS-----",
    ]
    show = str((instance.metadata or {}).get(CONSOLE_KEYS_KEY, "true")).lower() != "false"
    if show:
        lines += ["-----BEGIN SSH HOST KEY KEYS-----", public, "-----END SSH HOST KEY KEYS-----"]
    lines.append("Cloud-init finished")
    with open(os.path.join(d, "console.log"), "w") as f:
        f.write("\n".join(lines) + "\n")


def start(server_id: str) -> None:
    """Start the server's sshd (in its own mount namespace) unless it runs or has no port."""
    d = ssh_dir(server_id)
    config = os.path.join(d, "sshd_config")
    if not os.path.exists(config):
        return
    proc = _running.get(server_id)
    if proc is not None and proc.poll() is None:
        return
    stop(server_id)  # a stale pid file from before a restart
    script = 'mount --bind "$1" "$2" && exec /usr/sbin/sshd -D -e -f "$3"'
    log = open(os.path.join(d, "sshd.log"), "ab")  # noqa: SIM115 - the child keeps it
    with log:
        _running[server_id] = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh",
             paths.by_id_dir(server_id), guest_by_id_dir(), config],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    LOG.info("devcloud: started the conversion sshd of %s", server_id)


def stop(server_id: str) -> None:
    proc = _running.pop(server_id, None)
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    pidfile = os.path.join(ssh_dir(server_id), "sshd.pid")
    with contextlib.suppress(OSError, ValueError):
        with open(pidfile) as f:
            pid = int(f.read().strip())
        # Only an sshd started for this server (its config path on the command line).
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if ssh_dir(server_id).encode() in f.read():
                os.kill(pid, signal.SIGTERM)
        os.unlink(pidfile)


def console(server_id: str) -> str | None:
    try:
        with open(os.path.join(ssh_dir(server_id), "console.log")) as f:
            return f.read()
    except OSError:
        return None
