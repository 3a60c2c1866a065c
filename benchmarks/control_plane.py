"""Benchmark the control plane: plan and apply of a large tenant through a WAN-like latency.

    export DEVCLOUD_STATE=... OS_CLIENT_CONFIG_FILE=$DEVCLOUD_STATE/clouds.yaml
    devcloud/devcloud up
    .venv/bin/python benchmarks/control_plane.py --sizes 500,2000 --parallelism 1,10,50

On the devcloud it makes projects of its own, ``bench-src`` and one destination per size and
parallelism, ``bench-dst-<N>-p<P>`` (each with a member user whose password is drawn anew
every run and never printed), seeds ``bench-src`` with about N resources (networks, a subnet
each, routers with an interface per subnet, half of them with a gateway, security groups with
rules, some remote-group, keypairs; a few duplicate names: the mix of
``tests/engine/large_topology.py``), in parallel and directly (no proxy). Then, for each
parallelism, through ``latency_proxy.py`` (every API request delayed ``--latency`` seconds,
every new connection ``--connect-latency``) measures:

- ``plan`` (snapshot both projects, diff) against the empty destination;
- ``apply`` of that plan at the given parallelism (the walk only; the plan was just made);
- a second ``plan``, which must show no changes, and a check that the destination holds exactly
  the source's names (no duplicates).

Each phase runs in a child process (so its peak RSS is its own) and prints wall time, API
requests by service, verb and route (counted by the proxy, Keystone included), the peak
number of requests in flight (the concurrency reached), and the ratio to parallelism 1.

``--memory-sizes 2000,20000`` also plans tenants of that size on the memory provider (no cloud,
no latency: the plan path's own cost) and prints wall time and peak RSS.

The projects are left as they are (``--clean`` empties them at the end); a re-run of the same
size keeps the seeded source and empties the destinations first.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from openstack.exceptions import NotFoundException

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.latency_proxy import (  # noqa: E402
    ProxyThread,
    Stats,
    catalog_upstreams,
    connection,
    proxied_clouds,
)
from tests.engine.large_topology import (  # noqa: E402
    NETS_PER_ROUTER,
    RULES_PER_GROUP,
    Mix,
    network_name,
    prefix,
)

SOURCE = "bench-src"


def destination_project(size: int, parallelism: int) -> str:
    """One destination per run: emptying one between runs would cost more than the runs."""
    return f"bench-dst-{size}-p{parallelism}"


NEUTRON_QUOTA = {
    "network": -1,
    "subnet": -1,
    "port": -1,
    "router": -1,
    "security_group": -1,
    "security_group_rule": -1,
}
SEED_WORKERS = 10  # the SDK session's default connection pool


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Meter:
    """Over one phase: the CPU seconds each devcloud service spent (its process group, from the
    pid files in ``<state>/run``: the servers' own work, queueing excluded, unlike the proxy's
    "servers busy") and the machine's 1-minute load average, sampled every 5 s."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.cpu: dict[str, float] = {}
        self.load: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.load.append(os.getloadavg()[0])
            if self._stop.wait(5.0):
                return

    def __enter__(self) -> Meter:
        self._before = service_cpu(self.state)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        after = service_cpu(self.state)
        self.cpu = {k: round(v - self._before.get(k, 0.0), 1) for k, v in after.items()}

    def figures(self) -> dict[str, Any]:
        load = self.load or [os.getloadavg()[0]]
        return {
            "cpu": dict(sorted(self.cpu.items(), key=lambda kv: -kv[1])),
            "load_min": min(load),
            "load_max": max(load),
            "load_mean": sum(load) / len(load),
        }


