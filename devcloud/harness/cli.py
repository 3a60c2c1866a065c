"""Command line of `devcloud/devcloud` (system python3, standard library only)."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from typing import IO

from . import install, lifecycle
from .layout import State


def _venv_module(state: State, module: str, *args: str) -> int:
    """seed/reset use openstacksdk, so they run in the devcloud venv."""
    if not (state.bin / "python").exists():
        print("devcloud: not installed; run `devcloud up` first", file=sys.stderr)
        return 1
    env = {**os.environ, **install.venv_python_env(state)}
    return subprocess.run([str(state.bin / "python"), "-m", f"devcloud_ext.{module}", *args],
                          env=env).returncode


@contextlib.contextmanager
def _exclusive(state: State) -> Iterator[IO[str]]:
    """Serialise commands that change the devcloud: test sessions of several developers (each
    fixture runs `up`, maybe `seed`) may start at the same moment in one checkout."""
    state.run.mkdir(parents=True, exist_ok=True)
    with open(state.run / "devcloud.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("devcloud: waiting for another devcloud command to finish", file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield f


def cmd_env(state: State) -> int:
    exports = {
        "OS_CLIENT_CONFIG_FILE": str(state.clouds_yaml),
        "OS_CLOUD": "devcloud-src",
        "DEVCLOUD_STATE": str(state.root),
        "DEVCLOUD_CONVERSION_HOSTS": str(state.conversion_hosts),
    }
    for k, v in exports.items():
        print(f"export {k}={shlex.quote(v)}")
    print(f"# openstack CLI: {state.bin / 'openstack'} --os-cloud devcloud-src server list")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="devcloud", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, text in [
        ("up", "install if needed, start everything, bootstrap (idempotent)"),
        ("down", "stop every process devcloud started"),
        ("status", "each service, its port, healthy or not (exit 1 if any is not)"),
        ("seed", "reset both tenants, then fill src-tenant with a realistic topology"),
        ("reset", "delete tenant resources in both tenants (keeps conversion hosts)"),
        ("env", "print shell exports (OS_CLIENT_CONFIG_FILE, ...)"),
        ("restart", "stop the named services (all if none), then `up`"),
    ]:
        sp = sub.add_parser(name, help=text)
        if name == "seed":
            sp.add_argument("--if-missing", action="store_true",
                            help="do nothing if seed.json exists (src-tenant already seeded)")
        if name == "restart":
            sp.add_argument("services", nargs="*", help="e.g. nova-compute cinder-volume")
    args = p.parse_args(argv)
    state = State.from_env()
    if args.cmd == "status":
        return 0 if lifecycle.status(state) else 1
    if args.cmd == "env":
        return cmd_env(state)
    try:
        with _exclusive(state):
            return _locked(state, args)
    except RuntimeError as e:
        print(f"devcloud: error: {e}", file=sys.stderr)
        return 1
    return 2


def _locked(state: State, args: argparse.Namespace) -> int:
    if args.cmd == "up":
        lifecycle.up(state)
    elif args.cmd == "down":
        lifecycle.down(state)
    elif args.cmd == "restart":
        lifecycle.down(state, only=args.services)
        lifecycle.up(state)
    elif args.cmd == "seed":
        if args.if_missing and state.seed_json.exists():
            return 0
        return _venv_module(state, "seed")
    elif args.cmd == "reset":
        return _venv_module(state, "reset")
    return 0
