"""The handler API's extension points that no current kind uses yet: metadata provenance,
waits outside the retry budget, quota without Neutron (what a Cinder or Nova handler needs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from unittest import mock

import pytest
from openstack.block_storage.v3 import volume
from openstack.test.fakes import generate_fake_resource

from tenantshift.providers import NotFoundError, ProviderError
from tenantshift.providers.openstack import KINDS, OpenStackProvider, RetryPolicy
from tenantshift.providers.openstack.kinds import (
    KindHandler,
    MetadataProvenance,
    Usage,
    Wait,
    handler_classes,
    register_handler,
)
from tenantshift.providers.openstack.kinds.base import poll
from tenantshift.resources import Record


class FakeVolumes(KindHandler):
    """A Cinder-like handler (asynchronous, marker in metadata), on the ``network`` Kind only
    because a handler needs a declared kind; it is never registered."""

    kind = "network"
    provenance_store = MetadataProvenance()
    create_wait = Wait(timeout=10, interval=1, sleep=lambda _s: None)
    delete_wait = Wait(timeout=10, interval=1, sleep=lambda _s: None)

    def __init__(self, ctx: Any, statuses: list[str]) -> None:
        super().__init__(ctx)
        self.statuses = statuses
        self.metadata: dict[str, str] = {}
        self.written: list[dict[str, str]] = []

    def _vol(self, status: str) -> Any:
        return generate_fake_resource(
            volume.Volume, id="v1", name="data", status=status, metadata=dict(self.metadata)
        )

    def list(self, project_id: str) -> list[Any]:
        return []

    def to_record(self, res: Any) -> Record:
        return {"id": res.id, "name": res.name, **self.provenance_store.fields(res)}

    def fetch(self, id: str) -> Any:
        return self._vol(self.statuses.pop(0))

    def candidates(self, source_id: str | None, params: Mapping[str, Any]) -> list[Record]:
        return []

    def create_call(self, attrs: dict[str, Any], recover: Any) -> Any:
        self.metadata.update(attrs.get("metadata") or {})
        return self._vol("creating")

    def delete_call(self, id: str) -> None:
        pass

    def write_metadata(self, res: Any, metadata: dict[str, str]) -> None:
        self.written.append(metadata)
        self.metadata.update(metadata)


def ctx() -> Any:
    return mock.Mock(label="fake")


def test_async_create_waits_for_available_with_the_marker_in_metadata() -> None:
    handler = FakeVolumes(ctx(), ["creating", "creating", "available"])
    record = handler.create({"name": "data"}, "src-v", recover=lambda: None)
    assert record["provenance"] == "src-v"
    assert handler.metadata == {"tenantshift-src": "src-v"}
    assert handler.written == []  # atomic: in the create request, no stamp afterwards
    assert handler.statuses == []


def test_a_wait_ends_on_error_status_and_on_its_own_timeout() -> None:
    with pytest.raises(ProviderError, match="went to status 'error'"):
        FakeVolumes(ctx(), ["error"]).create({"name": "data"}, None, recover=lambda: None)
    clock = iter(range(0, 100, 4))
    slow = FakeVolumes(ctx(), ["creating"] * 10)
    slow.create_wait = Wait(
        timeout=10, interval=1, sleep=lambda _s: None, clock=lambda: next(clock)
    )
    with pytest.raises(ProviderError, match="after 10s waiting for 'available'"):
        slow.create({"name": "data"}, None, recover=lambda: None)


def test_metadata_restamp_and_delete_wait() -> None:
    handler = FakeVolumes(ctx(), ["available", "available"])  # read, stamp, read back
    assert handler.update("v1", {"provenance": "src-2"})["provenance"] == "src-2"
    assert handler.written == [{"tenantshift-src": "src-2"}]
    gone = FakeVolumes(ctx(), [])
    gone.fetch = mock.Mock(side_effect=[gone._vol("deleting"), NotFoundError("gone")])  # type: ignore[method-assign]
    gone.delete("v1")
    assert gone.fetch.call_count == 2


def test_quota_from_a_limit_alone_counts_the_records() -> None:
    handler = FakeVolumes(ctx(), [])
    assert handler.quota_left(Usage(limit=5), [{}, {}]) == 3
    assert handler.quota_left(Usage(limit=10, used=4, reserved=1), []) == 5
    assert handler.quota_left(Usage(limit=-1), []) is None
    assert handler.quota_left(None, []) is None


def test_kinds_come_from_the_registry_and_a_kind_has_one_handler() -> None:
    assert set(KINDS) == set(handler_classes())
    assert KINDS.index("network") < KINDS.index("subnet") < KINDS.index("router_interface")
    with pytest.raises(ValueError, match="two handlers"):
        register_handler(FakeVolumes)
    with pytest.raises(TypeError, match="provenance"):

        class Unmarked(FakeVolumes):
            provenance_store = None

        Unmarked(ctx(), [])


def test_every_handler_instantiates_against_a_provider() -> None:
    conn = mock.MagicMock()
    conn.session.session.hooks = {"response": []}
    cloud = OpenStackProvider(conn, label="fake", retry=RetryPolicy(attempts=1))
    assert sorted(cloud.handlers) == sorted(KINDS)


def test_a_servers_ports_are_in_nic_order_not_creation_order() -> None:
    """Ports made in parallel are created in any order; Nova's addresses list the NICs."""
    from types import SimpleNamespace

    from tenantshift.providers.openstack.kinds.server import nic_order

    server = SimpleNamespace(
        addresses={
            "db-net": [{"addr": "10.20.0.60", "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:02"}],
            "app-net": [
                {"addr": "10.10.0.60", "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"},
                {"addr": "2001:db8::1", "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"},
            ],
        }
    )
    first_made = SimpleNamespace(id="p-app", mac_address="fa:16:3e:00:00:01", created_at="1")
    second_made = SimpleNamespace(id="p-db", mac_address="fa:16:3e:00:00:02", created_at="2")
    assert nic_order(server, [first_made, second_made]) == ["p-db", "p-app"]


def test_a_wait_polls_soon_then_backs_off_to_its_interval() -> None:
    slept: list[float] = []
    states = iter(["creating"] * 6 + ["available"])
    poll(lambda: next(states), "available", "volume v1", Wait(interval=2, sleep=slept.append), "x")
    assert slept == [0.25, 0.5, 1, 2, 2, 2]
