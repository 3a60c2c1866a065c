"""The kind declarations agree with every place that lists kinds."""

from __future__ import annotations

from tenantshift.manifest import KINDS
from tenantshift.providers.openstack import KINDS as OPENSTACK_KINDS
from tenantshift.resources import REGISTRY


def test_every_declared_kind_can_be_selected_in_a_manifest() -> None:
    assert set(REGISTRY.names()) <= set(KINDS)


def test_the_openstack_provider_handles_every_declared_kind() -> None:
    assert set(OPENSTACK_KINDS) == set(REGISTRY.names())


def test_references_come_before_their_referrers() -> None:
    order = REGISTRY.names()
    for kind in REGISTRY:
        for field in kind.refs:
            if field.ref != kind.name:
                assert order.index(str(field.ref)) < order.index(kind.name), (kind.name, field)


def test_every_kind_is_documented() -> None:
    for kind in REGISTRY:
        assert kind.doc, kind.name
