"""Debian packages the tests need (Graphviz, Chromium), installed by the tests themselves, the
way devcloud/harness/install.py installs MariaDB and RabbitMQ: a fresh CI machine has neither,
and a test that silently skips without them would prove nothing."""

from __future__ import annotations

import os
import shutil
import subprocess

#: Several engineers (and their apt-gets) share one machine: wait for dpkg's lock, don't fail.
_LOCK_WAIT = ["-o", "DPkg::Lock::Timeout=900"]


def ensure_debian(binary: str, package: str) -> str:
    """The path of ``binary``, installing Debian ``package`` first when it is missing."""
    found = shutil.which(binary)
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError(f"{binary} is missing and installing {package} needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", *_LOCK_WAIT, "update", "-q"], env=env, check=True)
    subprocess.run(
        ["apt-get", *_LOCK_WAIT, "install", "-y", "-q", "--no-install-recommends", package],
        env=env,
        check=True,
    )
    found = shutil.which(binary)
    if found is None:
        raise RuntimeError(f"apt-get installed {package} but {binary} is still not on PATH")
    return found
