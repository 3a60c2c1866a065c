"""Plan-time checks and descriptions of workload migrations.

What would stop a migration is found before anything runs, each a reason on the change: no
usable conversion hosts, a source server that is running. And a reviewer of a migration plan
sees what will move: each disk, how it is read, its size.
"""

from __future__ import annotations

import asyncio
import time

from tenantshift.engine.walk.links import Links
from tenantshift.engine.walk.pool import plan_pairs
from tenantshift.engine.workloads import warm
from tenantshift.engine.workloads.registry import MIGRATIONS, Needs
from tenantshift.manifest import ConversionPair, Manifest
from tenantshift.plans import Action, Change, Reason
from tenantshift.providers import Provider, ProviderError
from tenantshift.resources import Snapshot
from tenantshift.resources.marker import split_marker

#: How long the plan's check of a pair's hosts may take (as the transfer layer's default).
PROBE_SECONDS = 15.0


def check_workloads(
    changes: list[Change],
    manifest: Manifest,
    source_snapshot: Snapshot,
    source: Provider,
    destination: Provider,
    links: Links | None = None,
    destination_snapshot: Snapshot | None = None,
    history: dict[str, list[warm.Sync]] | None = None,
) -> list[Change]:
    migrating = [c for c in changes if c.action is Action.MIGRATE and not c.blocked]
    if not migrating:
        return changes
    via_hosts = any(MIGRATIONS[c.kind].NEEDS_HOSTS for c in migrating)
    links = links or Links()
    host_problem = (
        _conversion_host_problem(manifest, source, destination, links) if via_hosts else None
    )
    image_problem = _image_problem(source, destination)
    by_id = {(r.kind, r.id): dict(r.info) for r in source_snapshot.resources.values()}
    sizes = {r.id: int(r.params.get("size") or 0) for r in source_snapshot.of_kind("volume")}
    infos = {
        c.address: by_id.get((c.kind, split_marker(str(c.source_id))[1]), {}) for c in migrating
    }
    names = {(r.kind, r.id): r.params.get("name") for r in source_snapshot.resources.values()}
    migrating = [
        c.model_copy(
            update={
                "warm": manifest.workloads.warm_phase(
                    names.get((c.kind, split_marker(str(c.source_id))[1]))
                )
            }
        )
        if MIGRATIONS[c.kind].WARM
        else c
        for c in migrating
    ]
    synced = {
        c.address: warm.synced_disks(c, infos[c.address], destination_snapshot)
        for c in migrating
        if c.warm and destination_snapshot is not None
    }
    for change in migrating:
        # What earlier syncs made is there already: it needs no quota again.
        infos[change.address]["synced_gb"] = sum(
            int(r.params.get("size") or 0) for r in synced.get(change.address, [])
        )
        infos[change.address]["synced_volumes"] = len(synced.get(change.address, []))
    over = _over_quota(migrating, infos, sizes, source, destination)
    updated: dict[str, Change] = {}
    for change in migrating:
        info = infos[change.address]
        # What the copies will read: the reviewer's "how big", the progress bar's total.
        migration = MIGRATIONS[change.kind]
        moves = {"bytes_to_move": migration.gib_to_move(change, info, sizes) * 2**30}
        if change.address in over:
            updated[change.address] = change.model_copy(
                update={"reason": Reason.BLOCKED_QUOTA, "detail": over[change.address], **moves}
            )
            continue
        if not migration.NEEDS_HOSTS:
            problem = image_problem
        else:
            problem = host_problem or migration.source_problem(
                info, manifest.workloads, change.warm
            )
            if change.warm == "sync" and change.target_id is not None:
                problem = (
                    "its cutover booted it in the destination already: finish the cutover "
                    "(list it in workloads.cutover)"
                )
        if problem is not None:
            updated[change.address] = change.model_copy(
                update={"reason": Reason.BLOCKED_PREREQUISITE, "detail": problem, **moves}
            )
        else:
            detail = change.detail or migration.describe(change, info)
            if change.warm:
                past = (history or {}).get(change.address, [])
                done = synced.get(change.address, [])
                detail = f"{warm.describe(change, done, past, time.time())}; {detail}"
            updated[change.address] = change.model_copy(update={"detail": detail, **moves})
    return assign_pairs([updated.get(c.address, c) for c in changes], manifest)


def _over_quota(
    migrating: list[Change],
    infos: dict[str, dict[str, object]],
    sizes: dict[str | None, int],
    source: Provider,
    destination: Provider,
) -> dict[str, str]:
    """Address -> why, for every migration that needs a quota the plan's migrations exceed."""
    needs = {c.address: MIGRATIONS[c.kind].needs(c, infos[c.address], sizes) for c in migrating}
    total: Needs = {}
    for need in needs.values():
        for key, amount in need.items():
            total[key] = total.get(key, 0) + amount
    room: dict[tuple[str, str], int] = {}
    for cloud, provider in (("source", source), ("destination", destination)):
        verbs = provider.workloads
        if verbs is not None and any(k[0] == cloud and v for k, v in total.items()):
            try:
                room.update({(cloud, k): v for k, v in verbs.headroom().items()})
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


def _image_problem(source: Provider, destination: Provider) -> str | None:
    """Image data streams from Glance to Glance: both ends must be able to move it."""
    for side, provider in (("source", source), ("destination", destination)):
        if provider.workloads is None:
            return f"the {side} ({provider.label}) cannot read or write image data"
    return None


def _conversion_host_problem(
    manifest: Manifest, source: Provider, destination: Provider, links: Links | None = None
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
        probe = (links or Links()).probe
        return await asyncio.gather(*(probe(pair, PROBE_SECONDS) for pair in reachable))

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
        verbs = provider.workloads
        if verbs is None:
            return f"the {side} ({provider.label}) cannot attach volumes (a snapshot file?)"
        if host.server is None:
            return f"{where}.{side}.server must name the host's server to attach to"
        try:
            status = verbs.server.status(host.server)
        except ProviderError as exc:
            return f"{where}.{side}.server: {exc}"
        if status != "ACTIVE":
            return f"{prefix}the {side} conversion host {host.server!r} is {status}, not ACTIVE"
    return None


def assign_pairs(changes: list[Change], manifest: Manifest) -> list[Change]:
    """Each unblocked migrate that copies through the hosts gets its planned pair
    (``engine/walk/pool.py``: largest first, to the least loaded pair)."""
    hosts = manifest.conversion_hosts
    if hosts is None:
        return changes
    copying = [
        c
        for c in changes
        if c.action is Action.MIGRATE and not c.blocked and MIGRATIONS[c.kind].NEEDS_HOSTS
    ]
    planned = plan_pairs(
        ((c.address, c.bytes_to_move or 0) for c in copying), [p.name for p in hosts.all_pairs]
    )
    return [
        c.model_copy(update={"conversion_pair": planned[c.address]}) if c.address in planned else c
        for c in changes
    ]
