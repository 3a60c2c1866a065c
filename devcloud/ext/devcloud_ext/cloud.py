"""Shared helpers for bootstrap/seed/reset: connections, tenants, waits, known bytes."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import openstack

from . import paths

TENANTS = {
    "src": {"project": "src-tenant", "user": "src-user", "password": "src-password"},
    "dst": {"project": "dst-tenant", "user": "dst-user", "password": "dst-password"},
}
CONVERSION_HOST = "conversion-host"
IMAGE_NAME = "cirros-like"
#: Booted, it answers SSH (devcloud_ext.guest_ssh): for deployed conversion hosts.
CONVERSION_IMAGE = "tenantshift-conversion"
IMAGE_SIZE = 6 * 1024 * 1024
PUBLIC_NET = "public"
PUBLIC_CIDR = "172.24.4.0/24"  # documentation-style range, never routed: no host networking
FLAVORS = {"m1.tiny": (1, 512, 1), "m1.small": (1, 2048, 20), "m1.medium": (2, 4096, 40)}


def log(msg: str) -> None:
    print(f"devcloud: {msg}", file=sys.stderr, flush=True)


def connect(cloud: str) -> openstack.connection.Connection:
    # clouds.yaml is <state>/clouds.yaml; OS_CLIENT_CONFIG_FILE is set by the harness.
    return openstack.connect(cloud=cloud)


def wait(what: str, check: Callable[[], Any], timeout: float = 300, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # transient API errors while services warm up
            last_exc = e
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}" + (f": {last_exc}" if last_exc else ""))


def image_bytes() -> bytes:
    """The bootstrap image: deterministic known bytes, partly random, text and zeros.

    No download is possible here, and tests compare these bytes after copies, so they must
    be reproducible: a sha256 counter stream stands in for random data.
    """
    header = b"DEVCLOUD-CIRROS-LIKE-IMAGE\n".ljust(512, b"\0")
    rand = b"".join(hashlib.sha256(b"devcloud-%d" % i).digest() for i in range(65536))  # 2 MiB
    text = (b"devcloud root filesystem line\n" * 80000)[: 2 * 1024 * 1024]
    body = header + rand + text
    return body + b"\0" * (IMAGE_SIZE - len(body))


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def volume_file(volume_id: str) -> str:
    return os.path.join(paths.volumes_dir(), f"volume-{volume_id}")


def state_file(name: str) -> str:
    return os.path.join(paths.state_dir(), name)
