"""Plan-time checks and descriptions of workload migrations.

What would stop a migration is found before anything runs, each a reason on the change: no
usable conversion hosts, a source server that is running. And a reviewer of a migration plan
sees what will move: each disk, how it is read, its size.
"""

from __future__ import annotations

import asyncio

from tenantshift.manifest import Manifest
from tenantshift.plans import Action, Change, Reason
from tenantshift.providers import Provider, ProviderError
from tenantshift.resources import Snapshot
from tenantshift.resources.marker import split_marker
from tenantshift.transfer import probe_hosts


def check_workloads(
    changes: list[Change],
    manifest: Manifest,
    source_snapshot: Snapshot,
    source: Provider,
    destination: Provider,
) -> list[Change]:
    migrating = [c for c in changes if c.action is Action.MIGRATE and not c.blocked]
    if not migrating:
        return changes
    host_problem = _conversion_host_problem(manifest, source, destination)
    by_id = {(r.kind, r.id): dict(r.info) for r in source_snapshot.resources.values()}
    updated: dict[str, Change] = {}
    for change in migrating:
        info = by_id.get((change.kind, split_marker(str(change.source_id))[1]), {})
        problem = host_problem or _source_problem(change, info, manifest)
        if problem is not None:
            updated[change.address] = change.model_copy(
                update={"reason": Reason.BLOCKED_PREREQUISITE, "detail": problem}
            )
        elif not change.detail:
            updated[change.address] = change.model_copy(update={"detail": _describe(change, info)})
    return [updated.get(c.address, c) for c in changes]


def _source_problem(change: Change, info: dict[str, object], manifest: Manifest) -> str | None:
    if change.kind != "server":
        return None
    status = info.get("status")
    if status not in (None, "SHUTOFF") and not manifest.workloads.stop_source_servers:
        return (
            f"the source server is {status}: migration is cold; stop it, or set "
            "workloads.stop_source_servers"
        )
    return None


def _describe(change: Change, info: dict[str, object]) -> str:
    after = change.after or {}
    if change.kind == "volume":
        return f"copy {after.get('size')} GiB between the conversion hosts, verified"
    if change.kind == "server":
        volumes = list(info.get("volumes") or [])  # type: ignore[call-overload]
        disks = []
        if info.get("image_id"):
            disks.append("root disk via a server image")
        for index, _ in enumerate(volumes):
            boot = not info.get("image_id") and index == 0
            disks.append("boot volume via a snapshot" if boot else "a data volume, detached")
        ports = len(after.get("ports") or [])
        return f"copy {len(disks)} disk(s): {', '.join(disks)}; boot with {ports} port(s)"
    return ""


def _conversion_host_problem(
    manifest: Manifest, source: Provider, destination: Provider
) -> str | None:
    hosts = manifest.conversion_hosts
    if hosts is None:
        return "migrating data needs conversion_hosts in the manifest"
    for side, provider, host in (
        ("source", source, hosts.source),
        ("destination", destination, hosts.destination),
    ):
        ops = getattr(provider, "volume_ops", None)
        if ops is None:
            return f"the {side} ({provider.label}) cannot attach volumes (a snapshot file?)"
        if host.server is None:
            return f"conversion_hosts.{side}.server must name the host's server to attach to"
        try:
            status = ops.server_status(host.server)
        except ProviderError as exc:
            return f"conversion_hosts.{side}.server: {exc}"
        if status != "ACTIVE":
            return f"the {side} conversion host {host.server!r} is {status}, not ACTIVE"
    # Reachable with the configured host key, Python runs, devices can be found, sudo works.
    problems = asyncio.run(probe_hosts(hosts))
    return "; ".join(problems) if problems else None
