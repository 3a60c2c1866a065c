"""A kill between any two cloud calls converges: every call index of a migration, before and
after the call, killed in process, then applied until done, then the end state checked.

The memory cloud counts every call (``tenantshift.faults``), including the ones inside one
step (Cinder's bootable flag after the create, Neutron's tags after the POST), so these are
the moments a kill at a phase boundary never reaches.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from tenantshift import faults
from tenantshift.engine.apply import apply_plan
from tenantshift.engine.planning import make_plan
from tenantshift.manifest import Manifest
from tenantshift.providers import ProviderError
from tenantshift.providers.base import MARKERS_KEY
from tenantshift.providers.memory import MemoryProvider
from tests.engine.workload_world import (
    Killed,
    World,
    apply_until_done,
    check_converged,
    kill_at,
    world,
)

KINDS = {
    "volume": {"volume": True, "image_server": False, "volume_server": False},
    "image-booted server": {"volume": False, "image_server": True, "volume_server": False},
    "volume-booted server": {"volume": False, "image_server": False, "volume_server": True},
}


def calls_of_a_clean_apply(tmp_path: Path, kinds: dict[str, bool], monkeypatch: Any) -> int:
    w = world(tmp_path / "count", **kinds)
    plan = w.plan()
    with kill_at(monkeypatch, None):
        assert w.apply(plan).ok
        return next(faults._calls) - 1


def killed_then_converged(w: World, monkeypatch: Any, call: int, after: bool) -> None:
    plan = w.plan()
    with kill_at(monkeypatch, call, after=after):
        try:
            result = w.apply(plan)
        except Killed:
            pass
        else:
            raise AssertionError(f"call {call} was never made: the apply ended {result.ok}")
    apply_until_done(w)
    check_converged(w)


@pytest.mark.parametrize("kinds", KINDS.values(), ids=KINDS.keys())
def test_a_kill_at_every_cloud_call_converges(
    tmp_path: Path, kinds: dict[str, bool], monkeypatch: Any
) -> None:
    total = calls_of_a_clean_apply(tmp_path, kinds, monkeypatch)
    assert total > 10  # the migration's own calls, not only a snapshot's
    failures = []
    for call in range(1, total + 1):
        for after in (False, True):
            w = world(tmp_path / f"{call}-{after}", **kinds)
            try:
                killed_then_converged(w, monkeypatch, call, after)
            except AssertionError as exc:
                failures.append(f"kill {'after' if after else 'before'} call {call}: {exc}")
    assert not failures, f"{len(failures)} of {2 * total} kill points:\n" + "\n".join(failures[:10])


def duplicate_names(tmp_path: Path) -> tuple[Manifest, MemoryProvider, MemoryProvider]:
    """Two source networks of one name, each with a subnet (``network.dup-net`` and
    ``network.dup-net~2``): only their markers tell their copies apart."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.model_validate(
        {
            "version": 1,
            "source": {"cloud": "src"},
            "destination": {"cloud": "dst"},
            "options": {"state_dir": str(tmp_path / "state")},
        }
    )
    source = MemoryProvider("source")
    for cidr in ("10.1.0.0/24", "10.2.0.0/24"):
        net = source.create("network", {"name": "dup-net"}, None)
        source.create("subnet", {"name": "dup-subnet", "network": net["id"], "cidr": cidr}, None)
    return manifest, source, MemoryProvider("destination")


def stamps_of(cloud: MemoryProvider) -> dict[str, set[str]]:
    """Every marker each network was ever stamped with (one source each, or a copy was claimed
    by two: with Neutron's tags, two racing stamps can leave both)."""
    stamps: dict[str, set[str]] = {}
    update = cloud.update

    def spy(kind: str, id: str, changes: Any) -> Any:
        done = update(kind, id, changes)  # a stamp the kill stopped was never made
        if kind == "network" and changes.get("provenance"):
            stamps.setdefault(id, set()).add(str(changes["provenance"]))
        return done

    def slow_stamp(operation: str, kind: str, params: Any) -> None:
        # A stamp that takes its time, as a loaded Neutron's: a same-named create that looks
        # for an earlier copy meanwhile finds the resource still unmarked.
        if operation == "update" and kind == "network" and "provenance" in params:
            time.sleep(0.02)

    cloud.update = spy  # type: ignore[method-assign]
    cloud.fault = slow_stamp
    return stamps


def test_a_kill_between_a_create_and_its_marker_never_gives_one_copy_two_sources(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Second reproduction of the kill issue: a kill after a network's POST and before its
    tags; the next plans must not let the other same-named source adopt it."""
    manifest, source, destination = duplicate_names(tmp_path / "count")
    with kill_at(monkeypatch, None):
        assert apply_plan(
            make_plan(manifest, source, destination).plan, destination, tmp_path / "count"
        ).ok
        total = next(faults._calls) - 1
    failures = []
    for call in range(1, total + 1):
        for after in (False, True):
            where = tmp_path / f"{call}-{after}"
            manifest, source, destination = duplicate_names(where)
            stamps = stamps_of(destination)
            with kill_at(monkeypatch, call, after=after), contextlib.suppress(Killed):
                apply_plan(make_plan(manifest, source, destination).plan, destination, where)
            try:
                for _ in range(3):
                    plan = make_plan(manifest, source, destination).plan
                    if apply_plan(plan, destination, where).ok:
                        break
                final = make_plan(manifest, source, destination).plan
                assert not final.has_changes, [c.address for c in final.changes]
                networks = list(destination.records_of("network").values())
                markers = sorted(str(n["provenance"]) for n in networks)
                assert len(networks) == 2 and len(set(markers)) == 2, networks
                assert not any(n.get(MARKERS_KEY) for n in networks), networks
                claimed = {i: m for i, m in stamps.items() if len(m) > 1}
                assert not claimed, f"stamped with two sources' markers: {claimed}"
            except (AssertionError, ProviderError) as exc:
                failures.append(f"kill {'after' if after else 'before'} call {call}: {exc}")
    assert not failures, f"{len(failures)} of {2 * total} kill points:\n" + "\n".join(failures[:6])


def test_the_kill_hook_takes_an_index_or_a_call_name(monkeypatch: Any) -> None:
    seen: list[str] = []

    def killer(where: str) -> None:
        seen.append(where)
        raise Killed(where)

    monkeypatch.setattr(faults, "killer", killer)
    for target, calls, expected in (
        ("3", ["a", "b", "c", "d"], "before cloud call 3 (c)"),
        ("2:after", ["a", "b", "c"], "after cloud call 2 (b)"),
        ("b#2", ["a", "b", "c", "b", "d"], "before cloud call 4 (b)"),
        ("c:after", ["a", "c", "c"], "after cloud call 2 (c)"),
    ):
        faults.reset()
        seen.clear()
        monkeypatch.setenv(faults.KILL_AT_CALL, target)
        with contextlib.suppress(Killed):
            for name in calls:
                with faults.cloud_call(name):
                    pass
        assert seen == [expected], target
    faults.reset()
