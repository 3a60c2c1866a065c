"""The deployment record: what ``tenantshift conversion-hosts deploy`` created, and the address
and host key of each deployed conversion host.

It lives in the manifest's state directory (``conversion-hosts.json``, mode 0600), not in the
manifest, so the manifest stays hand-written. ``load_manifest`` reads it and fills in the
``address`` and ``host_key`` of hosts that declare ``deploy``; ``plan`` and ``apply`` therefore
see a deployed host exactly like a hand-declared one, host key verified. A change of the record
(a redeploy: new address, new host key) changes the manifest hash, so a saved plan made before
it is refused as stale rather than applied against hosts that are gone.

Entries are journal-like: the deploy writes what it is about to create *before* creating it, so
a run killed at any point leaves a record that the next run (or ``remove``) can finish from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tenantshift.errors import TenantshiftError
from tenantshift.fileio import write_private
from tenantshift.manifest.schema import ConversionHost, ConversionHosts, Manifest

__all__ = [
    "RECORD_FORMAT",
    "RECORD_NAME",
    "SIDES",
    "RecordError",
    "read_record",
    "record_path",
    "with_deployed_hosts",
    "write_record",
]

RECORD_NAME = "conversion-hosts.json"
RECORD_FORMAT = "tenantshift-conversion-hosts/1"
SIDES = ("source", "destination")


class RecordError(TenantshiftError):
    """The record exists but cannot be read as one."""


def record_path(state_dir: Path) -> Path:
    return state_dir / RECORD_NAME


def read_record(state_dir: Path) -> dict[str, Any]:
    """``{side: entry}``; empty when nothing was deployed for this manifest."""
    path = record_path(state_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RecordError(f"{path}: cannot read the conversion host record: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        raise RecordError(f"{path}: not a conversion host record ({RECORD_FORMAT})")
    hosts = data.get("hosts")
    if not isinstance(hosts, dict):
        raise RecordError(f"{path}: 'hosts' is not a mapping")
    return {side: entry for side, entry in hosts.items() if side in SIDES}


def write_record(state_dir: Path, hosts: dict[str, Any]) -> None:
    """Atomically (rename), mode 0600 from the start: it names servers and addresses of the
    user's clouds. No secret is ever in it (the private key stays in ``key_file``).
    ``LocalFileError`` when the state directory cannot be written."""
    body = json.dumps({"format": RECORD_FORMAT, "hosts": hosts}, indent=2, sort_keys=True)
    write_private(record_path(state_dir), body + "\n")


def deployed_entry(host: ConversionHost, entry: Any) -> dict[str, Any] | None:
    """The record's entry when it is a finished deployment of this host (same server name),
    else None: a half-finished deploy, or one made for another server name."""
    if not isinstance(entry, dict) or entry.get("server") != host.server:
        return None
    if not entry.get("address") or not entry.get("host_key"):
        return None
    return entry


def _filled(host: ConversionHost, entry: dict[str, Any] | None) -> ConversionHost:
    if host.deploy is None or entry is None:
        return host
    # model_copy skips validation: the entry's host key was validated when it was recorded
    # (and is checked by asyncssh when used).
    return host.model_copy(
        update={"address": host.address or entry["address"], "host_key": entry["host_key"]}
    )


def with_deployed_hosts(manifest: Manifest) -> Manifest:
    """``manifest`` with each deployed host's address and host key filled in from the record
    (unchanged when no host declares ``deploy``)."""
    hosts = manifest.conversion_hosts
    # A pool's hosts are declared (the schema refuses deploy there): nothing to fill.
    if not isinstance(hosts, ConversionHosts) or (
        hosts.source.deploy is None and hosts.destination.deploy is None
    ):
        return manifest
    record = read_record(manifest.state_dir)
    filled = hosts.model_copy(
        update={
            side: _filled(host, deployed_entry(host, record.get(side)))
            for side in SIDES
            if (host := getattr(hosts, side)) is not None
        }
    )
    return manifest.model_copy(update={"conversion_hosts": filled})
