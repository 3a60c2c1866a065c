"""OpenStack providers on the devcloud's clouds, as the integration tests make them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tenantshift.manifest.schema import CloudRef
from tenantshift.providers.openstack import OpenStackProvider, RetryPolicy


def devcloud_clouds(request: pytest.FixtureRequest) -> Path:
    """The clouds.yaml of the session ``devcloud`` fixture (started if not running)."""
    return Path(request.getfixturevalue("devcloud").clouds_yaml)


def make_provider(clouds: Path, cloud: str, **kwargs: Any) -> OpenStackProvider:
    kwargs.setdefault("retry", RetryPolicy(attempts=4, base_delay=0.2, budget=20))
    return OpenStackProvider.from_cloud_ref(
        CloudRef(cloud=cloud), config_files=[str(clouds)], **kwargs
    )
