"""The image handler over a fake Glance: what a Glance document becomes as a record, and which
requests (JSON patch, create body) the writes send. The proof with real bytes is
tests/integration/test_image_migration.py."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import requests

from tenantshift.engine.workloads.plan import check_workloads
from tenantshift.manifest import Manifest
from tenantshift.plans import Action, Change
from tenantshift.providers.memory import MemoryProvider
from tenantshift.providers.openstack import OpenStackProvider, RetryPolicy
from tenantshift.providers.openstack.kinds.image import ImageHandler, image_record
from tenantshift.resources import derive_desired, normalize

GLANCE_DOC = {
    "id": "i1", "name": "golden", "status": "active", "visibility": "shared",
    "protected": True, "os_hidden": False, "checksum": "c" * 32, "os_hash_algo": "sha512",
    "os_hash_value": "h" * 128, "owner": "p1", "size": 1024, "virtual_size": None,
    "min_ram": 64, "min_disk": 1, "created_at": "t0", "updated_at": "t1",
    "tags": ["b", "a"], "self": "/v2/images/i1", "file": "/v2/images/i1/file",
    "schema": "/v2/schemas/image", "disk_format": "qcow2", "container_format": "bare",
    "stores": "fs", "os_glance_importing_to_stores": "", "hw_disk_bus": "scsi",
    "os_distro": "cirros", "tenantshift-src": "m:src1", "tenantshift-migrated": "h" * 128,
}  # fmt: skip


def response(body: Any, status: int = 200) -> requests.Response:
    out = requests.Response()
    out.status_code = status
    out.headers["content-type"] = "application/json"
    out._content = json.dumps(body).encode() if body is not None else b""
    return out


def handler(glance: Any) -> tuple[ImageHandler, mock.MagicMock]:
    conn = mock.MagicMock()
    conn.session.session.hooks = {"response": []}
    conn.current_project_id = "p1"
    conn.image.request.side_effect = glance
    cloud = OpenStackProvider(
        conn, label="fake", retry=RetryPolicy(attempts=1, base_delay=0, sleep=lambda _s: None)
    )
    found = cloud.handlers["image"]
    assert isinstance(found, ImageHandler)
    return found, conn


def test_a_glance_document_splits_into_fields_user_properties_and_info() -> None:
    record = image_record(GLANCE_DOC, ["m:src1"])
    assert record["properties"] == {"hw_disk_bus": "scsi", "os_distro": "cirros"}
    assert record["tags"] == ["a", "b"] and record["hidden"] is False
    assert (record["protected"], record["min_ram"], record["min_disk"]) == (True, 64, 1)
    assert record["provenance"] == "m:src1" and record["migrated"] == "h" * 128
    assert record["temporary"] is False and record["os_hash_value"] == "h" * 128


def test_a_server_migrations_temporary_image_is_never_migrated() -> None:
    by_property = image_record({**GLANCE_DOC, "id": "t1", "tenantshift-temporary": "true"}, [])
    by_name = image_record({**GLANCE_DOC, "id": "t2", "name": "tenantshift-root-1234abcd-"
                                                            "0a1b2c3d"}, [])  # fmt: skip
    queued = image_record({**GLANCE_DOC, "id": "q1", "name": "empty", "status": "queued"}, [])
    mine = image_record({**GLANCE_DOC, "name": "tenantshift-notes"}, [])
    records = [by_property, by_name, queued, mine]
    desired = derive_desired(normalize("src", {"image": records}), None, None)
    assert list(desired.resources) == ["image.tenantshift-notes"]
    notes = "\n".join(desired.warnings)
    assert notes.count("a temporary server image") == 2
    assert "image.empty: not migrated on its own: the image is queued: only an active" in notes


def test_the_listing_is_the_projects_own_images_hidden_ones_too_following_next_links() -> None:
    pages = [
        response({"images": [GLANCE_DOC], "next": "/v2/images?limit=500&marker=i1&owner=p1"}),
        response({"images": [{**GLANCE_DOC, "id": "i2", "name": "other"}]}),
        response({"images": [{**GLANCE_DOC, "id": "i3", "os_hidden": True}]}),
    ]
    calls: list[tuple[str, str, dict[str, Any]]] = []

    def glance(url: str, method: str, **kw: Any) -> requests.Response:
        calls.append((method, url, kw.get("params") or {}))
        return pages.pop(0)

    images, _ = handler(glance)
    assert [d["id"] for d in images.list("p1")] == ["i1", "i2", "i3"]
    assert calls[0] == ("GET", "/images", {"limit": 500, "owner": "p1"})
    assert calls[1] == ("GET", "/images", {"limit": "500", "marker": "i1", "owner": "p1"})
    # Hidden images are listed only when asked for alone.
    assert calls[2] == ("GET", "/images", {"limit": 500, "owner": "p1", "os_hidden": "true"})


def test_create_sends_the_marker_and_the_properties_unprotected() -> None:
    sent: list[Any] = []

    def glance(url: str, method: str, **kw: Any) -> requests.Response:
        sent.append((method, url, kw.get("json")))
        return response({**GLANCE_DOC, "status": "queued", "tenantshift-migrated": None})

    images, _ = handler(glance)
    params = {
        "name": "golden", "disk_format": "qcow2", "container_format": "bare", "min_disk": 1,
        "min_ram": 64, "visibility": "shared", "protected": True, "hidden": False,
        "tags": ["a", "b"], "properties": {"hw_disk_bus": "scsi"},
    }  # fmt: skip
    record = images.create(params, "m:src1", lambda: None)
    method, url, body = sent[0]
    assert (method, url) == ("POST", "/images")
    assert body["tenantshift-src"] == "m:src1" and body["hw_disk_bus"] == "scsi"
    assert body["protected"] is False and body["os_hidden"] is False
    assert "properties" not in body and "hidden" not in body
    assert record["provenance"] == "m:src1"


def test_update_is_one_json_patch_that_also_removes_properties() -> None:
    sent: list[Any] = []

    def glance(url: str, method: str, **kw: Any) -> requests.Response:
        sent.append((method, kw.get("json"), kw.get("headers")))
        return response(GLANCE_DOC)

    images, _ = handler(glance)
    images.update("i1", {"min_ram": 128, "tags": ["c"], "properties": {"os_distro": "fedora",
                                                                        "new": "1"}})  # fmt: skip
    patches = [(ops, headers) for method, ops, headers in sent if method == "PATCH"]
    assert len(patches) == 1
    ops, headers = patches[0]
    assert headers["Content-Type"] == "application/openstack-images-v2.1-json-patch"
    assert ops == [
        {"op": "replace", "path": "/min_ram", "value": 128},
        {"op": "replace", "path": "/tags", "value": ["c"]},
        {"op": "add", "path": "/new", "value": "1"},
        {"op": "replace", "path": "/os_distro", "value": "fedora"},
        {"op": "remove", "path": "/hw_disk_bus"},
    ]


def test_an_image_migration_needs_no_conversion_host_but_image_capable_clouds() -> None:
    manifest = Manifest.model_validate(
        {"version": 1, "source": {"cloud": "a"}, "destination": {"cloud": "b"}}
    )
    change = Change(
        address="image.golden", kind="image", action=Action.MIGRATE, source_id="i1", after={}
    )
    volume = Change(
        address="volume.data", kind="volume", action=Action.MIGRATE, source_id="v1", after={}
    )
    source = normalize("src", {"image": [image_record(GLANCE_DOC, [])]})
    memory = MemoryProvider()
    memory.workloads = None  # a cloud that cannot move data (as a snapshot file)
    image, vol = check_workloads([change, volume], manifest, source, memory, memory)
    assert image.blocked and "cannot read or write image data" in str(image.detail)
    assert vol.blocked and "conversion_hosts" in str(vol.detail)
