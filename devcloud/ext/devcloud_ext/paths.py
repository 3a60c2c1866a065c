"""State-directory paths as seen from inside the service processes (env DEVCLOUD_STATE)."""

from __future__ import annotations

import os

#: Glance property of the conversion image: a server booted from it answers SSH (guest_ssh).
CONVERSION_IMAGE_PROPERTY = "devcloud_conversion_host"


def state_dir() -> str:
    return os.environ["DEVCLOUD_STATE"]


def volumes_dir() -> str:
    return os.path.join(state_dir(), "volumes")


def host_dir(server_id: str) -> str:
    """The per-server directory; `by-id/` inside plays the server's /dev/disk/by-id."""
    return os.path.join(state_dir(), "hosts", server_id)


def by_id_dir(server_id: str) -> str:
    return os.path.join(host_dir(server_id), "by-id")


def by_id_name(volume_id: str) -> str:
    # What virtio-blk shows a guest: the serial (volume id) truncated to 20 characters.
    return f"virtio-{volume_id[:20]}"
