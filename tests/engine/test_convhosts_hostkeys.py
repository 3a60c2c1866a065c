"""Host keys of deployed conversion hosts: the console-log parsing and the trust policy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tenantshift.engine.convhosts.hostkeys import (
    BEGIN,
    END,
    HostKeyRefused,
    choose_host_key,
    console_host_keys,
    fingerprint,
)

ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAH8ng/ENdqWiGFL/leFHwiwIDw1Z2z6ObaeWMRnDj+o"
OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB8GM8QyKPsdiKIqQ6rQKrn+elZRbxLt+5QduDW0wxlv"
# An ed25519 blob labelled as RSA: what a console would show if lines got mixed up.
MISLABELLED = "ssh-rsa " + ED.split()[1]


def console(*blocks: list[str], noise: str = "[   3.14] random: crng init done") -> str:
    lines = ["[    0.000000] Linux version 5.14", noise]
    for keys in blocks:
        lines += ["ci-info: no authorized SSH keys fingerprints found", BEGIN, *keys, END, noise]
    return "\r\n".join(lines)


def test_keys_between_the_markers_are_found_with_comment_and_console_noise() -> None:
    text = console([f"{ED} root@conv-src", f"[  12.5] cloud-init[812]: {OTHER} root@conv-src"])
    assert console_host_keys(text) == [ED, OTHER]


def test_the_last_complete_block_wins_after_a_reboot() -> None:
    text = console([ED], [OTHER])
    assert console_host_keys(text) == [OTHER]
    # A block cut off by the console buffer (no END) does not replace the complete one.
    assert console_host_keys(text + f"\n{BEGIN}\n{ED}\n") == [OTHER]


def test_no_block_or_garbage_gives_no_keys() -> None:
    assert console_host_keys("FAKE CONSOLE OUTPUT\nANOTHER\nLAST LINE") == []
    assert console_host_keys(console([MISLABELLED, "ssh-ed25519 not-base64!", ED[:40]])) == []
    assert console_host_keys(console([])) == []


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    pub = tmp_path / "k.pub"
    pub.write_text(ED + " comment\n")
    # OpenSSH's client tools are a requirement of the data path (the pull runs ssh), so
    # ssh-keygen is there wherever the suite runs: its absence is a failure, not a skip.
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == fingerprint(ED)


def test_a_key_from_the_console_log_is_pinned() -> None:
    pinned = choose_host_key(
        ED + " root@x", recorded=None, console=[OTHER, ED], trust_first_use=False, server="s"
    )
    assert (pinned.key, pinned.source) == (ED, "console-log")
    assert pinned.fingerprint == fingerprint(ED)


def test_a_key_the_console_log_does_not_show_is_refused_even_with_tofu() -> None:
    with pytest.raises(HostKeyRefused, match="not one of those its console log shows"):
        choose_host_key(OTHER, recorded=None, console=[ED], trust_first_use=True, server="s")


def test_without_console_keys_first_use_needs_the_manifest_to_allow_it() -> None:
    with pytest.raises(HostKeyRefused, match="trust_first_use") as info:
        choose_host_key(ED, recorded=None, console=[], trust_first_use=False, server="s")
    assert fingerprint(ED) in str(info.value)  # the user can compare it out of band
    pinned = choose_host_key(ED, recorded=None, console=[], trust_first_use=True, server="s")
    assert (pinned.key, pinned.source) == (ED, "first-use")


def test_a_recorded_key_must_match_on_every_later_connection() -> None:
    pinned = choose_host_key(ED, recorded=ED, console=[], trust_first_use=False, server="s")
    assert pinned.source == "recorded"
    # Neither the console log nor trust on first use overrides a recorded key.
    with pytest.raises(HostKeyRefused, match="changed since it was recorded"):
        choose_host_key(OTHER, recorded=ED, console=[OTHER], trust_first_use=True, server="s")
