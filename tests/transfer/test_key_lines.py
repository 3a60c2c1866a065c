"""Review M4, L2, L3 and L4: the copy keys' authorized_keys lines expire, run only an agent
that nobody else could have replaced, are revoked or reported, carry no injected options,
and editing authorized_keys loses nobody else's lines."""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenantshift.manifest.schema import ConversionHosts
from tenantshift.transfer import RevokeError, TransferError, TransferOptions, TransferSession
from tenantshift.transfer.agent import keys
from tenantshift.transfer.keyline import GUARD_REFUSED, check_host_fields, forced_command, key_line

from .fakes import SRC_ID, conversion_host, zip_path

MARKER = "tenantshift-transfer-" + "ab" * 16
COPY_MARKER = MARKER + "-0123456789abcdef"
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
LINE = f'restrict,command="serve" ssh-ed25519 AAAAeph {COPY_MARKER}\n'


@pytest.fixture()
def shared() -> Iterator[Path]:
    """Like /tmp: world-writable and sticky."""
    path = Path(tempfile.mkdtemp(prefix="ts-shared-"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path)


# -- M4: expiry, the agent's owner, failed revocation


def test_key_lines_expire(tmp_path: Path) -> None:
    path = tmp_path / "authorized_keys"
    keys.authorize(LINE, COPY_MARKER, str(path), ttl=3600)
    [line] = path.read_text().splitlines()
    found = re.match(r'restrict,expiry-time="(\d{14})",command="serve" ', line)
    assert found, line
    expiry = time.mktime(time.strptime(found.group(1), "%Y%m%d%H%M%S"))
    assert abs(expiry - (time.time() + 3600)) < 5
    with pytest.raises(ValueError):
        keys.authorize("ssh-ed25519 AAAAx " + COPY_MARKER, COPY_MARKER, str(path))  # no restrict


def _forced(run_dir: Path, uid: int) -> list[str]:
    host = conversion_host(python="/usr/bin/python3", device_dir="/nonexistent")
    # sshd runs the forced command through the user's shell
    return ["/bin/sh", "-c", forced_command(host, str(run_dir), uid, [SRC_ID])]


def _evil_agent(path: Path, marker: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("__main__.py", f"open({str(marker)!r}, 'w').write('pwned')\n")


def test_the_forced_command_runs_only_an_agent_its_owner_installed(
    tmp_path: Path, shared: Path
) -> None:
    run_dir = shared / "tenantshift-transfer-abc"
    run_dir.mkdir(mode=0o700)
    shutil.copy(zip_path(), run_dir / "agent.pyz")
    ok = subprocess.run(_forced(run_dir, 0), input=b"", capture_output=True, check=False)
    assert ok.returncode == 2 and b"not a JSON line" in ok.stdout  # the real agent answered
    # the run directory is gone (cleanup, reboot) and another user recreates the path
    shutil.rmtree(run_dir)
    pwned = tmp_path / "pwned"
    evil = shared / "evil.pyz"
    _evil_agent(evil, pwned)
    evil.chmod(0o644)
    subprocess.run([*NOBODY, "mkdir", "-m", "0755", str(run_dir)], check=True)
    subprocess.run([*NOBODY, "cp", str(evil), str(run_dir / "agent.pyz")], check=True)
    bad = subprocess.run(_forced(run_dir, 0), input=b"", capture_output=True, check=False)
    assert bad.returncode == GUARD_REFUSED and not pwned.exists()
    # a root-owned agent that others may write is refused too
    shutil.rmtree(run_dir)
    run_dir.mkdir(mode=0o700)
    shutil.copy(evil, run_dir / "agent.pyz")
    (run_dir / "agent.pyz").chmod(0o666)
    bad = subprocess.run(_forced(run_dir, 0), input=b"", capture_output=True, check=False)
    assert bad.returncode == GUARD_REFUSED and not pwned.exists()


class _Conn:
    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


def _hosts(**overrides: Any) -> ConversionHosts:
    return ConversionHosts(source=conversion_host(**overrides), destination=conversion_host())


def test_a_failed_revocation_is_raised_with_the_marker(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def run_json(conn: Any, command: str, what: str, stdin: Any = None) -> dict[str, Any]:
        calls.append(command)
        if " revoke " in command:
            raise TransferError("connection lost")
        return {}

    monkeypatch.setattr("tenantshift.transfer.session.ssh.run_json", run_json)
    session = TransferSession(_hosts())
    session._src, session._dst = _Conn(), _Conn()  # type: ignore[assignment]
    session.source_run_dir = "/tmp/tenantshift-transfer-x"
    session._authorized = True  # a copy's key line was added, its own revocation failed
    session._live_markers.add(f"{session.marker}-00")
    with pytest.raises(RevokeError) as err:
        asyncio.run(session.close())
    assert err.value.marker == session.marker == session.leftover_marker
    assert any(f"--marker {session.marker}" in c for c in calls)
    assert any(" cleanup " in c for c in calls)  # the rest of the tear-down still ran


def test_revoke_by_session_marker_and_sweep_of_every_run(tmp_path: Path) -> None:
    path = tmp_path / "authorized_keys"
    other_run = "tenantshift-transfer-" + "cd" * 16
    path.write_text(
        "ssh-ed25519 AAAAadmin admin@laptop\n"
        f"restrict ssh-ed25519 AAAA1 {MARKER}-00000000aaaaaaaa\n"
        f"restrict ssh-ed25519 AAAA2 {MARKER}-00000000bbbbbbbb\n"
        f"restrict ssh-ed25519 AAAA3 {other_run}-00000000cccccccc\n"
        f"ssh-ed25519 AAAA4 {MARKER}-not-ours\n"
    )
    assert keys.revoke(MARKER, str(path))["removed"] == 2
    assert keys.revoke(None, str(path), every_run=True)["removed"] == 1
    assert path.read_text().splitlines() == [
        "ssh-ed25519 AAAAadmin admin@laptop",
        f"ssh-ed25519 AAAA4 {MARKER}-not-ours",
    ]


# -- L2, L3: nothing injected into the options


@pytest.mark.parametrize(
    "value", ['*",port-forwarding,permitopen="*:*', "10.0.0.1 ", "a\\b", "", "x,,y", "a\nb"]
)
def test_source_from_must_be_an_sshd_pattern_list(value: str) -> None:
    with pytest.raises(ValueError, match="pattern-list"):
        TransferOptions(source_from=value)


def test_valid_source_from_patterns_are_kept() -> None:
    value = "10.0.0.0/8,!10.0.0.1,*.example.com,2001:db8::/32,host?"
    line = key_line(
        "serve", "ssh-ed25519 AAAA", MARKER, TransferOptions(source_from=value).source_from
    )
    assert f',from="{value}" ssh-ed25519' in line


@pytest.mark.parametrize("field", ["device_dir", "python", "user"])
@pytest.mark.parametrize("value", ["/srv/dev\\by-id", '/srv/"x"', "/srv/\x1b[0m"])
def test_quotes_backslashes_and_control_characters_are_refused(field: str, value: str) -> None:
    with pytest.raises(ValueError, match="must not contain"):
        check_host_fields(conversion_host(**{field: value}), "source")
    with pytest.raises(ValueError, match="must not contain"):
        TransferSession(_hosts(**{field: value}))


def _opt_dequote(s: str) -> str:
    """OpenSSH's opt_dequote (misc.c): only \\" is unescaped."""
    return s.replace('\\"', '"')


def test_the_command_reaches_the_agent_unchanged() -> None:
    host = conversion_host(python="/opt/py 3/bin/python3", device_dir="/srv/dev by-id")
    command = forced_command(host, "/tmp/tenantshift-transfer-x", 0, [SRC_ID])
    line = key_line(command, "ssh-ed25519 AAAA", MARKER, None)
    quoted = re.match(r'restrict,command="((?:[^"\\]|\\")*)" ', line)
    assert quoted and _opt_dequote(quoted.group(1)) == command
    argv = shlex.split(command)
    assert argv[argv.index("--device-dir") + 1] == "/srv/dev by-id"


# -- L4: authorized_keys editing


def test_authorize_appends_and_keeps_a_symlink(tmp_path: Path) -> None:
    managed = tmp_path / "dotfiles" / "authorized_keys"
    managed.parent.mkdir()
    managed.write_text("ssh-ed25519 AAAAadmin admin@laptop")  # no final newline
    link = tmp_path / "ssh" / "authorized_keys"
    link.parent.mkdir()
    link.symlink_to(managed)
    keys.authorize(LINE, COPY_MARKER, str(link))
    assert link.is_symlink()
    assert managed.read_text() == "ssh-ed25519 AAAAadmin admin@laptop\n" + LINE
    assert keys.revoke(MARKER, str(link))["removed"] == 1
    assert link.is_symlink() and managed.read_text() == "ssh-ed25519 AAAAadmin admin@laptop\n"
    leftovers = sorted(p.name for p in (*managed.parent.iterdir(), *link.parent.iterdir()))
    assert leftovers == ["authorized_keys", "authorized_keys"]  # no lock or temp files


def test_a_key_appended_during_revoke_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "authorized_keys"
    path.write_text("ssh-ed25519 AAAAadmin admin@laptop\n" + LINE)
    real_mkstemp = tempfile.mkstemp
    appended: list[bool] = []

    def mkstemp_then_someone_appends(*args: Any, **kw: Any) -> tuple[int, str]:
        if not appended:  # cloud-init / ssh-copy-id: O_APPEND, without our lock
            with open(path, "a") as f:
                f.write("ssh-ed25519 AAAAnew added@meanwhile\n")
            appended.append(True)
        return real_mkstemp(*args, **kw)

    monkeypatch.setattr(keys.tempfile, "mkstemp", mkstemp_then_someone_appends)
    assert keys.revoke(MARKER, str(path))["removed"] == 1
    assert path.read_text().splitlines() == [
        "ssh-ed25519 AAAAadmin admin@laptop",
        "ssh-ed25519 AAAAnew added@meanwhile",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["authorized_keys"]
