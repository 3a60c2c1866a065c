"""Planning: snapshot both clouds, derive the desired state, diff, and check saved plans."""

from __future__ import annotations

import difflib
import gc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tenantshift import __version__
from tenantshift.engine.state.journal import JOURNAL_FILE, Journal
from tenantshift.engine.state.temporary import Temporary
from tenantshift.engine.walk.links import Links
from tenantshift.engine.workloads.plan import check_workloads
from tenantshift.engine.workloads.warm import sync_history, warm_names_unknown
from tenantshift.errors import TenantshiftError
from tenantshift.manifest import Manifest, manifest_hash
from tenantshift.manifest.deployed import RecordError, read_record
from tenantshift.plans import Action, Change, Fingerprint, Plan, diff
from tenantshift.providers import Provider, ProviderError
from tenantshift.resources import REGISTRY, Snapshot, derive_desired
from tenantshift.resources.marker import migration_id
from tenantshift.resources.snapshot import duplicate_groups


class PlanError(TenantshiftError):
    pass


class StalePlanError(PlanError):
    pass


class TamperedPlanError(PlanError):
    """A saved plan's changes are not what the diff makes from the same manifest and clouds."""


@dataclass(frozen=True)
class PlanResult:
    plan: Plan
    source: Snapshot
    destination: Snapshot
    desired: Snapshot


def take_snapshots(source: Provider, destination: Provider) -> tuple[Snapshot, Snapshot]:
    """Both clouds at once: they are independent and each is I/O-bound."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        src = pool.submit(source.snapshot)
        dst = pool.submit(destination.snapshot)
        return src.result(), dst.result()


def fingerprint(snapshot: Snapshot) -> Fingerprint:
    digests = snapshot.resource_digests()
    return Fingerprint(digest=snapshot.fingerprint(digests), resources=digests)


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block.

    A plan builds millions of small objects (records, params, changes) that all stay alive
    until it is done. Each of the collector's automatic passes walks the survivors again, and
    for a tenant of 20,000 resources those passes were 5-9 s of the plan, freeing nothing. The
    objects are acyclic, reference counting frees them afterwards; what a cycle holds waits
    for the next automatic pass after the block."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def make_plan(
    manifest: Manifest,
    source: Provider,
    destination: Provider,
    *,
    targets: tuple[str, ...] = (),
    snapshots: tuple[Snapshot, Snapshot] | None = None,
    links: Links | None = None,
) -> PlanResult:
    """``links``: how the plan's checks reach the conversion hosts (SSH unless a test says)."""
    refuse_same_project(source, destination)
    with collector_paused():
        return _make_plan(manifest, source, destination, targets, snapshots, links or Links())


def _make_plan(
    manifest: Manifest,
    source: Provider,
    destination: Provider,
    targets: tuple[str, ...],
    snapshots: tuple[Snapshot, Snapshot] | None,
    links: Links,
) -> PlanResult:
    src, dst = snapshots or take_snapshots(source, destination)
    hosts = conversion_host_ids(manifest, source)
    desired = derive_desired(
        src,
        manifest.select,
        manifest.map,
        workloads=manifest.workloads,
        conversion_hosts=hosts,
        held={**held_by_migrations(manifest.state_dir), **deployed_tools(manifest.state_dir, src)},
    )
    # The markers name this migration, so prune leaves other migrations' copies alone (M6).
    changes = diff(desired, dst, prune=manifest.options.prune, migration=migration_id(src))
    changes = check_workloads(
        changes,
        manifest,
        src,
        source,
        destination,
        links,
        destination_snapshot=dst,
        history=sync_history(manifest.state_dir),
    )
    if targets:
        changes = restrict(changes, targets)
    plan = Plan(
        tool_version=__version__,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        manifest_path=str(manifest.path) if manifest.path else "",
        manifest_hash=manifest_hash(manifest),
        source=fingerprint(src),
        destination=fingerprint(dst),
        changes=changes,
        warnings=[
            *relevant_warnings(src, desired, dst),
            *_not_yet(manifest),
            *warm_names_unknown(manifest, src),
        ],
        targets=list(targets),
    )
    return PlanResult(plan=plan, source=src, destination=dst, desired=desired)


def relevant_warnings(src: Snapshot, desired: Snapshot, dst: Snapshot) -> list[str]:
    """The snapshots' warnings, without the duplicate names of resources that do not migrate:
    a source duplicate counts when one of its resources is desired, a destination duplicate
    when a desired resource has its address (which one matches is then the question). Each
    is said once (a selected source duplicate is also one in the desired state)."""
    migrating = {str(r.info.get("source_address")) for r in desired.resources.values()}
    noise = {text for text, group in duplicate_groups(src).items() if not migrating & set(group)}
    noise_dst = {
        text
        for text, group in duplicate_groups(dst).items()
        if not set(desired.resources) & set(group)
    }
    kept = [
        *(w for w in src.warnings if w not in noise),
        *desired.warnings,
        *(w for w in dst.warnings if w not in noise_dst),
    ]
    return list(dict.fromkeys(kept))


