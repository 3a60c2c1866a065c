"""The diff as fixture tables: one ``tests/fixtures/diff/<kind>/<case>.yaml`` per case.

Each file becomes one test case, with the id ``<kind>/<case>``. A fixture holds::

    description: one line saying what the case proves (required)
    prune: false                  # optional, options.prune
    migration: aaaaaaa            # optional: this migration's id; markers are then
                                  # ``<migration>:<source id>`` (a bare id is a legacy marker)
    desired:                      # the desired state, either as a list of resources ...
      - address: network.new-name # kind.key; the key must be what the kind builds from params
        params: {name: new-name}  # omitted params take the kind's declared defaults
        source_id: src-1          # optional: the source resource's id (provenance to stamp)
    # ... or as raw source records, ``{kind: [record, ...]}`` with ids as references and an
    # optional ``created_at``: built through ``normalize`` then ``derive_desired`` (no selection,
    # no maps), so snapshot assembly (duplicate keys, reference rewriting) is exercised too.
    actual:                       # the destination snapshot, the same two forms
      - address: network.old-name
        params: {name: old-name}
        id: dst-1                 # optional, defaults to "dst:<address>"
        provenance: src-1         # optional: our marker
    externals: {external_network: [public]}   # optional: names visible in the destination
    quota_left: {network: 1}                  # optional
    warnings: [share the key]     # optional: substrings some snapshot warning must contain
    expected:                     # EVERY change but plain no-ops (reasoned no-ops too)
      - address: network.new-name
        action: update            # required
        reason: adopt             # optional; ``null`` asserts there is none
        fields: [name]            # optional: the names of the changed fields, exactly
        forces_replacement: [cidr]  # optional: the changed fields that force a replacement
        detail: a substring       # optional: ``detail`` must contain it
        target_address: network.old-name  # optional; ``null`` asserts there is none
        source_id: src-1          # optional
    noop: [network.other]         # optional: addresses that must be plain no-ops

Params of list-form resources go through ``params_from_record``, like a provider's records, so
unordered lists are sorted and defaults are explicit. The comparison is exhaustive: the set of
non-no-op (or reasoned) addresses must equal the expected set. Every case also checks the plan
invariants documented in docs/plan-format.md (``before`` is null exactly for creates, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenantshift.plans import Action, Change, diff
from tenantshift.resources import REGISTRY, Resource, Snapshot, derive_desired, normalize
from tenantshift.resources.base import split_address
from tenantshift.resources.snapshot import params_from_record

FIXTURES = Path(__file__).parent.parent / "fixtures" / "diff"
CASES = sorted(
    p.relative_to(FIXTURES).with_suffix("").as_posix() for p in FIXTURES.glob("*/*.yaml")
)

_TOP_KEYS = {
    "description",
    "prune",
    "migration",
    "desired",
    "actual",
    "externals",
    "quota_left",
    "warnings",
    "expected",
    "noop",
}
_EXPECTED_KEYS = {
    "address",
    "action",
    "reason",
    "fields",
    "forces_replacement",
    "detail",
    "target_address",
    "source_id",
}


def _resources(items: list[dict[str, Any]], *, desired: bool) -> dict[str, Resource]:
    out: dict[str, Resource] = {}
    for item in items:
        unknown = set(item) - {"address", "params", "source_id", "id", "provenance"}
        assert not unknown, f"unknown resource keys {sorted(unknown)} in {item}"
        address = item["address"]
        kind_name, key = split_address(address)
        kind = REGISTRY[kind_name]
        params = params_from_record(kind, item.get("params") or {})
        unknown_params = set(item.get("params") or {}) - set(kind.field_names)
        assert not unknown_params, f"{address}: {kind_name} has no fields {sorted(unknown_params)}"
        built = kind.key(params, lambda a: split_address(a)[1])
        assert key == built or key.startswith(built + "~"), (
            f"fixture error: {address} but its params make the key {built!r}"
        )
        if desired:
            info = {"source_id": item.get("source_id"), "source_address": address}
        else:
            info = {"id": item.get("id", f"dst:{address}"), "provenance": item.get("provenance")}
        assert address not in out, f"fixture error: {address} twice"
        out[address] = Resource(kind=kind_name, key=key, params=params, info=info)
    return out


def _snapshot(
    spec: list[dict[str, Any]] | Mapping[str, list[dict[str, Any]]] | None,
    *,
    desired: bool,
    externals: Mapping[str, list[str]],
    quota_left: Mapping[str, int],
) -> Snapshot:
    if isinstance(spec, Mapping):
        snap = normalize(
            "source" if desired else "destination",
            spec,
            externals=externals,
            quota_left=quota_left,
        )
        return derive_desired(snap, None, None) if desired else snap
    return Snapshot(
        cloud="desired" if desired else "destination",
        resources=_resources(list(spec or []), desired=desired),
        externals={k: list(v) for k, v in externals.items()},
        quota_left=dict(quota_left),
    )


def _load(case: str) -> dict[str, Any]:
    data = yaml.safe_load((FIXTURES / f"{case}.yaml").read_text())
    assert isinstance(data, dict), f"{case}: a fixture is a mapping"
    unknown = set(data) - _TOP_KEYS
    assert not unknown, f"{case}: unknown keys {sorted(unknown)}"
    assert data.get("description"), f"{case}: every fixture says what it proves"
    for item in data.get("expected") or []:
        bad = set(item) - _EXPECTED_KEYS
        assert not bad, f"{case}: unknown expected keys {sorted(bad)}"
        Action(item["action"])  # a typo in a fixture is a fixture error, not a pass
    return data


def _check_invariants(changes: list[Change]) -> None:
    addresses = [c.address for c in changes]
    assert len(addresses) == len(set(addresses)), "one change per address"
    assert addresses == sorted(addresses), "changes are sorted by address"
    for c in changes:
        new = c.action is Action.CREATE or (c.action is Action.MIGRATE and c.target_id is None)
        assert (c.before is None) == new, f"{c.address}: before"
        assert (c.after is None) == (c.action is Action.DELETE), f"{c.address}: after"
        assert split_address(c.address)[0] == c.kind, f"{c.address}: kind {c.kind}"
        if c.blocked:
            assert c.detail, f"{c.address}: a blocked change says why"
        if c.action is Action.REPLACE:
            assert c.reason is not None, f"{c.address}: a replacement says why"
        if any(f.forces_replacement for f in c.fields) and not c.blocked:
            assert c.action is Action.REPLACE, f"{c.address}: forced field but {c.action}"
        if c.action in (Action.UPDATE, Action.REPLACE, Action.DELETE, Action.NOOP):
            assert c.before is not None
        for dep in c.depends_on:
            assert dep in addresses, f"{c.address} depends on {dep}, which the plan lacks"


def test_fixture_set_is_large_enough() -> None:
    kinds = {case.split("/")[0] for case in CASES}
    assert kinds == set(REGISTRY.kinds), (
        f"cases for every kind; missing {set(REGISTRY.kinds) - kinds}"
    )
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES)
def test_diff_fixture(case: str) -> None:
    data = _load(case)
    externals = data.get("externals") or {}
    quota_left = data.get("quota_left") or {}
    desired = _snapshot(data.get("desired"), desired=True, externals={}, quota_left={})
    actual = _snapshot(
        data.get("actual"), desired=False, externals=externals, quota_left=quota_left
    )

    changes = diff(
        desired, actual, prune=bool(data.get("prune", False)), migration=data.get("migration")
    )
    _check_invariants(changes)
    by_address = {c.address: c for c in changes}

    shown = {c.address for c in changes if c.action is not Action.NOOP or c.reason is not None}
    expected = {item["address"]: item for item in data.get("expected") or []}
    listing = "\n".join(
        f"  {c.address}: {c.action.value} {c.reason.value if c.reason else ''} {c.detail}"
        for c in changes
    )
    assert shown == set(expected), (
        f"unexpected: {sorted(shown - set(expected))}, missing: {sorted(set(expected) - shown)}\n"
        f"plan:\n{listing}"
    )
    for address, want in expected.items():
        got = by_address[address]
        assert got.action.value == want["action"], f"{address}\nplan:\n{listing}"
        if "reason" in want:
            assert (got.reason.value if got.reason else None) == want["reason"], (
                f"{address}: reason\nplan:\n{listing}"
            )
        if "fields" in want:
            assert sorted(f.field for f in got.fields) == sorted(want["fields"]), address
        if "forces_replacement" in want:
            forced = sorted(f.field for f in got.fields if f.forces_replacement)
            assert forced == sorted(want["forces_replacement"]), address
        if "detail" in want:
            assert want["detail"] in got.detail, f"{address}: detail {got.detail!r}"
        if "target_address" in want:
            assert got.target_address == want["target_address"], address
        if "source_id" in want:
            assert got.source_id == want["source_id"], address
    for address in data.get("noop") or []:
        assert address in by_address, f"{address} missing from the plan\nplan:\n{listing}"
        got = by_address[address]
        assert got.action is Action.NOOP and got.reason is None, f"{address}\nplan:\n{listing}"
    warnings = [*desired.warnings, *actual.warnings]
    for text in data.get("warnings") or []:
        assert any(text in w for w in warnings), f"no warning contains {text!r}: {warnings}"
