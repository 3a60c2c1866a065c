"""`up` and `down`: install, configure, initialise databases, start, bootstrap, stop."""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import configs, install
from .layout import (
    ADMIN_PASSWORD,
    DEVCLOUD_DIR,
    EXT_DIR,
    HOST,
    MAX_PAIRS,
    REGION,
    TENANTS,
    State,
    conversion_pairs,
    keystone_url,
    sshd_keys,
)
from .proc import group_pids, pss_kib, run, running_pid, start, stop_many, wait_for
from .services import Service, all_services

log = install.log


def up(state: State) -> None:
    t0 = time.monotonic()
    state.ensure()
    install.ensure_apt(state)
    install.ensure_venv(state)
    install.ensure_ext(state)
    install.ensure_ssh_keys(state)
    configs.write_all(state)
    write_clouds_yaml(state)
    svcs = {s.name: s for s in all_services(state)}
    started_compute = running_pid(state, "nova-compute") is None

    _init_mariadb(state)
    _start(state, svcs["mariadb"], timeout=60)
    run(["mariadb", f"--defaults-file={state.etc / 'my.cnf'}", "-u", "root"],
        input=configs.db_bootstrap_sql(), log=state.log("install"))
    for name in ("epmd", "rabbitmq"):
        start(state, name, svcs[name].argv, svcs[name].env)
    _db_sync(state)
    _start(state, svcs["keystone"], timeout=120)
    _venv_py(state, "bootstrap", "identity")
    _start(state, svcs["rabbitmq"], timeout=120)
    # sshd's privilege-separation directory is compiled in; Debian creates it only at boot.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    # Pairs beyond DEVCLOUD_CONVERSION_PAIRS (an earlier `up` asked for more) stop here;
    # `cloud` below deletes their servers.
    surplus = [f"sshd-{k}" for k in sshd_keys(MAX_PAIRS)[2 * conversion_pairs():]]
    for name in stop_many(state, surplus):
        log(f"stopped {name} (beyond DEVCLOUD_CONVERSION_PAIRS)")
    rest = [s for s in svcs.values() if s.group >= 2]
    for s in rest:
        start(state, s.name, s.argv, s.env)
    for s in rest:
        _start(state, s, timeout=240)
    _venv_py(state, "bootstrap", "wait", str(state.bin / "nova-manage"),
             str(state.etc / "nova" / "nova.conf"))
    if started_compute:
        # Fake servers live in nova-compute; ours persists them, and `cloud` below recreates
        # a conversion host that is gone anyway (ERROR, deleted, or lost its power state).
        log("nova-compute was (re)started: checking the conversion hosts")
    _venv_py(state, "bootstrap", "cloud")
    log(f"up: all services running ({time.monotonic() - t0:.0f}s). "
        f"Run `eval $({DEVCLOUD_DIR / 'devcloud'} env)` or see "
        f"{state.clouds_yaml}")


def down(state: State, only: list[str] | None = None) -> None:
    known = {s.name for s in all_services(state)}
    unknown = set(only or []) - known
    if unknown:
        raise RuntimeError(f"unknown service(s) {sorted(unknown)}; known: {sorted(known)}")
    # OpenStack services and sshd together, then what they depended on (messaging, DB).
    infra = {"mariadb", "epmd", "rabbitmq"}
    names = [s.name for s in reversed(all_services(state)) if not only or s.name in only]
    if not only:  # every pair's sshd, whatever DEVCLOUD_CONVERSION_PAIRS says now
        names += [f"sshd-{k}" for k in sshd_keys(MAX_PAIRS) if f"sshd-{k}" not in names]
    for phase in ([n for n in names if n not in infra], [n for n in names if n in infra]):
        for name in stop_many(state, phase):
            log(f"stopped {name}")
    if not only:  # DEVCLOUD_LOOP_DEVICES: loop devices are global, release ours
        released = _release_loops(state)
        if released:
            log(f"released {released} loop devices")


def _release_loops(state: State) -> int:
    import sys

    sys.path.insert(0, str(EXT_DIR))
    from devcloud_ext import loopdev  # stdlib only

    return loopdev.release_all(str(state.root))


def _start(state: State, svc: Service, timeout: float) -> None:
    start(state, svc.name, svc.argv, svc.env)
    wait_for(f"{svc.name} on port {svc.port}", svc.healthy, timeout, state, svc.name)