def service_cpu(state: Path) -> dict[str, float]:
    """CPU seconds (user + system, reaped children included) per devcloud service."""
    tick = os.sysconf("SC_CLK_TCK")
    groups: dict[int, str] = {}
    for pidfile in (state / "run").glob("*.pid"):
        try:
            groups[int(pidfile.read_text().split()[0])] = pidfile.stem
        except (OSError, ValueError, IndexError):
            continue
    out: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = groups.get(int(fields[2]))  # the process group: a service and its workers
        if name is not None:
            used = sum(int(f) for f in fields[11:15]) / tick
            out[name] = out.get(name, 0.0) + used
    return out


def write_requests(stats: Stats) -> int:
    return sum(n for (_, method, _), n in stats.requests.items() if method != "GET")


# -- the bench projects ---------------------------------------------------------------------------


def admin_connection(clouds_yaml: str) -> Any:
    return connection(clouds_yaml, "devcloud-admin")


def prepare_projects(clouds_yaml: str, bench_dir: Path, projects: list[str]) -> Path:
    """Projects, users (fresh passwords), unlimited Neutron quotas; a clouds.yaml (0600) with
    an entry per project, named after it. Returns its path."""
    admin = admin_connection(clouds_yaml)
    ident = admin.identity
    domain = ident.find_domain("default")
    member = ident.find_role("member")
    auth_url = str(admin.config.config["auth"]["auth_url"])
    entries: dict[str, Any] = {}
    for project_name in projects:
        project = ident.find_project(project_name, domain_id=domain.id) or ident.create_project(
            name=project_name, domain_id=domain.id, description="control-plane benchmark"
        )
        user_name = f"{project_name}-user"
        password = secrets.token_urlsafe(18)
        user = ident.find_user(user_name, domain_id=domain.id)
        if user is None:
            user = ident.create_user(
                name=user_name, password=password, domain_id=domain.id,
                default_project_id=project.id,
            )  # fmt: skip
        else:
            ident.update_user(user, password=password)
        ident.assign_project_role_to_user(project, user, member)
        admin.set_network_quotas(project.id, **NEUTRON_QUOTA)
        admin.set_compute_quotas(project.id, key_pairs=200)
        entries[project_name] = {
            "auth": {
                "auth_url": auth_url,
                "username": user_name,
                "password": password,
                "project_name": project_name,
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": "RegionOne",
            "identity_api_version": 3,
        }
        log(f"project {project_name}: ready")
    admin.close()
    # Keystone revokes the tokens issued in the second of a password change (its revocation
    # events have one-second resolution): a connection made at once can get a 401.
    time.sleep(1.1)
    path = bench_dir / "clouds.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump({"clouds": entries}, f)
    return path


def user_connection(clouds_yaml: Path, cloud: str) -> Any:
    return connection(str(clouds_yaml), cloud)


def parallel(
    fn: Callable[[Any], Any], items: Iterable[Any], workers: int = SEED_WORKERS
) -> list[Any]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def wipe(conn: Any) -> None:
    """Delete every resource of the project (keeps the ``default`` group)."""
    net = conn.network
    project = conn.current_project_id
    interfaces = [p for p in net.ports(project_id=project, device_owner="network:router_interface")]

    def detach(port: Any) -> None:
        # Gone with its router meanwhile, or a leg port a failed run never attached.
        with contextlib.suppress(NotFoundException):
            net.remove_interface_from_router(port.device_id, port_id=port.id)

    parallel(detach, interfaces)
    parallel(
        lambda r: net.delete_router(r, ignore_missing=True), list(net.routers(project_id=project))
    )
    leftovers = [
        p
        for p in net.ports(project_id=project)
        if not str(p.device_owner).startswith("network:dhcp")
    ]
    parallel(lambda p: net.delete_port(p, ignore_missing=True), leftovers)
    networks = [n for n in net.networks(project_id=project) if not n.is_router_external]
    parallel(lambda n: net.delete_network(n, ignore_missing=True), networks)
    groups = [g for g in net.security_groups(project_id=project) if g.name != "default"]
    parallel(lambda g: net.delete_security_group(g, ignore_missing=True), groups)
    parallel(
        lambda k: conn.compute.delete_keypair(k, ignore_missing=True),
        list(conn.compute.keypairs()),
    )


def public_key(seed: int) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(seed.to_bytes(32, "big"))
    raw = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return raw.decode()


def seed(conn: Any, mix: Mix) -> dict[str, int]:
    """The mix of ``tests/engine/large_topology.py`` on the cloud, in parallel."""
    net = conn.network
    public = net.find_network("public")

    def make_network(n: int) -> Any:
        network = net.create_network(name=network_name(n, mix))
        p = prefix(n)
        return net.create_subnet(
            network_id=network.id,
            name="sub",
            ip_version=4,
            cidr=f"{p}.0/24",
            gateway_ip=f"{p}.1",
            allocation_pools=[{"start": f"{p}.10", "end": f"{p}.200"}],
            dns_nameservers=["192.0.2.53"],
        )

    subnets = parallel(make_network, range(mix.networks))

    def make_router(r: int) -> Any:
        gateway = {"external_gateway_info": {"network_id": public.id}} if r % 2 == 0 else {}
        router = net.create_router(name=f"router-{r:04d}", **gateway)
        return router

    routers = parallel(make_router, range(mix.routers))

    def wire(r: int) -> None:
        for subnet in subnets[r * NETS_PER_ROUTER : (r + 1) * NETS_PER_ROUTER]:
            net.add_interface_to_router(routers[r], subnet_id=subnet.id)

    parallel(wire, range(mix.routers))

    def make_group(g: int) -> Any:
        name = f"sg-{(g - 1 if 0 < g <= 2 * mix.duplicates and g % 2 else g):05d}"
        return net.create_security_group(name=name, description=f"group {g}")

    groups = parallel(make_group, range(mix.groups))

    def rules(g: int) -> None:
        for r in range(RULES_PER_GROUP):
            params: dict[str, Any] = {
                "security_group_id": groups[g].id,
                "direction": "ingress",
                "protocol": "tcp",
            }
            if r == 0 and g > 0:
                params.update(
                    ether_type="IPv4", port_range_min=5432, port_range_max=5432,
                    remote_group_id=groups[g - 1].id,
                )  # fmt: skip
            else:
                params.update(
                    ether_type="IPv4" if r % 2 else "IPv6",
                    port_range_min=1000 + r,
                    port_range_max=1000 + r,
                    remote_ip_prefix="0.0.0.0/0" if r % 2 else "::/0",
                )
            net.create_security_group_rule(**params)

    parallel(rules, range(mix.groups))
    parallel(
        lambda k: conn.compute.create_keypair(name=f"key-{k:03d}", public_key=public_key(k + 1)),
        range(mix.keypairs),
    )
    return inventory(conn)


def inventory(conn: Any) -> dict[str, int]:
    """Resources per kind, counted the way the plan counts them."""
    net = conn.network
    project = conn.current_project_id
    groups = list(net.security_groups(project_id=project))
    return {
        "network": sum(1 for n in net.networks(project_id=project) if not n.is_router_external),
        "subnet": len(list(net.subnets(project_id=project))),
        "router": len(list(net.routers(project_id=project))),
        "router_interface": len(
            list(net.ports(project_id=project, device_owner="network:router_interface"))
        ),
        "security_group": len(groups),
        "security_group_rule": len(list(net.security_group_rules(project_id=project))),
        "keypair": len(list(conn.compute.keypairs())),
    }


def names(conn: Any) -> dict[str, Counter[str]]:
    """Name multisets per kind: two projects with the same are copies without duplicates."""
    net = conn.network
    project = conn.current_project_id
    nets = {n.id: n.name for n in net.networks(project_id=project)}
    groups = {g.id: g.name for g in net.security_groups(project_id=project)}
    return {
        "network": Counter(
            n.name for n in net.networks(project_id=project) if not n.is_router_external
        ),
        "subnet": Counter(
            f"{nets.get(s.network_id)}/{s.name}" for s in net.subnets(project_id=project)
        ),
        "router": Counter(r.name for r in net.routers(project_id=project)),
        "router_interface": Counter(
            "interface"
            for _ in net.ports(project_id=project, device_owner="network:router_interface")
        ),
        "security_group": Counter(groups.values()),
        "security_group_rule": Counter(
            f"{groups.get(r.security_group_id)}/{r.direction}/{r.ether_type}/{r.protocol}/"
            f"{r.port_range_min}/{r.remote_ip_prefix}/{groups.get(r.remote_group_id)}"
            for r in net.security_group_rules(project_id=project)
        ),
        "keypair": Counter(k.name for k in conn.compute.keypairs()),
    }


# -- the measured phases (each in a child process) ------------------------------------------------


def write_manifest(bench_dir: Path, destination: str, parallelism: int) -> Path:
    path = bench_dir / f"{destination}.yaml"
    manifest = {
        "version": 1,
        "source": {"cloud": SOURCE},
        "destination": {"cloud": destination},
        "map": {"external_networks": {"public": "public"}},
        "options": {"parallelism": parallelism, "state_dir": str(bench_dir / destination)},
    }
    path.write_text(yaml.safe_dump(manifest))
    return path


def child_plan(manifest_path: Path, out: Path) -> dict[str, Any]:
    from tenantshift.engine import commands
    from tenantshift.manifest import load_manifest
    from tenantshift.plans import Action
    from tenantshift.plans.planfile import save_plan

    manifest = load_manifest(manifest_path)
    start = time.perf_counter()
    result = commands.plan(manifest)
    wall = time.perf_counter() - start
    save_plan(result.plan, out)
    actions = Counter(c.action.value for c in result.plan.changes)
    return {
        "wall": wall,
        "resources": {
            "source": len(result.source.resources),
            "destination": len(result.destination.resources),
        },
        "snapshot_calls": {
            "source": result.source.api_calls,
            "destination": result.destination.api_calls,
        },
        "actions": dict(actions),
        "changes": sum(1 for c in result.plan.changes if c.action is not Action.NOOP),
        "blocked": sum(1 for c in result.plan.changes if c.blocked),
        "warnings": len(result.plan.warnings),
        "rss_mib": peak_rss_mib(),
    }


def child_apply(manifest_path: Path, plan_path: Path) -> dict[str, Any]:
    from tenantshift.engine.apply import apply_plan
    from tenantshift.engine.commands import identity_of, providers
    from tenantshift.engine.state.lock import ApplyLock
    from tenantshift.engine.walk.context import ApplySettings
    from tenantshift.engine.walk.walker import Status
    from tenantshift.manifest import load_manifest
    from tenantshift.plans.planfile import load_plan

    manifest = load_manifest(manifest_path)
    plan = load_plan(plan_path)
    source, destination = providers(manifest)
    # The parent has just planned (no one else writes to the destination): fresh, as ``apply``.
    settings = dataclasses.replace(ApplySettings.from_manifest(manifest), fresh_plan=True)
    with ApplyLock(manifest.state_dir, identity_of(destination)) as lock:
        start = time.perf_counter()
        result = apply_plan(
            plan, destination, manifest.state_dir, source=source, settings=settings, lock=lock
        )
        wall = time.perf_counter() - start
    failed = [
        f"{o.node.id}: {o.message}" for o in result.outcomes.values() if o.status is Status.FAILED
    ]
    return {
        "wall": wall,
        "nodes": len(result.outcomes),
        "done": result.count(Status.DONE),
        "failed": failed[:10],
        "rss_mib": peak_rss_mib(),
    }


def child_memory_plan(size: int) -> dict[str, Any]:
    from tenantshift.engine.planning import make_plan
    from tenantshift.manifest import Manifest
    from tenantshift.providers.memory import MemoryProvider
    from tests.engine.large_topology import build_large_source

    source, mix = build_large_source(size)
    manifest = Manifest.model_validate(
        {"version": 1, "source": {"cloud": "src"}, "destination": {"cloud": "dst"}}
    )
    start = time.perf_counter()
    first = make_plan(manifest, source, MemoryProvider("destination")).plan
    wall = time.perf_counter() - start
    return {
        "size": mix.total,
        "changes": len(first.changes),
        "wall": wall,
        "rss_mib": peak_rss_mib(),
    }


def run_child(args: list[str], env: dict[str, str], attempts: int = 1) -> dict[str, Any]:
    for attempt in range(1, attempts + 1):
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if proc.returncode == 0:
            out = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
            out["attempts"] = attempt
            return out
        log(f"child {args[0]} failed (attempt {attempt}): {proc.stderr.strip()[-600:]}")
    raise SystemExit(f"child {args[0]} failed {attempts} times")


# -- reporting ------------------------------------------------------------------------------------


def by_route(stats: Stats) -> dict[str, int]:
    return {
        f"{service} {method} {route}": n
        for (service, method, route), n in sorted(stats.requests.items(), key=lambda kv: -kv[1])
    }


def print_calls(title: str, stats: Stats, limit: int = 12) -> None:
    print(f"    {title}: {stats.total} requests, {stats.connections} connections, "
          f"peak {stats.peak} in flight, servers busy {stats.server_seconds:.0f} s")  # fmt: skip
    for name, n in list(by_route(stats).items())[:limit]:
        print(f"      {n:6d}  {name}")


def main_memory(sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    print("\n== plan path on the memory provider (no cloud, no latency) ==")
    print(f"  {'resources':>9}  {'plan s':>7}  {'peak RSS MiB':>12}")
    for size in sizes:
        row = run_child(["memory-plan", str(size)], dict(os.environ))
        rows.append(row)
        print(f"  {row['size']:>9}  {row['wall']:7.2f}  {row['rss_mib']:12.0f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="500,2000")
    parser.add_argument("--parallelism", default="1,10,50")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added per request")
    parser.add_argument(
        "--connect-latency", type=float, default=None,
        help="seconds added per new connection (default: --latency)",
    )  # fmt: skip
    parser.add_argument("--memory-sizes", default="", help="e.g. 2000,20000")
    parser.add_argument("--clean", action="store_true", help="empty both projects at the end")
    parser.add_argument(
        "--plan-only", action="store_true",
        help="per size, seed and plan through the proxy (the first parallelism's project); "
        "no apply",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, rest = args.child[0], args.child[1:]
        if kind == "plan":
            out = child_plan(Path(rest[0]), Path(rest[1]))
        elif kind == "apply":
            out = child_apply(Path(rest[0]), Path(rest[1]))
        elif kind == "memory-plan":
            out = child_memory_plan(int(rest[0]))
        else:
            raise SystemExit(f"unknown child {kind}")
        print(json.dumps(out))
        return

    results: dict[str, Any] = {"latency": args.latency, "runs": []}
    sizes = [int(s) for s in args.sizes.split(",") if s]
    levels = [int(p) for p in args.parallelism.split(",") if p]
    if sizes:
        results["runs"] = main_cloud(args, sizes, levels)
    if args.memory_sizes:
        results["memory"] = main_memory([int(s) for s in args.memory_sizes.split(",")])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


def main_cloud(
    args: argparse.Namespace, sizes: list[int], levels: list[int]
) -> list[dict[str, Any]]:
    clouds_yaml = os.environ.get("OS_CLIENT_CONFIG_FILE")
    if not clouds_yaml or not Path(clouds_yaml).exists():
        raise SystemExit("export OS_CLIENT_CONFIG_FILE=<devcloud state>/clouds.yaml first")
    state = Path(os.environ.get("DEVCLOUD_STATE") or Path(clouds_yaml).parent)
    bench_dir = state / "bench"
    bench_dir.mkdir(mode=0o700, exist_ok=True)
    targets = [destination_project(size, level) for size in sizes for level in levels]
    direct = prepare_projects(clouds_yaml, bench_dir, [SOURCE, *targets])
    src = user_connection(direct, SOURCE)
    upstreams = catalog_upstreams(clouds_yaml, "devcloud-admin")
    rows: list[dict[str, Any]] = []
    with ProxyThread(
        upstreams, latency=args.latency, connect_latency=args.connect_latency
    ) as proxy:
        proxied = bench_dir / "clouds-proxied.yaml"
        fd = os.open(proxied, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(proxied_clouds(yaml.safe_load(direct.read_text()), proxy.url_for), f)
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(proxied)}
        print(f"latency proxy: {args.latency * 1000:.0f} ms per request, "
              f"{proxy.proxy.connect_latency * 1000:.0f} ms per new connection, "
              f"in front of {len(upstreams)} endpoints")  # fmt: skip
        for size in sizes:
            mix = Mix.of(size)
            log(f"seeding bench-src with {mix.total} resources ({mix})")
            start = time.perf_counter()
            marker = bench_dir / "seeded.json"
            counts = inventory(src)
            if not marker.exists() or json.loads(marker.read_text()) != [size, counts]:
                wipe(src)
                counts = seed(src, mix)
                marker.write_text(json.dumps([size, counts]))
            seeded = time.perf_counter() - start
            source_names = names(src)
            print(f"\n== {size} resources: bench-src seeded in {seeded:.0f} s (direct): "
                  f"{counts} ==")  # fmt: skip
            serial: float | None = None
            for level in levels:
                target = destination_project(size, level)
                manifest = write_manifest(bench_dir, target, level)
                dst = user_connection(direct, target)
                wipe(dst)  # empty already, unless an earlier run of the benchmark filled it
                # Its journal goes with it: the nodes an earlier run began would make every
                # create look for its earlier copy first (three requests instead of one).
                shutil.rmtree(bench_dir / target, ignore_errors=True)
                plan_file = bench_dir / f"p{level}.plan"
                proxy.reset()
                # A plan only reads: on an overloaded devcloud a listing can time out; again.
                with Meter(state) as plan_meter:
                    plan = run_child(["plan", str(manifest), str(plan_file)], env, attempts=3)
                plan_calls = proxy.reset()
                if args.plan_only:
                    print(f"\n  plan only ({size}): {plan['wall']:.1f} s, "
                          f"{plan_calls.total} requests, {plan['actions']}, "
                          f"snapshot calls {plan['snapshot_calls']}, attempts {plan['attempts']}, "
                          f"RSS {plan['rss_mib']:.0f} MiB; {plan_meter.figures()}")  # fmt: skip
                    rows.append({"size": size, "resources": plan["resources"]["source"],
                                 "parallelism": level, "plan": plan,
                                 "plan_requests": plan_calls.total,
                                 "plan_meter": plan_meter.figures()})  # fmt: skip
                    if args.json:
                        args.json.write_text(json.dumps({"runs": rows}, indent=2, default=str))
                    break
                with Meter(state) as apply_meter:
                    apply = run_child(["apply", str(manifest), str(plan_file)], env)
                apply_calls = proxy.reset()
                again = run_child(
                    ["plan", str(manifest), str(bench_dir / "again.plan")], env, attempts=3
                )
                again_calls = proxy.reset()
                copied = names(dst)
                duplicates = {
                    kind: sorted((copied[kind] - source_names[kind]).elements())[:5]
                    for kind in source_names
                    if copied[kind] - source_names[kind]
                }
                missing = {
                    kind: sorted((source_names[kind] - copied[kind]).elements())[:5]
                    for kind in source_names
                    if source_names[kind] - copied[kind]
                }
                if level == 1 or serial is None:
                    serial = apply["wall"] if level == 1 else None
                row = {
                    "size": size,
                    "resources": plan["resources"]["source"],
                    "parallelism": level,
                    "plan": plan,
                    "plan_calls": by_route(plan_calls),
                    "plan_requests": plan_calls.total,
                    "apply": apply,
                    "apply_calls": by_route(apply_calls),
                    "apply_requests": apply_calls.total,
                    "apply_peak": apply_calls.peak,
                    "apply_connections": apply_calls.connections,
                    "apply_server_seconds": apply_calls.server_seconds,
                    "apply_writes": write_requests(apply_calls),
                    "apply_meter": apply_meter.figures(),
                    "plan_meter": plan_meter.figures(),
                    "second_plan": again,
                    "second_plan_requests": again_calls.total,
                    "duplicates": duplicates,
                    "missing": missing,
                    "speedup": (serial / apply["wall"]) if serial else None,
                }
                rows.append(row)
                if args.json:  # as it goes: a long run interrupted keeps what it measured
                    args.json.write_text(json.dumps({"runs": rows}, indent=2, default=str))
                print(f"\n  parallelism {level}:")
                print(
                    f"    plan   {plan['wall']:7.1f} s  {plan['actions']}  "
                    f"snapshot calls {plan['snapshot_calls']}  RSS {plan['rss_mib']:.0f} MiB"
                )
                print_calls("plan requests", plan_calls)
                speed = f"  x{row['speedup']:.1f} vs serial" if row["speedup"] else ""
                print(
                    f"    apply  {apply['wall']:7.1f} s  {apply['done']}/{apply['nodes']} nodes "
                    f"done{speed}  RSS {apply['rss_mib']:.0f} MiB"
                )
                if apply["failed"]:
                    print(f"    FAILED: {apply['failed']}")
                print_calls("apply requests", apply_calls)
                meter = apply_meter.figures()
                writes = max(1, row["apply_writes"])
                busiest = ", ".join(f"{k} {v:.0f} s" for k, v in list(meter["cpu"].items())[:5])
                print(f"    servers' CPU during apply: {busiest}; "
                      f"{sum(meter['cpu'].values()) / writes:.3f} s of CPU per write "
                      f"({row['apply_writes']} writes); load average "
                      f"{meter['load_min']:.1f}-{meter['load_max']:.1f}", flush=True)  # fmt: skip
                print(f"    second plan {again['wall']:6.1f} s: {again['changes']} changes "
                      f"({again_calls.total} requests); duplicates: {duplicates or 'none'}; "
                      f"missing: {missing or 'none'}", flush=True)  # fmt: skip
                assert not apply["failed"], apply["failed"]
                assert again["changes"] == 0, f"the second plan shows {again['changes']} changes"
                assert not duplicates, f"duplicates in the destination: {duplicates}"
                assert not missing, f"missing in the destination: {missing}"
        summary(rows)
    if args.clean:
        for target in targets:
            wipe(user_connection(direct, target))
        wipe(src)
    return rows


def summary(rows: list[dict[str, Any]]) -> None:
    print("\n== summary ==")
    print(f"  {'resources':>9} {'par':>4} {'plan s':>7} {'plan req':>8} {'apply s':>8} "
          f"{'apply req':>9} {'peak':>5} {'x serial':>8} {'2nd plan s':>10} "
          f"{'RSS plan':>8} {'RSS apply':>9}")  # fmt: skip
    for r in rows:
        if "apply" not in r:  # --plan-only: printed as it ran
            continue
        speed = f"{r['speedup']:.1f}" if r["speedup"] else "-"
        print(f"  {r['resources']:>9} {r['parallelism']:>4} {r['plan']['wall']:7.1f} "
              f"{r['plan_requests']:>8} {r['apply']['wall']:8.1f} {r['apply_requests']:>9} "
              f"{r['apply_peak']:>5} {speed:>8} {r['second_plan']['wall']:10.1f} "
              f"{r['plan']['rss_mib']:8.0f} {r['apply']['rss_mib']:9.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
