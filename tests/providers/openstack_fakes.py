"""Fake openstacksdk connections and resources for the provider and handler tests."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import requests
from openstack import exceptions as sdk_exc
from openstack.network.v2 import port
from openstack.test.fakes import generate_fake_resource

from tenantshift.providers.openstack import OpenStackProvider, RetryPolicy


def http_error(status: int, message: str) -> Exception:
    response = requests.Response()
    response.status_code = status
    response.headers["content-type"] = "application/json"
    response._content = json.dumps({"NeutronError": {"message": message}}).encode()
    try:
        sdk_exc.raise_from_response(response)
    except sdk_exc.SDKException as exc:
        return exc
    raise AssertionError


def fake_conn() -> mock.MagicMock:
    conn = mock.MagicMock()
    conn.session.session.hooks = {"response": []}
    conn.current_project_id = "p1"
    # tag-creation is POST .../{id}/tags; only ports take tags in their own POST (ML2's
    # tag-ports-during-bulk-creation), as Neutron 29's API definitions say.
    conn.network.extensions.return_value = [
        mock.Mock(alias="tag-creation"),
        mock.Mock(alias="tag-ports-during-bulk-creation"),
    ]
    conn.network.networks.return_value = []
    conn.image.request.return_value = json_response({"images": []})
    return conn


def json_response(body: Any, status: int = 200) -> requests.Response:
    """What Glance answers (the image handler reads Glance's JSON documents)."""
    response = requests.Response()
    response.status_code = status
    response.headers["content-type"] = "application/json"
    response._content = json.dumps(body).encode()
    return response


def provider(conn: mock.MagicMock) -> OpenStackProvider:
    return OpenStackProvider(
        conn, label="fake", retry=RetryPolicy(attempts=3, base_delay=0, sleep=lambda _s: None)
    )


MAC = "fa:16:3e:00:00:01"


def fake_port(**attrs: Any) -> Any:
    base: dict[str, Any] = {
        "id": "p1",
        "network_id": "n1",
        "name": "",
        "description": None,
        "device_owner": "compute:nova",
        "device_id": "srv-1",
        "mac_address": MAC,
        "fixed_ips": [
            {"subnet_id": "s2", "ip_address": "10.20.0.60"},
            {"subnet_id": "s1", "ip_address": "10.10.0.60"},
        ],
        "security_group_ids": ["g2", "g1"],
        "allowed_address_pairs": [
            {"ip_address": "10.10.0.200", "mac_address": MAC},
            {"ip_address": "10.10.0.100", "mac_address": "fa:16:3e:99:99:99"},
        ],
        "is_port_security_enabled": True,
        "is_admin_state_up": True,
        "tags": ["tenantshift-src:src-p1"],
    }
    return generate_fake_resource(port.Port, **{**base, **attrs})