def _venv_py(state: State, module: str, *args: str) -> None:
    """Run devcloud_ext.<module> in the venv, streaming its output (it logs progress)."""
    env = {**os.environ, **install.venv_python_env(state)}
    cmd = [str(state.bin / "python"), "-m", f"devcloud_ext.{module}", *args]
    res = subprocess.run(cmd, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed (rc={res.returncode})")


def _init_mariadb(state: State) -> None:
    if (state.mysql_data / "mysql").is_dir():
        return
    log("initialising MariaDB data directory")
    state.mysql_data.mkdir(parents=True, exist_ok=True)
    run(["mariadb-install-db", f"--defaults-file={state.etc / 'my.cnf'}",
         "--auth-root-authentication-method=socket", "--skip-test-db"],
        log=state.log("mariadb"))


def _db_sync(state: State) -> None:
    """Create every schema once (marker file); the chains run in parallel on 2 cores."""
    marker = state.markers / "db-synced"
    if marker.exists():
        return
    b, etc = state.bin, state.etc
    kc = ["--config-file", str(etc / "keystone" / "keystone.conf")]
    nc = ["--config-file", str(etc / "nova" / "nova.conf")]
    chains: dict[str, list[list[str]]] = {
        "keystone": [
            [str(b / "keystone-manage"), *kc, "db_sync"],
            [str(b / "keystone-manage"), *kc, "fernet_setup", "--keystone-user", "root",
             "--keystone-group", "root"],
            [str(b / "keystone-manage"), *kc, "credential_setup", "--keystone-user", "root",
             "--keystone-group", "root"],
            [str(b / "keystone-manage"), *kc, "bootstrap", "--bootstrap-password",
             ADMIN_PASSWORD, "--bootstrap-region-id", REGION,
             "--bootstrap-admin-url", f"{keystone_url()}/v3",
             "--bootstrap-internal-url", f"{keystone_url()}/v3",
             "--bootstrap-public-url", f"{keystone_url()}/v3"],
        ],
        "neutron": [[str(b / "neutron-db-manage"), "--config-file",
                     str(etc / "neutron" / "neutron.conf"), "upgrade", "heads"]],
        "nova": [
            [str(b / "nova-manage"), *nc, "api_db", "sync"],
            [str(b / "nova-manage"), *nc, "cell_v2", "map_cell0"],
            [str(b / "nova-manage"), *nc, "cell_v2", "create_cell", "--name", "cell1"],
            [str(b / "nova-manage"), *nc, "db", "sync"],
        ],
        "cinder": [[str(b / "cinder-manage"), "--config-file",
                    str(etc / "cinder" / "cinder.conf"), "db", "sync"]],
        "glance": [[str(b / "glance-manage"), "--config-file",
                    str(etc / "glance" / "glance-api.conf"), "db_sync"]],
        "placement": [[str(b / "placement-manage"), "--config-file",
                       str(etc / "placement" / "placement.conf"), "db", "sync"]],
    }

    def run_chain(name: str) -> None:
        for argv in chains[name]:
            # create_cell answers 2 when cell1 already exists (a re-run after a failure)
            res = run(argv, log=state.log(f"dbsync-{name}"), check=False,
                      env=install.venv_python_env(state))
            if res.returncode != 0 and not (argv[-3:-1] == ["--name", "cell1"]
                                            and res.returncode == 2):
                raise RuntimeError(f"{' '.join(argv)} failed; see "
                                   f"{state.log('dbsync-' + name)}")

    log("creating database schemas (first run only)")
    t = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        # neutron's migrations are the longest: start them first
        order = ["neutron", "nova", "keystone", "cinder", "glance", "placement"]
        for f in [pool.submit(run_chain, n) for n in order]:
            f.result()
    marker.write_text("ok\n")
    log(f"database schemas ready ({time.monotonic() - t:.0f}s)")


def write_clouds_yaml(state: State) -> None:
    def entry(name: str, user: str, password: str, project: str) -> str:
        return (f"  {name}:\n"
                f"    auth:\n"
                f"      auth_url: {keystone_url()}/v3\n"
                f"      username: {user}\n"
                f"      password: {password}\n"
                f"      project_name: {project}\n"
                f"      user_domain_name: Default\n"
                f"      project_domain_name: Default\n"
                f"    region_name: {REGION}\n"
                f"    interface: public\n"
                f"    identity_api_version: 3\n")

    text = "# written by `devcloud up`\nclouds:\n" + entry(
        "devcloud-admin", "admin", ADMIN_PASSWORD, "admin")
    for key, t in TENANTS.items():
        text += entry(f"devcloud-{key}", t["user"], t["password"], t["project"])
    state.clouds_yaml.write_text(text)


def status(state: State) -> bool:
    """Print one line per service; True when every one is running and answering."""
    ok = True
    total_kib = 0
    print(f"{'service':18} {'pid':>8}  {'port':>6}  {'PSS MiB':>8}  health")
    for s in all_services(state):
        pid = running_pid(state, s.name)
        healthy = pid is not None and s.healthy()
        ok &= healthy
        kib = pss_kib(group_pids(pid)) if pid else 0
        total_kib += kib
        port = str(s.port) if s.port else "-"
        print(f"{s.name:18} {pid or '-':>8}  {port:>6}  {kib / 1024:8.0f}  "
              f"{'healthy' if healthy else ('running' if pid else 'stopped')}")
    print(f"{'total':18} {'':>8}  {'':>6}  {total_kib / 1024:8.0f}")
    print(f"\nstate: {state.root}   logs: {state.logs}   address: {HOST}")
    return ok
