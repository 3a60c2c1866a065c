"""Loop devices behind the by-id entries (``DEVCLOUD_LOOP_DEVICES=1`` when the devcloud
starts): a conversion host then sees real block devices, as on a cloud, where an attached
Cinder volume reports no holes (no SEEK_DATA) and a hole is not automatically zero.

Loop devices are global on the machine and shared with everyone on it: a device is taken
with ``losetup -f`` and only devices whose backing file lies in this devcloud's state
directory are ever released.
"""

from __future__ import annotations

import os
import subprocess

ENV = "DEVCLOUD_LOOP_DEVICES"


def enabled() -> bool:
    return os.environ.get(ENV) == "1"


def attach(path: str) -> str:
    """A loop device over ``path`` (a volume file); returns /dev/loopN."""
    return subprocess.run(
        ["losetup", "-f", "--show", path], check=True, capture_output=True, text=True
    ).stdout.strip()


def backing_file(device: str) -> str | None:
    name = os.path.basename(device)
    try:
        with open(f"/sys/block/{name}/loop/backing_file") as f:
            return f.read().strip()
    except OSError:
        return None


def release(device: str, owner_dir: str) -> bool:
    """Detach ``device`` if it is a loop device over a file under ``owner_dir``."""
    backing = backing_file(device)
    root = os.path.realpath(owner_dir) + os.sep
    if not device.startswith("/dev/loop") or not backing or not backing.startswith(root):
        return False
    subprocess.run(["losetup", "-d", device], check=False, capture_output=True)
    return True


def release_link(link: str, owner_dir: str) -> None:
    """Release the loop device a by-id link points at (if it is one of ours)."""
    try:
        target = os.readlink(link)
    except OSError:
        return
    release(target, owner_dir)


def release_all(owner_dir: str) -> int:
    """Every loop device over a file under ``owner_dir`` (``devcloud down``)."""
    count = 0
    try:
        names = os.listdir("/sys/block")
    except OSError:
        return 0
    for name in names:
        if name.startswith("loop") and release(f"/dev/{name}", owner_dir):
            count += 1
    return count