def refuse_same_project(source: Provider, destination: Provider) -> None:
    """A migration into its own source project is refused before anything is read.

    The diff would find every source resource "already in the destination" and plan to adopt
    it, which stamps our markers on the source itself. Two projects are the same when their
    identities (Keystone URL and project id) are equal, or when the project ids are equal and
    both ends reach the same Neutron: two spellings of one Keystone (``localhost`` and
    ``127.0.0.1``) are still one cloud. The same project id behind two different clouds (an
    identity database copied to a new cloud) is a real migration and is allowed.
    """
    ids = [getattr(p, "identity", None) for p in (source, destination)]
    if not all(ids):
        return  # a snapshot file or a test double without identity: nothing to compare
    same = ids[0] == ids[1]
    projects = [getattr(p, "project_id", None) for p in (source, destination)]
    if not same and projects[0] is not None and projects[0] == projects[1]:
        endpoints: list[frozenset[str]] = [
            frozenset(getattr(p, "service_endpoints", frozenset())) for p in (source, destination)
        ]
        same = bool(set(endpoints[0]) & set(endpoints[1]))
    if same:
        raise PlanError(
            f"source ({source.label}) and destination ({destination.label}) are the same "
            f"project ({ids[1]}): a migration needs two projects, and planning this one would "
            "stamp tenantshift's markers on the source's own resources. Point destination at "
            "another project"
        )


def held_by_migrations(state_dir: Path) -> dict[str, str]:
    """Source volumes an unfinished migration took off their server (journaled temporaries):
    they look detached, but belong to that server's migration. Read-only: planning never
    creates a journal."""
    path = state_dir / JOURNAL_FILE
    if not path.exists():
        return {}
    journal = Journal(path)
    try:
        return {
            str(row["data"]["volume_id"]): (
                f"detached from its server by the unfinished migration of {row['owner']}"
            )
            for row in journal.pending_temporaries()
            if row["kind"] == Temporary.DETACHED
        }
    finally:
        journal.close()


def deployed_tools(state_dir: Path, src: Snapshot) -> dict[str, str]:
    """What ``tenantshift conversion-hosts deploy`` created in the source project for the
    source conversion host (its security group, its keypair), by id: tools of the migration,
    never part of it, so they are left out without the user having to exclude them. A group or
    keypair of the user's that the deploy only used is the user's, and migrates as usual."""
    try:
        entry = read_record(state_dir).get("source")
    except RecordError:
        return {}  # plan and apply report the unreadable record where they need the hosts
    if not isinstance(entry, dict):
        return {}
    owns = set(entry.get("owns") or [])
    why = "created by `tenantshift conversion-hosts deploy` for the source conversion host"
    ids = set()
    if "security_group" in owns and entry.get("security_group_id"):
        ids.add(str(entry["security_group_id"]))
    if "keypair" in owns and entry.get("keypair"):  # keypairs have no id of their own
        ids.update(
            str(r.id) for r in src.of_kind("keypair") if r.params.get("name") == entry["keypair"]
        )
    return dict.fromkeys(ids, why)


def conversion_host_ids(manifest: Manifest, source: Provider) -> frozenset[str]:
    """The source conversion hosts' server ids (every pair's), so their attachments (ours,
    from a killed run) do not make a volume look attached to a workload. Empty without any."""
    hosts = manifest.conversion_hosts
    verbs = source.workloads
    if hosts is None or verbs is None:
        return frozenset()
    ids = set()
    for pair in hosts.all_pairs:
        if pair.source.server is None:
            continue
        try:
            ids.add(verbs.server.id_of(pair.source.server))
        except ProviderError as exc:
            where = "" if len(hosts.all_pairs) == 1 else f"pairs[{pair.name}]."
            raise PlanError(f"conversion_hosts.{where}source.server: {exc}") from None
    return frozenset(ids)


def _not_yet(manifest: Manifest) -> list[str]:
    """What a manifest may say that this version cannot do yet: said, never ignored."""
    notes = []
    if manifest.map.networks:
        notes.append(
            "map.networks is not supported yet: the mapped networks are migrated like the "
            "others instead of being replaced by existing destination networks"
        )
    if not manifest.workloads.preserve_fixed_ips:
        notes.append(
            "workloads.preserve_fixed_ips: false is not supported yet: ports keep their fixed IPs"
        )
    return notes


