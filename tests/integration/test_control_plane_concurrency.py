"""Real concurrency through the engine, against the devcloud's Neutron behind a latency proxy.

An apply at parallelism P must keep P calls in flight (the walker's semaphore, the apply's
thread pool) on pooled connections (the SDK session keeps P per host, where requests keeps
10 and opens, then discards, one more per call beyond them). The proxy holds every request
for a WAN-like round trip, so the overlap shows as the peak number of requests in flight.
``benchmarks/control_plane.py`` measures the same at scale.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tenantshift.engine.apply import apply_plan
from tenantshift.engine.planning import make_plan
from tenantshift.manifest import Manifest
from tenantshift.manifest.schema import CloudRef
from tenantshift.plans import Action
from tenantshift.providers import ProviderError
from tenantshift.providers.memory import MemoryProvider
from tenantshift.providers.openstack import OpenStackProvider
from tests.integration.faultproxy import FaultProxy
from tests.integration.providers import devcloud_clouds, make_provider

pytestmark = pytest.mark.devcloud

PARALLELISM = 24
NETWORKS = 2 * PARALLELISM
LATENCY = 0.25


@pytest.fixture(scope="module")
def clouds(request: pytest.FixtureRequest) -> Path:
    return devcloud_clouds(request)


def test_an_apply_keeps_parallelism_calls_in_flight_on_pooled_connections(
    clouds: Path, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    source = MemoryProvider("source")
    for i in range(NETWORKS):
        source.create("network", {"name": f"ts-cc-{run}-{i:02d}"}, None)
    manifest = Manifest.model_validate(
        {
            "version": 1,
            "source": {"cloud": "src"},
            "destination": {"cloud": "devcloud-dst"},
            # Only this test's networks: the tenant's default group is left alone.
            "select": {
                "network": {"include": [f"ts-cc-{run}-.*"]},
                "security_group": {"include": ["nothing-here"]},
            },
        }
    )
    clean = make_provider(clouds, "devcloud-dst")
    endpoint = urlsplit(clean.conn.network.get_endpoint())
    try:
        with FaultProxy(f"http://{endpoint.netloc}", latency=LATENCY) as proxy:
            destination = OpenStackProvider.from_cloud_ref(
                CloudRef(cloud="devcloud-dst"),
                config_files=[str(clouds)],
                label="dst-via-latency",
                overrides={"network_endpoint_override": proxy.url + endpoint.path},
                concurrency=PARALLELISM + 2,
            )
            plan = make_plan(manifest, source, destination).plan
            creates = [c for c in plan.changes if c.action is Action.CREATE]
            assert len(creates) == NETWORKS, [c.address for c in plan.changes]
            proxy.peak, connections = 0, proxy.stats["connections"]
            result = apply_plan(plan, destination, tmp_path, parallelism=PARALLELISM)
            assert result.ok, [o.message for o in result.outcomes.values()]
            opened = proxy.stats["connections"] - connections
        # Each create is three calls (find by marker, find by name, POST): with NETWORKS = 2P
        # nodes the walk keeps P of them busy for most of its length.
        assert proxy.peak >= PARALLELISM - 2, f"peak {proxy.peak} calls in flight"
        # Pooled: one connection per concurrent call, not one per call beyond the tenth.
        assert opened <= PARALLELISM + 4, f"{opened} connections for {NETWORKS * 3} calls"
        after = clean.snapshot()
        names = sorted(
            r.params["name"] for r in after.of_kind("network") if r.key.startswith(f"ts-cc-{run}")
        )
        assert names == sorted(f"ts-cc-{run}-{i:02d}" for i in range(NETWORKS))
    finally:
        errors = []
        for res in clean.snapshot().of_kind("network"):
            if res.key.startswith(f"ts-cc-{run}"):
                try:
                    clean.delete("network", str(res.id))
                except ProviderError as exc:
                    errors.append(str(exc))
        assert not errors, errors
