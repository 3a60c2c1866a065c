"""Plan-time checks and descriptions of workload migrations.

What would stop a migration is found before anything runs, each a reason on the change: no
usable conversion hosts, a source server that is running. And a reviewer of a migration plan
sees what will move: each disk, how it is read, its size.
"""

from __future__ import annotations

import asyncio

from tenantshift.engine.pool import plan_pairs
from tenantshift.engine.workloads import MIGRATIONS
from tenantshift.manifest import ConversionPair, Manifest
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
    via_hosts = any(MIGRATIONS[c.kind].NEEDS_HOSTS for c in migrating if c.kind in MIGRATIONS)
    host_problem = _conversion_host_problem(manifest, source, destination) if via_hosts else None
    image_problem = _image_problem(source, destination)
    by_id = {(r.kind, r.id): dict(r.info) for r in source_snapshot.resources.values()}
    sizes = {r.id: int(r.params.get("size") or 0) for r in source_snapshot.of_kind("volume")}
    infos = {
        c.address: by_id.get((c.kind, split_marker(str(c.source_id))[1]), {}) for c in migrating
    }
    over = _over_quota(migrating, infos, sizes, source, destination)
    updated: dict[str, Change] = {}
    for change in migrating:
        info = infos[change.address]
        # What the copies will read: the reviewer's "how big", the progress bar's total.
        moves = {"bytes_to_move": _gib_to_move(change, info, sizes) * 2**30}
        if change.address in over:
            updated[change.address] = change.model_copy(
                update={"reason": Reason.BLOCKED_QUOTA, "detail": over[change.address], **moves}
            )
            continue
        if change.kind in MIGRATIONS and not MIGRATIONS[change.kind].NEEDS_HOSTS:
            problem = image_problem
        else:
            problem = host_problem or _source_problem(change, info, manifest)
        if problem is not None:
            updated[change.address] = change.model_copy(
                update={"reason": Reason.BLOCKED_PREREQUISITE, "detail": problem, **moves}
            )
        else:
            detail = change.detail or _describe(change, info)
            updated[change.address] = change.model_copy(update={"detail": detail, **moves})
    return assign_pairs([updated.get(c.address, c) for c in changes], manifest)


def _gib_to_move(change: Change, info: dict[str, object], sizes: dict[str | None, int]) -> int:
    if change.kind == "volume":
        return int((change.after or {}).get("size") or 0)
    need = _needs(change.model_copy(update={"target_id": None}), info, sizes)
    return need.get(("destination", "gigabytes"), 0)


Needs = dict[tuple[str, str], int]  # (cloud, quota name) -> amount


def _needs(change: Change, info: dict[str, object], sizes: dict[str | None, int]) -> Needs:
    """What one migration consumes: destination volumes, gigabytes, instances, cores and RAM;
    at the source, the temporaries that read its boot disk (a snapshot and a volume)."""
    need: Needs = {}

    def add(cloud: str, name: str, amount: int) -> None:
        need[(cloud, name)] = need.get((cloud, name), 0) + amount

    if change.kind == "volume" and change.target_id is None:
        add("destination", "volumes", 1)
        add("destination", "gigabytes", int((change.after or {}).get("size") or 0))
    if change.kind == "server" and change.target_id is None:
        add("destination", "instances", 1)
        add("destination", "cores", int(str(info.get("vcpus") or 0)))
        add("destination", "ram", int(str(info.get("ram") or 0)))
        volumes = [str(v) for v in info.get("volumes") or []]  # type: ignore[attr-defined]
        root = 0 if not info.get("image_id") else int(str(info.get("root_gb") or 1))
        disks = [sizes.get(v, 0) for v in volumes] + ([root] if root else [])
        add("destination", "volumes", len(disks))
        add("destination", "gigabytes", sum(disks))
        boot = root or (disks[0] if disks else 0)
        if not root and volumes:
            add("source", "snapshots", 1)
        add("source", "volumes", 1 if boot else 0)
        add("source", "gigabytes", boot)
    return need


