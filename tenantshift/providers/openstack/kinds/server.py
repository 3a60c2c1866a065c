"""Nova servers: read for the plan, created by their migration (not by ``create``), renamed and
re-tagged in place, provenance in their metadata.

A server's ``ports`` are its Neutron ports in creation order (the order its NICs were given),
taken from the port listing of the same snapshot rather than a call per server.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from tenantshift.providers.base import NotFoundError, ProviderError
from tenantshift.providers.openstack.kinds.base import (
    KindHandler,
    Listing,
    MetadataProvenance,
    Names,
    ProviderContext,
    Records,
    Recover,
    SdkObject,
    SdkObjects,
    Wait,
    poll,
    register_handler,
)
from tenantshift.providers.openstack.kinds.keypair import NOVA_LIMITS
from tenantshift.providers.openstack.kinds.volume import user_metadata
from tenantshift.providers.workload import MIGRATED_KEY, TEMPORARY_KEY
from tenantshift.resources import Record


def nic_order(server: SdkObject, ports: Sequence[Any]) -> list[str]:
    """The server's port ids in NIC order. Nova lists ``addresses`` in the order of the
    server's interfaces, with each one's MAC: ports sort by the first place their MAC appears
    there (then by creation time), on both clouds alike, with no call per server."""
    macs: list[str] = []
    for entries in (server.addresses or {}).values():
        for entry in entries:
            mac = entry.get("OS-EXT-IPS-MAC:mac_addr")
            if mac and mac not in macs:
                macs.append(mac)

    def place(port: Any) -> tuple[int, str, str]:
        mac = port.mac_address
        return (macs.index(mac) if mac in macs else len(macs), str(port.created_at), port.id)

    return [str(p.id) for p in sorted(ports, key=place)]


def _flavor_name(res: SdkObject) -> str | None:
    flavor = res.flavor or {}
    # Nova 2.47+ embeds the flavor: ``original_name``; older answers carry only its id.
    return flavor.get("original_name") or flavor.get("name") or flavor.get("id")


@register_handler
class ServerHandler(KindHandler):
    kind = "server"
    provenance_store = MetadataProvenance()
    quota_source = NOVA_LIMITS
    quota_attr = "instances"
    delete_wait = Wait(timeout=600.0)
    #: Stop, start, boot and server images of a workload migration.
    verb_wait = Wait(timeout=600.0, interval=1.0)

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        #: Conversion hosts' ids by the name the manifest gives (they do not change).
        self._ids: dict[str, str] = {}
        self._ids_lock = threading.Lock()

    def list(self, project_id: str) -> SdkObjects:
        return list(self.ctx.conn.compute.servers(details=True))

    def to_record(self, res: SdkObject, ports: Sequence[str] = ()) -> Record:
        assert self.provenance_store is not None
        metadata = dict(res.metadata or {})
        image = res.image or {}
        return {
            "id": res.id,
            "name": res.name,
            "flavor": _flavor_name(res),
            "availability_zone": res.availability_zone,
            "keypair": res.key_name,
            "ports": list(ports),
            "metadata": user_metadata(metadata),
            **self.provenance_store.fields(res),
            "migrated": metadata.get(MIGRATED_KEY),
            "status": res.status,
            "image_id": (image.get("id") if isinstance(image, dict) else None) or None,
            "volumes": [str(v.get("id")) for v in res.attached_volumes or []],
            # What the flavor costs in quota (Nova 2.47+ embeds it in the server).
            "vcpus": (res.flavor or {}).get("vcpus"),
            "ram": (res.flavor or {}).get("ram"),
            "root_gb": (res.flavor or {}).get("disk"),
            "created_at": res.created_at,
            "updated_at": res.updated_at,
        }

    def to_records(self, raw: Sequence[SdkObject], listing: Listing) -> Records:
        by_server: dict[str, list[Any]] = {}
        for port in listing.get("port", ()):
            by_server.setdefault(str(port.device_id), []).append(port)
        return [self.to_record(res, nic_order(res, by_server.get(str(res.id), []))) for res in raw]

    def externals(self) -> dict[str, Names]:
        compute = self.ctx.conn.compute
        flavors = self.ctx.call("compute.flavors", lambda: list(compute.flavors()))
        return {"flavor": sorted({str(f.name) for f in flavors})}

    def fetch(self, id: str) -> SdkObject:
        compute = self.ctx.conn.compute
        return self.ctx.call("compute.get_server", lambda: compute.get_server(id))

    def get(self, id: str) -> Record | None:
        try:
            res = self.fetch(id)
        except NotFoundError:
            return None
        network = self.ctx.conn.network
        ports = self.ctx.call("network.ports(device)", lambda: list(network.ports(device_id=id)))
        return self.to_record(res, nic_order(res, ports))

    def candidates(self, source_id: str | None, params: Mapping[str, Any]) -> Records:
        # By marker only: booting a same-named server is not adopting it.
        if source_id is None:
            return []
        listed = self.ctx.call("compute.servers", lambda: self.list(""))
        return [r for r in map(self.to_record, listed) if r["provenance"] == source_id]

    def create_call(self, attrs: dict[str, Any], recover: Recover) -> SdkObject | Record:
        raise ProviderError(
            f"{self.ctx.label}: a server is created by its migration, from its copied disks",
            call="create server",
        )

    def update_call(self, id: str, attrs: dict[str, Any]) -> SdkObject:
        compute = self.ctx.conn.compute
        res = self.fetch_or_missing(id, "update")
        if "name" in attrs:
            self.ctx.call(
                "compute.update_server", lambda: compute.update_server(res, name=attrs["name"])
            )
        if "metadata" in attrs:
            wanted = user_metadata(attrs["metadata"])
            have = user_metadata(res.metadata)
            if wanted != {k: have.get(k) for k in wanted}:
                self.write_metadata(res, wanted)
            gone = sorted(set(have) - set(wanted))
            if gone:
                self.delete_metadata(res, gone)
        return self.fetch(id)

    def delete_call(self, id: str) -> None:
        compute = self.ctx.conn.compute
        self.ctx.call(
            "compute.delete_server", lambda: compute.delete_server(id, ignore_missing=False)
        )

    def write_metadata(self, res: SdkObject, metadata: dict[str, str]) -> None:
        compute = self.ctx.conn.compute
        self.ctx.call(
            "compute.set_server_metadata", lambda: compute.set_server_metadata(res, **metadata)
        )

    def delete_metadata(self, res: SdkObject, keys: Names) -> None:
        compute = self.ctx.conn.compute
        self.ctx.call(
            "compute.delete_server_metadata", lambda: compute.delete_server_metadata(res, keys)
        )

    # -- workload verbs (``providers.workload.ServerVerbs``) --------------------------------
    def id_of(self, name_or_id: str) -> str:
        with self._ids_lock:
            known = self._ids.get(name_or_id)
        if known is not None:
            return known
        compute = self.ctx.conn.compute
        server = self.ctx.call(
            "compute.find_server", lambda: compute.find_server(name_or_id, ignore_missing=True)
        )
        if server is None:
            raise NotFoundError(
                f"{self.ctx.label}: no server {name_or_id!r} (a conversion host)",
                call="compute.find_server",
            )
        with self._ids_lock:
            self._ids[name_or_id] = str(server.id)
        return str(server.id)

    def status(self, name_or_id: str) -> str:
        return str(self.fetch(self.id_of(name_or_id)).status)

    def disks(self, server_id: str) -> dict[str, Any] | None:
        compute = self.ctx.conn.compute
        try:
            res = self.fetch(server_id)
        except NotFoundError:
            return None
        attachments = self.ctx.call(
            "compute.volume_attachments", lambda: list(compute.volume_attachments(server_id))
        )
        image = res.image or {}
        return {
            "id": str(res.id),
            "status": str(res.status),
            "image_id": (image.get("id") if isinstance(image, dict) else None) or None,
            "root_gb": int((res.flavor or {}).get("disk") or 1),
            "volumes": sorted(
                ({"volume_id": str(a.volume_id), "device": a.device} for a in attachments),
                key=lambda a: str(a["device"] or ""),
            ),
        }

    def stop(self, server_id: str) -> None:
        compute = self.ctx.conn.compute
        if self.fetch(server_id).status != "SHUTOFF":
            self.ctx.call("compute.stop_server", lambda: compute.stop_server(server_id))
        self._wait(server_id, "SHUTOFF")

    def start(self, server_id: str) -> None:
        compute = self.ctx.conn.compute
        if self.fetch(server_id).status != "ACTIVE":
            self.ctx.call("compute.start_server", lambda: compute.start_server(server_id))
        self._wait(server_id, "ACTIVE")

    def create_image(self, server_id: str, name: str) -> str:
        compute, image = self.ctx.conn.compute, self.ctx.conn.image
        made = self.ctx.call(
            "compute.create_server_image",
            # Marked temporary, so a plan taken meanwhile never migrates it as an image.
            lambda: compute.create_server_image(
                server_id, name, metadata={TEMPORARY_KEY: "true"}, wait=False
            ),
        )
        image_id = str(getattr(made, "id", made))
        poll(
            lambda: str(self.ctx.call("image.get_image", lambda: image.get_image(image_id)).status),
            "active",
            f"image {image_id}",
            self.verb_wait,
            self.ctx.label,
            frozenset({"killed", "deleted"}),
        )
        return image_id

    def find_marked(self, marker: str) -> str | None:
        found = self.candidates(marker, {})
        return str(found[0]["id"]) if found else None

    def boot(self, spec: dict[str, Any]) -> str:
        compute = self.ctx.conn.compute
        server = self.ctx.call("compute.create_server", lambda: compute.create_server(**spec))
        self._wait(str(server.id), "ACTIVE")
        return str(server.id)

    def set_metadata(self, server_id: str, metadata: dict[str, str]) -> None:
        compute = self.ctx.conn.compute
        self.ctx.call(
            "compute.set_server_metadata",
            lambda: compute.set_server_metadata(server_id, **metadata),
        )

    def flavor_id(self, name: str) -> str:
        compute = self.ctx.conn.compute
        flavor = self.ctx.call(
            "compute.find_flavor", lambda: compute.find_flavor(name, ignore_missing=True)
        )
        if flavor is None:
            raise NotFoundError(
                f"{self.ctx.label}: no flavor {name!r} (map it with map.flavors)",
                call="compute.find_flavor",
            )
        return str(flavor.id)

    def _wait(self, server_id: str, status: str) -> None:
        self.wait_for_status(self.fetch(server_id), status, wait=self.verb_wait)
