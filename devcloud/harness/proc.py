"""Start, find and stop the processes devcloud owns.

Every process is started in its own session (so its process group id equals its pid) and its
pid plus kernel start time are recorded under <state>/run. `down` signals only those recorded
process groups, and the start time guards against a recycled pid after a reboot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from .layout import State


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); split after the ")" that closes the command name.
    return stat.rsplit(")", 1)[1].split()[19]


def _pidfile(state: State, name: str) -> Path:
    return state.run / f"{name}.pid"


def running_pid(state: State, name: str) -> int | None:
    """The pid of service `name` if the process we recorded is still alive."""
    try:
        pid_s, start = _pidfile(state, name).read_text().split()
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    if _start_time(pid) != start:
        return None
    try:  # a zombie still has /proc/<pid>/stat; state "Z" means it is gone
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None
    except OSError:
        return None
    return pid


def start(state: State, name: str, argv: Sequence[str], env: dict[str, str] | None = None,
          cwd: Path | None = None) -> int:
    """Start `argv` detached, logging to <state>/logs/<name>.log; no-op if already running."""
    pid = running_pid(state, name)
    if pid:
        return pid
    log = open(state.log(name), "ab")  # noqa: SIM115 - handed to the child
    log.write(f"\n==== devcloud start {time.strftime('%F %T')}: {' '.join(argv)}\n".encode())
    log.flush()
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=full_env, cwd=cwd or state.root,
                            start_new_session=True)
    log.close()
    start_t = None
    for _ in range(50):  # /proc entry appears immediately, but be tolerant
        start_t = _start_time(proc.pid)
        if start_t:
            break
        time.sleep(0.01)
    _pidfile(state, name).write_text(f"{proc.pid} {start_t}\n")
    return proc.pid


def stop(state: State, name: str, timeout: float = 20.0) -> bool:
    """SIGTERM the recorded process group, SIGKILL after `timeout`. True if it was running."""
    return bool(stop_many(state, [name], timeout))


def stop_many(state: State, names: list[str], timeout: float = 20.0) -> list[str]:
    """Stop several services at once (their shutdowns overlap); returns those that ran."""
    pids = {}
    for name in names:
        pid = running_pid(state, name)
        if pid is None:
            _pidfile(state, name).unlink(missing_ok=True)
            continue
        pids[name] = pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    waiting = dict(pids)
    while waiting and time.monotonic() < deadline:
        waiting = {n: p for n, p in waiting.items() if _group_alive(p)}
        if waiting:
            time.sleep(0.2)
    for pid in waiting.values():  # did not exit in time
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    for name in pids:
        _pidfile(state, name).unlink(missing_ok=True)
    return list(pids)


def _group_alive(pgid: int) -> bool:
    return bool(group_pids(pgid))


def group_pids(pgid: int) -> list[int]:
    """All live pids in process group `pgid` (a service and its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def pss_kib(pids: list[int]) -> int:
    """Proportional set size of `pids` together (shared pages split fairly), in KiB."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except (OSError, ValueError):
            continue
    return total


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 3.0) -> bool:
    """True if the URL answers with any HTTP status below 500 (401/300 mean alive)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status < 500
    except urllib.error.HTTPError as e:
        return e.code < 500
    except (OSError, ValueError):
        return False


def wait_for(what: str, check, timeout: float, state: State | None = None,
             service: str | None = None) -> None:
    """Poll `check()` until true; on timeout fail naming the log to read."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if state and service and running_pid(state, service) is None:
            raise RuntimeError(f"{service} exited; see {state.log(service)}")
        time.sleep(0.5)
    hint = f"; see {state.log(service)}" if state and service else ""
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}{hint}")


def run(argv: Sequence[str], log: Path | None = None, env: dict[str, str] | None = None,
        check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a one-shot command, appending its output to `log` when given."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    res = subprocess.run(list(argv), capture_output=True, text=True, env=full_env, input=input)
    if log is not None:
        with open(log, "a") as f:
            f.write(f"\n==== {' '.join(argv)} (rc={res.returncode})\n{res.stdout}{res.stderr}")
    if check and res.returncode != 0:
        where = f" (log: {log})" if log else ""
        raise RuntimeError(f"command failed rc={res.returncode}: {' '.join(argv)}{where}\n"
                           f"{(res.stderr or res.stdout)[-3000:]}")
    return res
