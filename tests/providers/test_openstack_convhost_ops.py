"""Conversion host deployment's cloud verbs over a fake connection: the requests they send,
and that they go through the provider's ``Caller`` (retries, lost responses found rather than
made twice, ``ProviderError`` naming the call) and the handlers' waits."""

from __future__ import annotations

import pytest

from tenantshift.providers import ProviderError
from tenantshift.providers.convhost_ops import MARKER, SERVER_MARKER_KEY, ServerSpec
from tests.providers.convhost_sdk_fake import SdkFake, http_error, ops_over

SPEC = ServerSpec(
    name="conv-src",
    image_id="img-1",
    flavor_id="flv-1",
    network_id="net-1",
    keypair="kp",
    security_group_id="sg-9",
    metadata={"owner": "ops"},
)


def test_the_boot_request_carries_the_marker_and_boots_from_image_or_volume() -> None:
    fake = SdkFake()
    ops = ops_over(fake, "source")
    server = ops.create_server(SPEC)
    assert ops.is_ours(server) and server.status == "BUILD"
    from_image = fake.requests[-1]
    assert from_image["image_id"] == "img-1" and "block_device_mapping" not in from_image
    assert from_image["metadata"] == {"owner": "ops", SERVER_MARKER_KEY: "source"}
    assert from_image["security_groups"] == [{"name": "sg-9"}]
    ops.create_server(ServerSpec(**{**vars(SPEC), "volume_size": 5, "availability_zone": "az"}))
    from_volume = fake.requests[-1]
    assert "image_id" not in from_volume and from_volume["availability_zone"] == "az"
    [bdm] = from_volume["block_device_mapping"]
    assert (bdm["uuid"], bdm["volume_size"], bdm["delete_on_termination"]) == ("img-1", 5, True)
    # The other side's server of the same name is not ours.
    assert not ops_over(fake, "destination").is_ours(server)


def test_a_503_is_retried_and_a_lost_create_is_found_not_made_twice() -> None:
    fake = SdkFake()
    ops = ops_over(fake, "source")
    fake.fail("create_server", http_error(503, "nova-api restarting"))
    fake.fail("create_ip", http_error(502), lost=True)  # made, but the answer was lost
    server = ops.create_server(SPEC)
    ip = ops.create_floating_ip("conv-src", "net-ext", f"port-{server.id}")
    assert len(fake.servers_) == 1 and fake.calls["create_server"] == 2
    assert list(fake.ips_) == [ip.id] and fake.calls["create_ip"] == 1
    assert ip.description == f"{MARKER}:source:conv-src"


def test_a_refusal_is_a_provider_error_naming_the_call() -> None:
    fake = SdkFake()
    fake.fail("create_security_group", http_error(400, "Invalid input for name"))
    with pytest.raises(ProviderError) as info:
        ops_over(fake, "source").create_security_group("g")
    assert info.value.call == "network.create_security_group"
    assert str(info.value).startswith("source: network.create_security_group failed")
    assert "Invalid input for name" in str(info.value)


def test_waits_are_the_handlers_polls_each_one_retried() -> None:
    fake = SdkFake()
    ops = ops_over(fake, "source")
    server = ops.create_server(SPEC)
    fake.fail("get_server", http_error(503))
    assert ops.wait_active(server.id, 60).status == "ACTIVE"
    fake.servers_[server.id].status = "ERROR"
    with pytest.raises(ProviderError, match="went to status 'error'") as info:
        ops.wait_active(server.id, 60)
    assert info.value.call == "wait server"


def test_delete_server_waits_until_its_port_releases_the_group() -> None:
    fake = SdkFake()
    ops = ops_over(fake, "source")
    group = ops.create_security_group("g")
    server = ops.create_server(ServerSpec(**{**vars(SPEC), "security_group_id": group.id}))
    fake.servers_[server.id].status = "ERROR"  # a server in ERROR is deleted all the same
    fake.port_linger = 2
    ops.delete_server(server.id, 60)
    assert not fake.servers_ and not fake.ports_
    ops.delete_security_group(group.id)  # one call: no port holds it any more
    assert not fake.groups
    ops.delete_server(server.id, 60)  # gone already: nothing to do


def test_ssh_rules_are_added_once_per_normalized_cidr() -> None:
    fake = SdkFake()
    ops = ops_over(fake, "source")
    group = ops.create_security_group("g")
    assert group.description.startswith(MARKER)
    assert ops.ensure_ssh_rules(group.id, ["192.0.2.7/24", "2001:db8::1/64"]) == [
        "192.0.2.0/24",
        "2001:db8::/64",
    ]
    assert ops.ensure_ssh_rules(group.id, ["192.0.2.0/24"]) == []
    assert [r.ethertype for r in fake.rules] == ["IPv4", "IPv6"]