def restrict(changes: list[Change], targets: tuple[str, ...]) -> list[Change]:
    """Only the targets and what they depend on, transitively (like ``terraform -target``)."""
    by_address = {c.address: c for c in changes}
    unknown = [t for t in targets if t not in by_address]
    if unknown:
        hints = []
        for target in unknown:
            close = difflib.get_close_matches(target, list(by_address), n=1)
            hints.append(f"{target}" + (f" (did you mean {close[0]}?)" if close else ""))
        raise PlanError("unknown target address: " + ", ".join(hints))
    keep: set[str] = set()
    pending = list(targets)
    while pending:
        address = pending.pop()
        if address in keep or address not in by_address:
            continue
        keep.add(address)
        change = by_address[address]
        pending.extend(change.depends_on)
        if change.action in _DESTROYING:
            # What references a destroyed target must go first (the cascade): without it the
            # destroy fails as "in use" (an interface on a replaced subnet).
            pending.extend(_referrers_destroyed(changes, change))
    return [c for c in changes if c.address in keep]


_DESTROYING = (Action.REPLACE, Action.DELETE)


def _referrers_destroyed(changes: list[Change], target: Change) -> list[str]:
    """Changes that destroy a resource referencing ``target``'s destination resource."""
    doomed = {target.address, target.target_address} - {None}
    out = []
    for change in changes:
        if change.action not in _DESTROYING or change.address == target.address:
            continue
        before = change.before or {}
        if any(value in doomed for _, value in REGISTRY[change.kind].references(before)):
            out.append(change.address)
    return out


def check_fresh(
    plan: Plan, manifest: Manifest, source: Provider, destination: Provider
) -> tuple[Snapshot, Snapshot]:
    """Refuse a saved plan when the manifest or either cloud changed since it was made, or when
    its changes are not exactly what the diff makes of them now.

    The second check costs no API call (the snapshots are taken anyway) and means apply runs
    only what ``plan`` itself would show: a change added to the file (a delete of any resource
    id), removed or edited is refused. So every delete apply runs is one the diff chose, which
    only deletes what carries this migration's marker or belongs to a resource it manages.
    """
    src, dst = check_unchanged(plan, manifest, source, destination)
    fresh = make_plan(
        manifest, source, destination, targets=tuple(plan.targets), snapshots=(src, dst)
    )
    check_plan_matches(plan, fresh.plan)
    return src, dst


def check_unchanged(
    plan: Plan, manifest: Manifest, source: Provider, destination: Provider
) -> tuple[Snapshot, Snapshot]:
    """Refuse a saved plan when the manifest or either cloud changed since it was made."""
    problems = []
    if plan.manifest_hash != manifest_hash(manifest):
        problems.append("the manifest changed since the plan was made")
    src, dst = take_snapshots(source, destination)
    for side, then, now in (("source", plan.source, src), ("destination", plan.destination, dst)):
        if then.digest != now.fingerprint():
            problems.append(f"the {side} changed: " + describe_drift(then, fingerprint(now)))
    if problems:
        raise StalePlanError(
            "the saved plan is stale, run plan again:\n  - " + "\n  - ".join(problems)
        )
    return src, dst


def check_plan_matches(saved: Plan, fresh: Plan) -> None:
    """Refuse ``saved`` unless its changes equal ``fresh``'s (the same manifest and snapshots
    planned again), naming the first address that differs."""
    theirs = {c.address: _comparable(c) for c in saved.changes}
    ours = {c.address: _comparable(c) for c in fresh.changes}
    for address in sorted(set(theirs) | set(ours)):
        if theirs.get(address) == ours.get(address):
            continue
        if address not in ours:
            what = "is not a change tenantshift makes"
        elif address not in theirs:
            what = "is missing from the saved plan"
        else:
            what = "differs from what tenantshift plans"
        raise TamperedPlanError(
            f"the saved plan was edited or damaged: {address} {what}; run plan again"
        )


def _comparable(change: Change) -> dict[str, Any]:
    """JSON form: the saved side went through JSON, so compare like with like."""
    return change.model_dump(mode="json")


def plan_manifest(saved: Plan, given: Path | None) -> Path:
    """The manifest ``apply PLAN`` must use: the one the user names, never one the plan names.

    A plan file is data anyone with write access to it controls; if it chose the manifest it
    would choose the credentials too. The path it records only goes into the hint.
    """
    if given is None:
        hint = f" (the plan was made from {saved.manifest_path})" if saved.manifest_path else ""
        raise PlanError(f"give the manifest with -m to apply a saved plan{hint}")
    return given


def describe_drift(then: Fingerprint, now: Fingerprint) -> str:
    added = sorted(set(now.resources) - set(then.resources))
    removed = sorted(set(then.resources) - set(now.resources))
    changed = sorted(
        a for a in set(now.resources) & set(then.resources) if now.resources[a] != then.resources[a]
    )
    parts = []
    for label, items in (("added", added), ("removed", removed), ("changed", changed)):
        if items:
            shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
            parts.append(f"{label} {shown}")
    return "; ".join(parts) or "names visible to the project changed"
