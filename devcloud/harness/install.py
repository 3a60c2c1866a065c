"""Install what devcloud needs: Debian packages, the pinned venv, our plugin package.

Each step is skipped when its result is already present, so `devcloud up` on an installed
machine spends no time here.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from .layout import EXT_DIR, LOCK_FILE, PORT_OFFSET, State, conversion_pairs, sshd_keys
from .proc import run

# binary that proves the package is installed -> Debian package
APT_PACKAGES = {
    "/usr/sbin/mariadbd": "mariadb-server",
    "/usr/lib/rabbitmq/bin/rabbitmq-server": "rabbitmq-server",
    "/usr/sbin/sshd": "openssh-server",
    "/usr/bin/ssh": "openssh-client",
    "/usr/bin/sudo": "sudo",
}

#: The usual login of cloud images (RHEL's cloud-user, Ubuntu's ubuntu): not root, passwordless
#: sudo. Both conversion hosts accept it besides root, so tests can migrate through it.
SUDO_USER = "cloud-user"
SUDOERS_FILE = Path("/etc/sudoers.d/devcloud-cloud-user")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def log(msg: str) -> None:
    print(f"devcloud: {msg}", file=sys.stderr, flush=True)


def ensure_apt(state: State) -> None:
    missing = sorted({pkg for path, pkg in APT_PACKAGES.items() if not Path(path).exists()})
    if not missing:
        return
    log(f"apt-get install {' '.join(missing)}")
    # Debian's postinst scripts would start the system-wide MariaDB/RabbitMQ/sshd (sshd on
    # 0.0.0.0:22!). A policy-rc.d that answers 101 forbids that; we run private instances.
    created_policy = False
    if not POLICY_RC_D.exists():
        POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
        created_policy = True
    try:
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-q"], log=state.log("install"), env=env)
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            log=state.log("install"), env=env)
    finally:
        if created_policy:
            POLICY_RC_D.unlink(missing_ok=True)


def _lock_digest() -> str:
    return hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()[:16]


def ensure_venv(state: State) -> None:
    """Create <state>/venv from the lock file without dependency resolution."""
    marker = state.markers / f"venv-{_lock_digest()}"
    if marker.exists() and (state.bin / "python").exists():
        return
    if state.venv.exists():
        shutil.rmtree(state.venv)
    log("creating the OpenStack venv from devcloud/requirements.lock")
    # The system python3 (pyenv 3.11) is what the lock was made with.
    run([sys.executable, "-m", "venv", str(state.venv)], log=state.log("install"))
    pip = [str(state.bin / "python"), "-m", "pip", "install", "-q",
           "--disable-pip-version-check"]
    run([*pip, "--no-deps", "-r", str(LOCK_FILE)], log=state.log("install"))
    marker.write_text("ok\n")


def ensure_ext(state: State) -> None:
    """Install devcloud/ext (drivers, WSGI wrappers, bootstrap) editable into the venv.

    Editable, so a change to a driver needs only a service restart. (The venv's setuptools
    65 cannot build it without `wheel`, so pip's build isolation fetches a current setuptools.)
    """
    marker = state.markers / "ext-installed"
    if marker.exists() and marker.read_text() == str(EXT_DIR):
        return
    log("installing devcloud/ext into the venv")
    run([str(state.bin / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--no-deps", "-e", str(EXT_DIR)], log=state.log("install"))
    marker.write_text(str(EXT_DIR))


def venv_python_env(state: State) -> dict[str, str]:
    """Environment for anything run from the venv: PATH first, and our state dir."""
    return {
        "PATH": f"{state.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "DEVCLOUD_STATE": str(state.root),
        "VIRTUAL_ENV": str(state.venv),
        # A user's OS_* variables must not leak into service processes or bootstrap.
        "OS_CLIENT_CONFIG_FILE": str(state.clouds_yaml),
        "DEVCLOUD_PORT_OFFSET": str(PORT_OFFSET),
    }


def ensure_ssh_keys(state: State) -> None:
    """Client key (shared by both conversion hosts), one host key per sshd, and each login
    user's authorized_keys under ssh/users/<user>/ (sshd's ``AuthorizedKeysFile`` is
    ``.../users/%u/authorized_keys``; ``ssh/authorized_keys`` links to root's)."""
    client = state.ssh / "id_ed25519"
    if not client.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "devcloud",
                        "-f", str(client)], check=True)
    for key in sshd_keys(conversion_pairs()):
        d = state.ssh / key
        d.mkdir(parents=True, exist_ok=True)
        hk = d / "ssh_host_ed25519_key"
        if not hk.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                            f"devcloud-{key}", "-f", str(hk)], check=True)
    public = (state.ssh / "id_ed25519.pub").read_text()
    for user in ("root", ensure_sudo_user()):
        pw = pwd.getpwnam(user)
        home = state.ssh / "users" / user
        home.mkdir(parents=True, exist_ok=True)
        # The login user edits its own file, by rename: it owns the directory too.
        os.chown(home, pw.pw_uid, pw.pw_gid)
        home.chmod(0o700)
        auth = home / "authorized_keys"
        auth.write_text(public)
        os.chown(auth, pw.pw_uid, pw.pw_gid)
        auth.chmod(0o600)
    link = state.ssh / "authorized_keys"
    if not link.is_symlink():
        link.unlink(missing_ok=True)
        link.symlink_to(Path("users") / "root" / "authorized_keys")


def ensure_sudo_user() -> str:
    """``cloud-user`` with passwordless sudo. Its password is ``*`` (no password login; ``!``
    would make sshd without PAM refuse the account as locked)."""
    try:
        pwd.getpwnam(SUDO_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "--password", "*",
                        SUDO_USER], check=True)
    rule = f"{SUDO_USER} ALL=(ALL) NOPASSWD: ALL\n"
    if not SUDOERS_FILE.exists() or SUDOERS_FILE.read_text() != rule:
        SUDOERS_FILE.write_text(rule)
        SUDOERS_FILE.chmod(0o440)
    return SUDO_USER
