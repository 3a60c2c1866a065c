"""The CLI's contract: exit codes, saved plans, staleness, refusals, secrets kept out.

Clouds are memory providers here (patched in where the CLI opens providers); the same commands
run against the real local OpenStack in tests/integration.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenantshift.providers.memory import MemoryProvider
from tests.cli_memory import MANIFEST, SECRET, run
from tests.engine.topology import build_source


def test_validate_good_and_bad(manifest: Path, clouds: dict[str, MemoryProvider]) -> None:
    assert run("validate", "-m", str(manifest)) == (0, f"{manifest}: valid\n")
    manifest.write_text(MANIFEST.replace("destination:", "destnation:"))
    code, out = run("validate", "-m", str(manifest))
    assert code == 1
    assert "did you mean 'destination'?" in out
    assert SECRET not in out


def test_plan_apply_and_converge(
    manifest: Path, clouds: dict[str, MemoryProvider], tmp_path: Path
) -> None:
    code, out = run("plan", "-m", str(manifest), "--detailed-exitcode")
    assert code == 2, out
    assert "+ network.net-00" in out
    assert "to create" in out

    plan_file = tmp_path / "out.plan"
    code, out = run("plan", "-m", str(manifest), "-o", str(plan_file))
    assert code == 0, out
    code, shown = run("show", str(plan_file))
    assert code == 0 and "+ network.net-01" in shown

    code, out = run("apply", str(plan_file))  # the plan never picks the manifest (M2)
    assert code == 1 and "give the manifest with -m" in out, out

    code, out = run("apply", "-m", str(manifest), str(plan_file))
    assert code == 0, out
    assert "Apply complete!" in out

    code, out = run("plan", "-m", str(manifest), "--detailed-exitcode")
    assert code == 0, out
    assert "No changes." in out

    code, out = run("journal", "-m", str(manifest))
    assert code == 0 and "succeeded" in out


def test_stale_plan_is_refused(
    manifest: Path, clouds: dict[str, MemoryProvider], tmp_path: Path
) -> None:
    plan_file = tmp_path / "out.plan"
    assert run("plan", "-m", str(manifest), "-o", str(plan_file))[0] == 0
    clouds["destination"].create("network", {"name": "by-hand"}, None)

    code, out = run("apply", "-m", str(manifest), str(plan_file))

    assert code == 1
    assert "stale" in out and "network.by-hand" in out
    assert clouds["destination"].count("network") == 1  # nothing applied


def test_apply_without_a_terminal_needs_approval(
    manifest: Path, clouds: dict[str, MemoryProvider]
) -> None:
    code, out = run("apply", "-m", str(manifest))
    assert code == 1
    assert "--auto-approve" in out
    assert clouds["destination"].count("network") == 0


def test_secrets_never_reach_output_plan_or_journal(
    manifest: Path, clouds: dict[str, MemoryProvider], tmp_path: Path
) -> None:
    plan_file = tmp_path / "out.plan"
    outputs = [
        run("plan", "-m", str(manifest), "--json", "-o", str(plan_file))[1],
        run("apply", "-m", str(manifest), "--auto-approve")[1],
        run("journal", "-m", str(manifest))[1],
    ]
    assert json.loads(outputs[0])["summary"]["create"] > 0
    stored = [plan_file.read_bytes()] + [
        p.read_bytes() for p in (tmp_path / ".tenantshift").rglob("*") if p.is_file()
    ]
    assert stored[1:], "the journal was written"
    for text in outputs:
        assert SECRET not in text
    for blob in stored:
        assert SECRET.encode() not in blob


def test_unknown_target_is_a_clear_error(manifest: Path, clouds: dict[str, MemoryProvider]) -> None:
    code, out = run("plan", "-m", str(manifest), "--target", "network.net-O1")
    assert code == 1
    assert "did you mean network.net-01?" in out


def test_plan_offline_against_snapshot_files(tmp_path: Path) -> None:
    """No cloud at all: both sides from files saved by `tenantshift snapshot`."""
    from tenantshift.providers.snapshot_file import save_snapshot

    save_snapshot(build_source(networks=2, groups=1).snapshot(), tmp_path / "src.json")
    save_snapshot(MemoryProvider("dst").snapshot(), tmp_path / "dst.json")
    manifest = tmp_path / "offline.yaml"
    manifest.write_text(
        "version: 1\nsource: {snapshot: src.json}\ndestination: {snapshot: dst.json}\n"
    )

    code, out = run("plan", "-m", str(manifest), "--json")
    assert code == 0, out
    document = json.loads(out)
    assert (
        document["summary"]["create"]
        == len([c for c in document["changes"] if c["action"] == "create"])
        > 0
    )

    code, out = run("apply", "-m", str(manifest), "--auto-approve")
    assert code == 1
    assert "dst.json is a snapshot file: it cannot be changed" in out


def test_apply_with_a_target_touches_only_it_and_its_dependencies(
    manifest: Path, clouds: dict[str, MemoryProvider]
) -> None:
    code, out = run(
        "apply", "-m", str(manifest), "--auto-approve", "--target", "subnet.net-01/sub-1"
    )
    assert code == 0, out
    snap = clouds["destination"].snapshot()
    created = {a for a in snap.resources if not a.startswith("security_group")}
    assert created == {"network.net-01", "subnet.net-01/sub-1"}


def test_apply_is_refused_while_another_apply_holds_the_lock(
    manifest: Path, clouds: dict[str, MemoryProvider]
) -> None:
    from tenantshift.engine.state.lock import ApplyLock
    from tenantshift.manifest import load_manifest

    state_dir = load_manifest(manifest).state_dir
    with ApplyLock(state_dir):
        code, out = run("apply", "-m", str(manifest), "--auto-approve")
    assert code == 1
    assert "another apply of this manifest is running" in out
    assert "will be created" not in out  # refused before planning or prompting
    assert clouds["destination"].count("network") == 0


def test_an_apply_into_the_same_destination_from_another_manifest_is_refused(
    manifest: Path,
    clouds: dict[str, MemoryProvider],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Security review L1: a copy of the manifest in another checkout took another lock."""
    from tenantshift.engine.state.lock import ApplyLock

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    clouds["destination"].identity = "https://dst.example:5000/v3#project-1"
    elsewhere = tmp_path / "other-checkout" / "state"
    with ApplyLock(elsewhere, "https://dst.example:5000/v3#project-1"):
        code, out = run("apply", "-m", str(manifest), "--auto-approve")
    assert code == 1
    assert "another apply of this destination project is running" in out
    assert clouds["destination"].count("network") == 0
    code, out = run("apply", "-m", str(manifest), "--auto-approve")  # free again
    assert code == 0, out


