"""Smoke tests of the devcloud itself: every resource kind tenantshift touches, as the
non-admin tenant users, and real bytes through volumes, snapshots, images and the conversion
hosts' by-id directories (reached over real SSH with host-key verification).

Every test cleans up after itself (also on failure) and names its resources with a unique
prefix, so it can run beside other tests using the same devcloud.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from openstack import exceptions

pytestmark = pytest.mark.devcloud

# The fixture types live in conftest.py; with --import-mode=importlib conftest is not an
# importable module, so they are only named here.
Devcloud = Any
ConversionHost = Any

MiB = 1024 * 1024
GiB = 1024 * MiB


# -- helpers ----------------------------------------------------------------------------------


def _name(what: str) -> str:
    return f"smoke-{what}-{uuid.uuid4().hex[:8]}"


class Cleanup:
    """LIFO cleanup of created resources, run even when the test fails."""

    def __init__(self) -> None:
        self._fns: list[Callable[[], Any]] = []

    def add(self, fn: Callable[[], Any]) -> None:
        self._fns.append(fn)

    def run(self) -> None:
        errors = []
        for fn in reversed(self._fns):
            try:
                fn()
            except exceptions.NotFoundException:
                pass
            except Exception as e:  # keep cleaning; report at the end
                errors.append(e)
        if errors:
            raise errors[0]


@pytest.fixture
def cleanup() -> Iterator[Cleanup]:
    c = Cleanup()
    yield c
    c.run()


@pytest.fixture(scope="module")
def src(devcloud: Devcloud) -> Any:
    return devcloud.connect("devcloud-src")


@pytest.fixture(scope="module")
def dst(devcloud: Devcloud) -> Any:
    return devcloud.connect("devcloud-dst")


def ssh(
    host: ConversionHost,
    tmp_path: Path,
    command: str,
    stdin: bytes | None = None,
    known_hosts_line: str | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `command` on the conversion host with strict host-key checking."""
    known = tmp_path / f"known_hosts-{host.port}"
    known.write_text((known_hosts_line or host.known_hosts_line) + "\n")
    return subprocess.run(
        [
            "ssh",
            "-i",
            host.key_file,
            "-p",
            str(host.port),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            f"{host.user}@{host.address}",
            command,
        ],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


def wait_volume(conn: Any, vol: Any, status: str = "available") -> Any:
    # Re-fetch first: wait_for_status returns at once if the (stale) object already matches.
    vol = conn.block_storage.get_volume(vol)
    return conn.block_storage.wait_for_status(
        vol, status=status, failures=["error"], interval=1, wait=300
    )


def new_volume(conn: Any, cleanup: Cleanup, size: int = 1, **kwargs: Any) -> Any:
    vol = conn.block_storage.create_volume(name=_name("vol"), size=size, **kwargs)
    cleanup.add(lambda: _delete_volume(conn, vol))
    return wait_volume(conn, vol)


def _delete_volume(conn: Any, vol: Any) -> None:
    conn.block_storage.delete_volume(vol, ignore_missing=True)
    conn.block_storage.wait_for_delete(vol, wait=120)


def attach(conn: Any, server_id: str, vol: Any, cleanup: Cleanup | None = None) -> None:
    conn.compute.create_volume_attachment(server_id, volume_id=vol.id)
    wait_volume(conn, vol, "in-use")
    if cleanup is not None:
        cleanup.add(lambda: detach(conn, server_id, vol))


def detach(conn: Any, server_id: str, vol: Any) -> None:
    if conn.block_storage.get_volume(vol).status != "in-use":
        return
    conn.compute.delete_volume_attachment(server_id, vol.id)
    wait_volume(conn, vol, "available")


def by_id(host: ConversionHost, volume_id: str) -> Path:
    return Path(host.device_dir) / f"virtio-{volume_id[:20]}"


def wait_path(path: Path, exists: bool = True, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() == exists:
            return
        time.sleep(0.2)
    raise AssertionError(f"{path} {'did not appear' if exists else 'still exists'}")


def pattern(seed: str, length: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < length:
        out += hashlib.sha256(f"{seed}-{i}".encode()).digest()
        i += 1
    return bytes(out[:length])


def sha256_logical(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return h.hexdigest()


def image_sha256(conn: Any, image: Any) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    resp = conn.image.download_image(image, stream=True)
    for chunk in resp.iter_content(chunk_size=4 * MiB):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


def wait_image_active(conn: Any, image_id: str) -> Any:
    img = conn.image.get_image(image_id)
    return conn.image.wait_for_status(
        img, "active", failures=["killed", "deleted"], interval=1, wait=300
    )


def delete_image(conn: Any, image_id: str) -> None:
    conn.image.delete_image(image_id, ignore_missing=True)


def boot(conn: Any, cleanup: Cleanup, **kwargs: Any) -> Any:
    flavor = conn.compute.find_flavor(kwargs.pop("flavor", "m1.tiny"))
    server = conn.compute.create_server(name=_name("vm"), flavor_id=flavor.id, **kwargs)
    cleanup.add(lambda: _delete_server(conn, server))
    return conn.compute.wait_for_server(server, status="ACTIVE", wait=300, interval=1)


def _delete_snapshots_of(conn: Any, volume_ids: set[str]) -> None:
    snaps = [s for s in conn.block_storage.snapshots() if s.volume_id in volume_ids]
    for snap in snaps:
        conn.block_storage.delete_snapshot(snap, ignore_missing=True)
    for snap in snaps:
        conn.block_storage.wait_for_delete(snap, wait=120)


def _delete_server(conn: Any, server: Any) -> None:
    conn.compute.delete_server(server, ignore_missing=True)
    conn.compute.wait_for_delete(server, wait=180)


# -- the cloud is there, as described -----------------------------------------------------------


def test_bootstrap_is_complete(devcloud: Devcloud, src: Any, dst: Any) -> None:
    for conn, project in ((src, "src-tenant"), (dst, "dst-tenant")):
        assert conn.identity.get_project(conn.current_project_id).name == project
        assert {"m1.tiny", "m1.small", "m1.medium"} <= {f.name for f in conn.compute.flavors()}
        public = conn.network.find_network("public")
        assert public is not None and public.is_router_external and public.is_shared
        img = conn.image.find_image("cirros-like")
        assert img is not None and img.status == "active"
        hosts = [s for s in conn.compute.servers() if s.name == "conversion-host"]
        assert len(hosts) == 1 and hosts[0].status == "ACTIVE"
    assert devcloud.source_host.server_id != devcloud.destination_host.server_id
    assert Path(devcloud.source_host.device_dir).is_dir()
    assert devcloud.clouds_yaml.exists()


def test_conversion_hosts_yaml_is_a_valid_manifest_section(devcloud: Devcloud) -> None:
    """The file is tenantshift's `conversion_hosts:` as is (its schema forbids extra keys)."""
    import yaml

    from tenantshift.manifest.schema import ConversionHosts

    data = yaml.safe_load(devcloud.conversion_hosts_yaml.read_text())
    hosts = ConversionHosts.model_validate(data)
    assert hosts.source.port == devcloud.source_host.port
    assert hosts.destination.device_dir == devcloud.destination_host.device_dir
    assert hosts.source.host_key == devcloud.source_host.host_key


def test_seed_record_matches_the_cloud(devcloud: Devcloud, src: Any) -> None:
    """seed.json describes src-tenant as it is: servers, states, volume bytes (sparse)."""
    seed = json.loads(devcloud.seed_json.read_text())
    servers = {s.name: s for s in src.compute.servers()}
    for name, rec in seed["servers"].items():
        assert servers[name].id == rec["id"]
        assert servers[name].status == rec["status"]
    assert seed["servers"]["vm-active"]["status"] == "ACTIVE"
    assert {r["status"] for n, r in seed["servers"].items() if n != "vm-active"} == {"SHUTOFF"}
    bfv_id = seed["servers"]["vm-bfv"]["id"]
    attached = {a.volume_id for a in src.compute.volume_attachments(bfv_id)}
    for rec in seed["volumes"].values():
        assert (rec["id"] in attached) == (rec["attached_to"] == "vm-bfv")
        path = Path(_volume_file(devcloud, rec["id"]))
        assert sha256_logical(path) == rec["sha256"]
        st = path.stat()
        assert st.st_size == rec["size_gb"] * GiB
        assert st.st_blocks * 512 < st.st_size // 10, "the seeded volume should be sparse"
    ports = {p.name: p for p in src.network.ports()}
    for name, rec in seed["ports"].items():
        assert ports[name].fixed_ips[0]["ip_address"] == rec["ip"]


def test_tenant_isolation(src: Any, dst: Any, cleanup: Cleanup) -> None:
    net = src.network.create_network(name=_name("net"))
    cleanup.add(lambda: src.network.delete_network(net, ignore_missing=True))
    vol = new_volume(src, cleanup)
    sg = src.network.create_security_group(name=_name("sg"))
    cleanup.add(lambda: src.network.delete_security_group(sg, ignore_missing=True))

    assert net.id not in {n.id for n in dst.network.networks()}
    assert sg.id not in {s.id for s in dst.network.security_groups()}
    assert vol.id not in {v.id for v in dst.block_storage.volumes()}
    with pytest.raises(exceptions.NotFoundException):
        dst.block_storage.get_volume(vol.id)
    with pytest.raises(exceptions.NotFoundException):
        dst.network.get_network(net.id)
    dst_servers = {s.id for s in dst.compute.servers()}
    assert not dst_servers & {s.id for s in src.compute.servers()}


# -- networking ---------------------------------------------------------------------------------


def test_network_resources(src: Any, cleanup: Cleanup) -> None:
    net = src.network
    n = net.create_network(name=_name("net"))
    cleanup.add(lambda: net.delete_network(n, ignore_missing=True))
    s4 = net.create_subnet(
        network_id=n.id,
        ip_version=4,
        cidr="10.77.0.0/24",
        name=_name("v4"),
        gateway_ip="10.77.0.1",
        allocation_pools=[{"start": "10.77.0.100", "end": "10.77.0.150"}],
        dns_nameservers=["10.77.0.2"],
        host_routes=[{"destination": "10.88.0.0/16", "nexthop": "10.77.0.254"}],
    )
    cleanup.add(lambda: net.delete_subnet(s4, ignore_missing=True))
    s6 = net.create_subnet(
        network_id=n.id,
        ip_version=6,
        cidr="2001:db8:77::/64",
        name=_name("v6"),
        ipv6_ra_mode="slaac",
        ipv6_address_mode="slaac",
    )
    cleanup.add(lambda: net.delete_subnet(s6, ignore_missing=True))
    assert net.get_subnet(s4.id).host_routes == [
        {"destination": "10.88.0.0/16", "nexthop": "10.77.0.254"}
    ]
    assert net.get_subnet(s6.id).ipv6_ra_mode == "slaac"

    public = net.find_network("public")
    router = net.create_router(
        name=_name("router"), external_gateway_info={"network_id": public.id}
    )
    cleanup.add(lambda: net.delete_router(router, ignore_missing=True))
    net.add_interface_to_router(router, subnet=s4.id)
    cleanup.add(lambda: net.remove_interface_from_router(router, subnet=s4.id))
    router = net.get_router(router.id)
    assert router.external_gateway_info["network_id"] == public.id
    assert router.external_gateway_info["external_fixed_ips"]
    rports = list(net.ports(device_id=router.id, device_owner="network:router_interface"))
    assert [p.fixed_ips[0]["ip_address"] for p in rports] == ["10.77.0.1"]

    web = net.create_security_group(name=_name("web"))
    cleanup.add(lambda: net.delete_security_group(web, ignore_missing=True))
    db = net.create_security_group(name=_name("db"))
    cleanup.add(lambda: net.delete_security_group(db, ignore_missing=True))
    r1 = net.create_security_group_rule(
        security_group_id=web.id,
        direction="ingress",
        ethertype="IPv4",
        protocol="tcp",
        port_range_min=443,
        port_range_max=443,
        remote_ip_prefix="0.0.0.0/0",
    )
    r2 = net.create_security_group_rule(
        security_group_id=db.id,
        direction="ingress",
        ethertype="IPv4",
        protocol="tcp",
        port_range_min=5432,
        port_range_max=5432,
        remote_group_id=web.id,
    )
    assert net.get_security_group_rule(r2.id).remote_group_id == web.id
    net.delete_security_group_rule(r1)

    port = net.create_port(
        network_id=n.id,
        name=_name("port"),
        fixed_ips=[{"subnet_id": s4.id, "ip_address": "10.77.0.120"}],
        security_group_ids=[web.id, db.id],
    )
    cleanup.add(lambda: net.delete_port(port, ignore_missing=True))
    assert {ip["ip_address"] for ip in port.fixed_ips if ip["subnet_id"] == s4.id} == {
        "10.77.0.120"
    }


def test_keypair(src: Any, dst: Any, cleanup: Cleanup, devcloud: Devcloud) -> None:
    pub = Path(devcloud.source_host.key_file + ".pub").read_text().strip()
    name = _name("key")
    kp = src.compute.create_keypair(name=name, public_key=pub)
    cleanup.add(lambda: src.compute.delete_keypair(kp, ignore_missing=True))
    assert src.compute.get_keypair(name).public_key == pub
    assert name not in {k.name for k in dst.compute.keypairs()}
    src.compute.delete_keypair(kp)
    assert name not in {k.name for k in src.compute.keypairs()}


# -- conversion hosts over SSH --------------------------------------------------------------------


def test_ssh_with_host_key_verification(devcloud: Devcloud, tmp_path: Path) -> None:
    for host in (devcloud.source_host, devcloud.destination_host):
        res = ssh(host, tmp_path, f"test -d {host.device_dir} && echo ok-$(id -un)")
        assert res.returncode == 0, res.stderr.decode()
        assert res.stdout.decode().strip() == "ok-root"
    # The other host's key must be refused: strict checking is real.
    res = ssh(
        devcloud.source_host,
        tmp_path,
        "true",
        known_hosts_line=f"[127.0.0.1]:{devcloud.source_host.port} "
        f"{devcloud.destination_host.host_key}",
    )
    assert res.returncode != 0
    assert b"HOST IDENTIFICATION HAS CHANGED" in res.stderr or b"verification" in res.stderr


# -- volumes with real bytes ------------------------------------------------------------------


def test_volume_bytes_snapshot_clone_upload(
    src: Any, devcloud: Devcloud, tmp_path: Path, cleanup: Cleanup
) -> None:
    host = devcloud.source_host
    vol = new_volume(src, cleanup, size=1)
    attach(src, host.server_id, vol, cleanup)
    dev = by_id(host, vol.id)
    wait_path(dev)

    # Write through the conversion host's by-id path, over SSH, at two offsets.
    a, b = pattern("a", 3 * MiB), pattern("b", 1 * MiB)
    for data, seek_mib in ((a, 5), (b, 700)):
        res = ssh(
            host,
            tmp_path,
            f"dd of={dev} bs=1M seek={seek_mib} conv=notrunc,fsync status=none",
            stdin=data,
        )
        assert res.returncode == 0, res.stderr.decode()
    res = ssh(host, tmp_path, f"sha256sum {dev}")
    assert res.returncode == 0, res.stderr.decode()
    expected = res.stdout.split()[0].decode()
    writes = {5 * MiB: a, 700 * MiB: b}
    assert digest_of(GiB, writes) == expected

    # Snapshot (of the in-use volume), volume from snapshot, and a clone.
    snap = src.block_storage.create_snapshot(volume_id=vol.id, name=_name("snap"), force=True)
    cleanup.add(
        lambda: (
            src.block_storage.delete_snapshot(snap, ignore_missing=True),
            src.block_storage.wait_for_delete(snap, wait=120),
        )
    )
    snap = src.block_storage.wait_for_status(
        snap, "available", failures=["error"], interval=1, wait=120
    )
    from_snap = new_volume(src, cleanup, size=1, snapshot_id=snap.id)
    detach(src, host.server_id, vol)
    wait_path(dev, exists=False)
    clone = new_volume(src, cleanup, size=2, source_volume_id=vol.id)
    assert clone.size == 2

    # Read both back through the conversion host.
    for v, size in ((from_snap, GiB), (clone, 2 * GiB)):
        attach(src, host.server_id, v, cleanup)
        p = by_id(host, v.id)
        wait_path(p)
        res = ssh(host, tmp_path, f"head -c {size} {p} | sha256sum")
        want = digest_of(size, writes)  # a grown clone reads zeros past the source
        assert res.stdout.split()[0].decode() == want, f"volume {v.id}"
        detach(src, host.server_id, v)
    assert os.stat(_volume_file(devcloud, clone.id)).st_size == 2 * GiB

    # Upload to image, then volume from that image: the bytes survive both hops.
    resp = src.block_storage.upload_volume_to_image(
        from_snap, _name("img"), force=True, disk_format="raw", container_format="bare"
    )
    image_id = resp["image_id"]
    cleanup.add(lambda: delete_image(src, image_id))
    wait_volume(src, from_snap)
    image = wait_image_active(src, image_id)
    digest, size = image_sha256(src, image)
    assert (digest, size) == (expected, GiB)
    from_image = new_volume(src, cleanup, size=1, image_id=image.id)
    assert sha256_logical(Path(_volume_file(devcloud, from_image.id))) == expected

    # Extend keeps the data and grows the file.
    src.block_storage.extend_volume(from_image, 2)
    wait_volume(src, from_image)
    assert src.block_storage.get_volume(from_image).size == 2
    assert os.stat(_volume_file(devcloud, from_image.id)).st_size == 2 * GiB


def _volume_file(devcloud: Devcloud, volume_id: str) -> str:
    return str(devcloud.state / "volumes" / f"volume-{volume_id}")


def digest_of(size: int, writes: dict[int, bytes]) -> str:
    """sha256 of `size` zero bytes overlaid with `writes` (offset -> data), streamed."""
    h = hashlib.sha256()
    pos = 0
    for off in sorted(writes):
        while pos < off:
            n = min(8 * MiB, off - pos)
            h.update(bytes(n))
            pos += n
        h.update(writes[off])
        pos += len(writes[off])
    while pos < size:
        n = min(8 * MiB, size - pos)
        h.update(bytes(n))
        pos += n
    return h.hexdigest()


# -- servers ----------------------------------------------------------------------------------


def test_server_image_snapshot_has_root_disk_bytes(
    src: Any, devcloud: Devcloud, cleanup: Cleanup
) -> None:
    base = src.image.find_image("cirros-like")
    base_digest, base_size = image_sha256(src, base)
    server = boot(src, cleanup, image_id=base.id, networks="none")
    image = src.compute.create_server_image(server, name=_name("snapimg"), wait=False)
    image_id = image.id if hasattr(image, "id") else image
    cleanup.add(lambda: delete_image(src, image_id))
    image = wait_image_active(src, image_id)
    assert image_sha256(src, image) == (base_digest, base_size)

    # The tenantshift path: server image -> volume from image -> same bytes, then zeros.
    vol = new_volume(src, cleanup, size=1, image_id=image.id)
    with open(_volume_file(devcloud, vol.id), "rb") as f:
        head = f.read(base_size)
        assert hashlib.sha256(head).hexdigest() == base_digest
        rest = f.read(4 * MiB)
        assert rest == b"\0" * len(rest)


def test_boot_from_volume_with_attachments(src: Any, devcloud: Devcloud, cleanup: Cleanup) -> None:
    image = src.image.find_image("cirros-like")
    root = new_volume(src, cleanup, size=1, image_id=image.id)
    data1 = new_volume(src, cleanup, size=1)
    data2 = new_volume(src, cleanup, size=2)
    net = src.network.create_network(name=_name("net"))
    cleanup.add(lambda: src.network.delete_network(net, ignore_missing=True))
    sub = src.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.66.0.0/24")
    cleanup.add(lambda: src.network.delete_subnet(sub, ignore_missing=True))
    port = src.network.create_port(
        network_id=net.id, fixed_ips=[{"subnet_id": sub.id, "ip_address": "10.66.0.42"}]
    )
    cleanup.add(lambda: src.network.delete_port(port, ignore_missing=True))

    bdm = [
        {
            "boot_index": 0,
            "uuid": root.id,
            "source_type": "volume",
            "destination_type": "volume",
            "delete_on_termination": False,
        }
    ]
    bdm += [
        {
            "boot_index": -1,
            "uuid": v.id,
            "source_type": "volume",
            "destination_type": "volume",
            "delete_on_termination": False,
        }
        for v in (data1, data2)
    ]
    server = boot(
        src, cleanup, block_device_mapping=bdm, networks=[{"port": port.id}], flavor="m1.small"
    )
    dev_dir = devcloud.state / "hosts" / server.id / "by-id"
    for v in (root, data1, data2):
        assert (dev_dir / f"virtio-{v.id[:20]}").resolve() == Path(
            _volume_file(devcloud, v.id)
        ).resolve()
    addrs = [a["addr"] for net_addrs in server.addresses.values() for a in net_addrs]
    assert addrs == ["10.66.0.42"]
    assert {a.volume_id for a in src.compute.volume_attachments(server)} == {
        root.id,
        data1.id,
        data2.id,
    }

    src.compute.stop_server(server)
    src.compute.wait_for_server(server, status="SHUTOFF", wait=120, interval=1)
    src.compute.start_server(server)
    src.compute.wait_for_server(server, status="ACTIVE", wait=120, interval=1)

    extra = new_volume(src, cleanup, size=1)
    attach(src, server.id, extra)
    wait_path(dev_dir / f"virtio-{extra.id[:20]}")
    detach(src, server.id, extra)
    wait_path(dev_dir / f"virtio-{extra.id[:20]}", exists=False)

    # Volume-backed server image: a snapshot-backed image, as Nova makes it.
    image = src.compute.create_server_image(server, name=_name("bfvimg"), wait=False)
    image_id = image.id if hasattr(image, "id") else image
    cleanup.add(lambda: delete_image(src, image_id))
    img = wait_image_active(src, image_id)
    assert img.properties.get("block_device_mapping") or img.block_device_mapping
    # Nova snapshotted every attached volume for it; those go before the volumes do.
    cleanup.add(lambda: _delete_snapshots_of(src, {root.id, data1.id, data2.id}))
    assert any(snap.volume_id == root.id for snap in src.block_storage.snapshots())

    _delete_server(src, server)
    for v in (root, data1, data2):
        assert wait_volume(src, v).status == "available"
