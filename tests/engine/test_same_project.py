"""A manifest whose two ends are one project is refused at plan (issue 12)."""

from __future__ import annotations

import pytest

from tenantshift.engine.planning import PlanError, make_plan
from tenantshift.manifest import Manifest
from tenantshift.plans import Action
from tenantshift.providers.memory import MemoryProvider
from tenantshift.providers.openstack.provider import normalized_url
from tests.engine.topology import build_source

MANIFEST = Manifest.model_validate(
    {"version": 1, "source": {"cloud": "src"}, "destination": {"cloud": "dst"}}
)


class _Project(MemoryProvider):
    """A memory cloud that says which project it is, as the OpenStack provider does."""

    def __init__(self, label: str, identity: str, project_id: str, endpoints: set[str]) -> None:
        super().__init__(label, identity=identity)
        self.project_id = project_id
        self.service_endpoints = frozenset(endpoints)


def test_the_same_identity_at_both_ends_is_refused_before_any_snapshot() -> None:
    source = build_source(networks=1, groups=1)
    source.identity = "https://keystone.example:5000#p-1"
    destination = MemoryProvider("destination", identity="https://keystone.example:5000#p-1")
    with pytest.raises(
        PlanError, match=r"are the same project .*https://keystone\.example:5000#p-1"
    ):
        make_plan(MANIFEST, source, destination)
    assert ("snapshot", "*") not in source.calls + destination.calls


def test_two_spellings_of_one_keystone_reaching_one_neutron_are_one_project() -> None:
    neutron = {"network http://127.0.0.1:9696"}
    source = _Project("src", "http://localhost:5000#p-1", "p-1", neutron)
    destination = _Project("dst", "http://127.0.0.1:5000#p-1", "p-1", neutron)
    with pytest.raises(PlanError, match="same project"):
        make_plan(MANIFEST, source, destination)


def _planned_changes(source: MemoryProvider, destination: MemoryProvider) -> dict[str, str]:
    """Every change but the no-ops, after giving the source one network to migrate."""
    source.create("network", {"name": "app"}, None)
    plan = make_plan(MANIFEST, source, destination).plan
    return {c.address: str(c.action) for c in plan.changes if c.action != Action.NOOP}


def test_one_project_id_in_two_clouds_is_a_migration() -> None:
    """An identity database copied into a new cloud keeps the project ids."""
    source = _Project("src", "https://old:5000#p-1", "p-1", {"network https://old:9696"})
    destination = _Project("dst", "https://new:5000#p-1", "p-1", {"network https://new:9696"})
    assert _planned_changes(source, destination) == {"network.app": "create"}


def test_two_projects_of_one_cloud_are_a_migration() -> None:
    source = MemoryProvider("src", identity="https://k:5000#p-1")
    destination = MemoryProvider("dst", identity="https://k:5000#p-2")
    assert _planned_changes(source, destination) == {"network.app": "create"}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000/v3",
        "http://127.0.0.1:5000/v3/",
        "HTTP://127.0.0.1:5000",
        "http://127.0.0.1:5000/",
    ],
)
def test_keystone_urls_have_one_spelling(url: str) -> None:
    assert normalized_url(url) == "http://127.0.0.1:5000"
