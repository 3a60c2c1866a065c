"""The deploy/remove logic on an in-memory cloud: idempotent, resumable, removes only its own.
(tests/integration/test_conversion_host_deploy.py runs it on the devcloud with real sshd.)"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tenantshift.engine.convhosts import deploy as convhosts
from tenantshift.engine.convhosts.deploy import DeployError
from tenantshift.engine.convhosts.hostkeys import fingerprint
from tenantshift.engine.workloads.plan import _conversion_host_problem
from tenantshift.manifest.deployed import read_record, record_path, with_deployed_hosts
from tenantshift.providers import ProviderError
from tenantshift.providers.convhost_ops import HostServer
from tests.engine.convhosts_fakes import HOST_KEY, clouds, deployed_manifest, fake_reach
from tests.providers.convhost_sdk_fake import SdkFake, http_error, ops_over

OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB8GM8QyKPsdiKIqQ6rQKrn+elZRbxLt+5QduDW0wxlv"


def test_deploy_creates_each_resource_once_and_fills_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logins = fake_reach(monkeypatch)
    made, ops_for = clouds()
    m = deployed_manifest(tmp_path, allow_ssh_from=["192.0.2.0/24"])
    reports = convhosts.deploy(m, ops_for=ops_for)
    src, dst = made["source"], made["destination"]
    assert [len(c.servers_) for c in (src, dst)] == [1, 1]
    assert [len(c.ips) for c in (src, dst)] == [1, 1]
    assert {r.host_key_source for r in reports} == {"console-log"}
    assert {r.fingerprint for r in reports} == {fingerprint(HOST_KEY)}
    # Each security group lets in the other host's floating IP and allow_ssh_from.
    dst_ip = next(iter(dst.ips.values())).floating_ip_address
    assert {c for _, c in src.rules} == {f"{dst_ip}/32", "192.0.2.0/24"}
    assert len(logins) == 2  # a verified login per host before anything is recorded as done
    # The record is private, and load_manifest's resolution fills address and host key.
    assert stat.S_IMODE(os.stat(record_path(m.state_dir)).st_mode) == 0o600
    filled = with_deployed_hosts(m)
    assert filled.conversion_hosts is not None
    assert (
        filled.conversion_hosts.source.address == next(iter(src.ips.values())).floating_ip_address
    )
    assert filled.conversion_hosts.source.host_key == HOST_KEY
    # What plan and apply read: the pair view carries the filled hosts (a re-validation
    # would refuse a deployed host that now has a host key).
    [pair] = filled.conversion_hosts.all_pairs
    assert pair.source.host_key == HOST_KEY and pair.destination.address is not None

    again = convhosts.deploy(m, ops_for=ops_for)
    assert [r.actions for r in again] == [[], []]
    assert [len(c.servers_) + len(c.ips) + len(c.groups) for c in (src, dst)] == [3, 3]


@pytest.mark.parametrize(
    "kill_after", ["create_keypair", "create_security_group", "create_server", "create_floating_ip"]
)
def test_a_killed_deploy_converges_and_remove_finds_everything(
    kill_after: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_reach(monkeypatch)
    made, ops_for = clouds()
    m = deployed_manifest(tmp_path)
    made["source"].fail_after = kill_after
    with pytest.raises(KeyboardInterrupt):
        convhosts.deploy(m, ops_for=ops_for)
    convhosts.deploy(m, ops_for=ops_for)
    for cloud in made.values():
        assert len(cloud.servers_) == len(cloud.ips) == len(cloud.groups) == 1
        assert len(cloud.keypairs) == 1
    convhosts.remove(m, ops_for=ops_for)
    for cloud in made.values():
        assert not (cloud.servers_ or cloud.ips or cloud.groups or cloud.keypairs)
    assert read_record(m.state_dir) == {}


def test_remove_leaves_a_keypair_and_security_group_it_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_reach(monkeypatch)
    made, ops_for = clouds()
    src = made["source"]
    src.keypairs["tenantshift-conversion"] = "ssh-ed25519 AAAAclient"
    users_group = src.create_security_group("tenantshift-conversion", "the user's own")
    m = deployed_manifest(tmp_path)
    convhosts.deploy(m, ops_for=ops_for)
    assert src.rules == []  # a group of the user's is used as it is, never changed
    convhosts.remove(m, ops_for=ops_for)
    assert src.keypairs == {"tenantshift-conversion": "ssh-ed25519 AAAAclient"}
    assert list(src.groups) == [users_group.id]
    assert not src.servers_ and not src.ips
    assert not made["destination"].keypairs and not made["destination"].groups


def test_a_server_of_that_name_that_is_not_ours_is_never_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_reach(monkeypatch)
    made, ops_for = clouds()
    made["source"].servers_["x"] = HostServer(id="x", name="conv-src", status="ACTIVE")
    with pytest.raises(DeployError, match="that tenantshift did not create"):
        convhosts.deploy(deployed_manifest(tmp_path), ops_for=ops_for)
    assert made["source"].created == []


def test_a_keypair_with_another_public_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_reach(monkeypatch)
    made, ops_for = clouds()
    made["source"].keypairs["tenantshift-conversion"] = OTHER
    with pytest.raises(DeployError, match="another public key"):
        convhosts.deploy(deployed_manifest(tmp_path), ops_for=ops_for)


def test_trust_on_first_use_only_when_the_manifest_allows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_reach(monkeypatch)
    _made, ops_for = clouds(console_keys=False)
    with pytest.raises(DeployError, match="trust_first_use"):
        convhosts.deploy(deployed_manifest(tmp_path), ops_for=ops_for)
    said: list[str] = []
    m = deployed_manifest(tmp_path, trust_first_use=True)
    reports = convhosts.deploy(m, say=said.append, ops_for=ops_for)
    assert {r.host_key_source for r in reports} == {"first-use"}
    assert any("WARNING" in line and fingerprint(HOST_KEY) in line for line in said)
    # Recorded: a later deploy that meets another key refuses, whatever the console says.
    fake_reach(monkeypatch, offered=OTHER)
    with pytest.raises(DeployError, match="changed since it was recorded"):
        convhosts.deploy(m, ops_for=ops_for)


def test_an_undeployed_host_is_reported_not_connected(tmp_path: Path) -> None:
    m = deployed_manifest(tmp_path)
    assert [row["state"] for row in convhosts.status(m)] == ["not deployed"] * 2
    hosts = with_deployed_hosts(m).conversion_hosts
    assert hosts is not None
    with pytest.raises(ValueError, match="conversion-hosts deploy"):
        hosts.source.connect_address()
    # The plan blocks workloads with the command to run, before asking any cloud.
    problem = _conversion_host_problem(m, object(), object())  # type: ignore[arg-type]
    assert problem is not None and "'conv-src' is not deployed yet" in problem


def test_a_transient_cloud_failure_during_deploy_is_retried_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real OpenStack verbs over a fake connection: a 503 (and a lost answer) in the
    middle of a deploy is the ``Caller``'s to retry, as for every other cloud call."""
    fake_reach(monkeypatch)
    m = deployed_manifest(tmp_path)

    def flaky() -> SdkFake:
        fake = SdkFake()
        fake.fail("create_server", http_error(503, "nova-api restarting"))
        fake.fail("get_server", http_error(503))
        fake.fail("create_ip", http_error(502), lost=True)
        return fake

    fakes = {"source": flaky(), "destination": flaky()}
    reports = convhosts.deploy(m, ops_for=lambda _m, side: ops_over(fakes[side], side))
    assert {r.fingerprint for r in reports} == {fingerprint(HOST_KEY)}
    for fake in fakes.values():
        assert (len(fake.servers_), len(fake.ips_), len(fake.groups)) == (1, 1, 1)
        assert fake.calls["create_server"] == 2  # the 503, then the retry
    convhosts.remove(m, ops_for=lambda _m, side: ops_over(fakes[side], side))
    for fake in fakes.values():
        assert not (fake.servers_ or fake.ips_ or fake.groups or fake.keypairs or fake.ports_)

    # Without retries (one attempt per call) the same 503 ends the deploy.
    fakes = {"source": flaky(), "destination": flaky()}
    with pytest.raises(ProviderError, match=r"compute\.create_server failed: HTTP 503"):
        convhosts.deploy(
            deployed_manifest(tmp_path / "again"),
            ops_for=lambda _m, side: ops_over(fakes[side], side, attempts=1),
        )
