"""The devcloud's environment options: checked when read, and carried to the service."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "devcloud"))

from harness.layout import State, neutron_workers
from harness.services import all_services


def workers_of(argv: list[str]) -> str:
    return argv[argv.index("--workers") + 1]


def test_neutron_runs_the_asked_number_of_api_processes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DEVCLOUD_NEUTRON_WORKERS", "3")
    services = {s.name: s for s in all_services(State(tmp_path))}
    assert workers_of(services["neutron"].argv) == "3"
    assert workers_of(services["keystone"].argv) == "1"  # the others keep one
    monkeypatch.delenv("DEVCLOUD_NEUTRON_WORKERS")
    assert workers_of({s.name: s for s in all_services(State(tmp_path))}["neutron"].argv) == "1"


@pytest.mark.parametrize("raw", ["0", "9", "two", "-1"])
def test_a_bad_worker_count_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("DEVCLOUD_NEUTRON_WORKERS", raw)
    with pytest.raises(SystemExit, match=r"DEVCLOUD_NEUTRON_WORKERS must be 1\.\.8"):
        neutron_workers()
