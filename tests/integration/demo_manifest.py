"""The demo's manifest (examples/devcloud.yaml) as the integration tests write it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.integration.conftest import Devcloud

ROOT = Path(__file__).resolve().parents[2]


def manifest_text(
    devcloud: Devcloud, state: Path, select: dict[str, Any] | None = None, **workloads: Any
) -> str:
    """The demo's manifest (examples/devcloud.yaml) with the devcloud's conversion hosts; by
    default without vm-active, which runs (the example lets tenantshift stop it)."""
    body = yaml.safe_load((ROOT / "examples" / "devcloud.yaml").read_text())
    body["conversion_hosts"] = yaml.safe_load(devcloud.conversion_hosts_yaml.read_text())
    body["options"] = {"state_dir": str(state)}
    body["workloads"] = {**(body.get("workloads") or {}), **workloads}
    if select is not None:
        body["select"] = select
    elif not workloads:
        body["select"] = {"server": {"exclude": ["vm-active"]}}
    return yaml.safe_dump(body, sort_keys=False)
