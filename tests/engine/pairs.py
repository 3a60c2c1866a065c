"""Manifests with N conversion host pairs (on loopback ports that nothing serves)."""

from __future__ import annotations

from typing import Any

from tenantshift.manifest import Manifest

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAH8ng/ENdqWiGFL/leFHwiwIDw1Z2z6ObaeWMRnDj+o"


def host(port: int, server: str) -> dict[str, Any]:
    return {
        "address": "127.0.0.1",
        "port": port,
        "key_file": "/dev/null",
        "host_key": KEY,
        "server": server,
    }


def pool_manifest(names: list[str]) -> Manifest:
    pairs = [
        {
            "name": name,
            "source": host(2200 + 2 * i, f"src-{name}"),
            "destination": host(2201 + 2 * i, f"dst-{name}"),
        }
        for i, name in enumerate(names)
    ]
    return Manifest.model_validate(
        {
            "version": 1,
            "source": {"cloud": "a"},
            "destination": {"cloud": "b"},
            "conversion_hosts": {"pairs": pairs},
        }
    )