def test_apply_json_streams_events_a_program_can_follow(
    manifest: Path, clouds: dict[str, MemoryProvider]
) -> None:
    code, out = run("apply", "-m", str(manifest), "--json")
    assert code == 1 and "add --auto-approve" in out  # never a prompt in JSON mode

    code, out = run("apply", "-m", str(manifest), "--auto-approve", "--json")
    assert code == 0, out
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "planned" and kinds[-1] == "result"
    finished = [e for e in events if e["type"] == "finished"]
    assert len(finished) == events[0]["total"] == kinds.count("started")
    assert {e["status"] for e in finished} == {"done"}
    assert events[-1]["ok"] is True and events[-1]["done"] == len(finished)
    assert clouds["destination"].count("network") >= 2


def test_env_lets_a_template_read_one_more_variable(
    manifest: Path, clouds: dict[str, MemoryProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Templates see TENANTSHIFT_* and OS_* only (review L8); --env NAME adds one."""
    monkeypatch.setenv("SRC_PASSWORD", SECRET)
    manifest.write_text(MANIFEST.replace("TENANTSHIFT_SRC_PASSWORD", "SRC_PASSWORD"))
    code, out = run("validate", "-m", str(manifest))
    assert code == 1 and "--env SRC_PASSWORD" in out, out
    assert SECRET not in out
    code, out = run("validate", "-m", str(manifest), "--env", "SRC_PASSWORD")
    assert code == 0, out