def _over_quota(
    migrating: list[Change],
    infos: dict[str, dict[str, object]],
    sizes: dict[str | None, int],
    source: Provider,
    destination: Provider,
) -> dict[str, str]:
    """Address -> why, for every migration that needs a quota the plan's migrations exceed."""
    needs = {c.address: _needs(c, infos[c.address], sizes) for c in migrating}
    total: Needs = {}
    for need in needs.values():
        for key, amount in need.items():
            total[key] = total.get(key, 0) + amount
    room: dict[tuple[str, str], int] = {}
    for cloud, provider in (("source", source), ("destination", destination)):
        ops = getattr(provider, "volume_ops", None)
        if ops is not None and any(k[0] == cloud and v for k, v in total.items()):
            try:
                room.update({(cloud, k): v for k, v in ops.headroom().items()})
            except ProviderError:
                continue  # unknown quota: the cloud will say at apply time
    short = {k: (room[k], v) for k, v in total.items() if k in room and v > room[k]}
    out: dict[str, str] = {}
    for address, need in needs.items():
        reasons = [
            f"the {cloud} quota allows {left} more {name}, the migrations need {wanted}"
            for (cloud, name), (left, wanted) in sorted(short.items())
            if need.get((cloud, name))
        ]
        if reasons:
            out[address] = "; ".join(reasons)
    return out


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
    if change.kind == "image":
        size = int(str(info.get("size") or 0))
        algo = info.get("os_hash_algo") or "md5 checksum"
        return f"stream {size / 2**20:.1f} MiB from Glance to Glance, verified by {algo}"
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


def _image_problem(source: Provider, destination: Provider) -> str | None:
    """Image data streams from Glance to Glance: both ends must be able to move it."""
    for side, provider in (("source", source), ("destination", destination)):
        if getattr(provider, "image_ops", None) is None:
            return f"the {side} ({provider.label}) cannot read or write image data"
    return None


def _conversion_host_problem(
    manifest: Manifest, source: Provider, destination: Provider
) -> str | None:
    """Why no copy could run, or None. Every pair is checked (Nova status, then over SSH);
    a pool with any bad pair is blocked, naming the pair, since the schedule counts on it
    (remove it from the manifest, or fix it)."""
    hosts = manifest.conversion_hosts
    if hosts is None:
        return "migrating data needs conversion_hosts in the manifest"
    pairs = hosts.all_pairs
    problems: list[str] = []
    reachable = []
    for pair in pairs:
        problem = _pair_server_problem(pair, source, destination, len(pairs) > 1)
        if problem is not None:
            problems.append(problem)
        else:
            reachable.append(pair)

    async def probe_all() -> list[list[str]]:
        return await asyncio.gather(*(probe_hosts(pair) for pair in reachable))

    # Reachable with the configured host key, Python runs, devices can be found, sudo works.
    for pair, found in zip(reachable, asyncio.run(probe_all()) if reachable else [], strict=True):
        if found:
            prefix = f"pair {pair.name!r}: " if len(pairs) > 1 else ""
            problems.append(prefix + "; ".join(found))
    return "; ".join(problems) if problems else None


def _pair_server_problem(
    pair: ConversionPair, source: Provider, destination: Provider, named: bool
) -> str | None:
    where = f"conversion_hosts.pairs[{pair.name}]" if named else "conversion_hosts"
    prefix = f"pair {pair.name!r}: " if named else ""
    for side, provider, host in (
        ("source", source, pair.source),
        ("destination", destination, pair.destination),
    ):
        if host.deploy is not None and host.address is None:
            return (
                f"the {side} conversion host {host.server!r} is not deployed yet: run "
                "'tenantshift conversion-hosts deploy -m MANIFEST'"
            )
        ops = getattr(provider, "volume_ops", None)
        if ops is None:
            return f"the {side} ({provider.label}) cannot attach volumes (a snapshot file?)"
        if host.server is None:
            return f"{where}.{side}.server must name the host's server to attach to"
        try:
            status = ops.server_status(host.server)
        except ProviderError as exc:
            return f"{where}.{side}.server: {exc}"
        if status != "ACTIVE":
            return f"{prefix}the {side} conversion host {host.server!r} is {status}, not ACTIVE"
    return None


def assign_pairs(changes: list[Change], manifest: Manifest) -> list[Change]:
    """Each unblocked migrate that copies through the hosts gets its planned pair
    (``engine/pool.py``: largest first, to the least loaded pair)."""
    hosts = manifest.conversion_hosts
    if hosts is None:
        return changes
    copying = [
        c
        for c in changes
        if c.action is Action.MIGRATE
        and not c.blocked
        and c.kind in MIGRATIONS
        and MIGRATIONS[c.kind].NEEDS_HOSTS
    ]
    planned = plan_pairs(
        ((c.address, c.bytes_to_move or 0) for c in copying), [p.name for p in hosts.all_pairs]
    )
    return [
        c.model_copy(update={"conversion_pair": planned[c.address]}) if c.address in planned else c
        for c in changes
    ]
