"""Progress people can follow: the tally's figures, the terminal bars, the plain lines at a
steady pace when stdout is not a terminal, and the JSON events' documented fields."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import pytest
from rich.console import Console

from tenantshift.engine.walk.nodes import Step, WorkloadNode
from tenantshift.engine.walk.walker import Outcome, Status
from tenantshift.errors import UsageError
from tenantshift.plans import Action, Change
from tenantshift.views.events import JsonEvents
from tenantshift.views.progress import INTERVAL_ENV, ApplyProgress, interval_from_env
from tenantshift.views.tally import Tally

GiB = 2**30
DOCS = Path(__file__).resolve().parents[2] / "docs" / "report.md"


def workload(address: str, planned: int | None) -> WorkloadNode:
    change = Change(address=address, kind="server", action=Action.MIGRATE, bytes_to_move=planned)
    return WorkloadNode(change, Step.MIGRATE)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_workload_copies_its_disks_one_after_the_other() -> None:
    clock = Clock()
    tally = Tally(clock)
    tally.planned(3, 3 * GiB)
    for done in (0, GiB // 2, GiB):  # the first disk, 1 GiB, at 0.5 GiB/s
        work = tally.progress("server.a", 3 * GiB, done, GiB)
        clock.now += 1
    assert (work.done, work.total) == (GiB, 3 * GiB)
    work = tally.progress("server.a", 3 * GiB, 0, 2 * GiB)  # the second disk starts over at 0
    assert work.done == GiB
    clock.now += 1
    work = tally.progress("server.a", 3 * GiB, GiB, 2 * GiB)
    assert work.done == 2 * GiB and tally.bytes_done == 2 * GiB
    rate = tally.rate()
    assert rate is not None and rate == pytest.approx(2 * GiB / 4, rel=0.01)
    assert tally.eta() == pytest.approx(GiB / rate)
    tally.finished("server.a")
    assert tally.nodes_done == 1 and tally.bytes_done == 2 * GiB and tally.bytes_total == 3 * GiB


def test_without_a_plan_estimate_the_totals_are_what_was_seen() -> None:
    tally = Tally(Clock())
    work = tally.progress("volume.v", None, 10, 100)
    assert work.total == 100 and tally.bytes_total == 100
    assert tally.rate() is None and tally.eta() is None


def feed(listener: ApplyProgress | JsonEvents, pause: float) -> None:
    node = workload("server.a", 2 * GiB)
    listener.planned_bytes(2 * GiB)
    listener.planned(2)
    listener.started(node)
    listener.step(node, "copied")
    for done in range(0, GiB + 1, GiB // 4):
        listener.progress(node, done, GiB)
        time.sleep(pause)
    listener.finished(Outcome(node, Status.DONE, "booted"))


def test_plain_lines_at_a_steady_pace_when_not_a_terminal() -> None:
    out = io.StringIO()
    progress = ApplyProgress(Console(file=out, force_terminal=False, width=200), interval=0.2)
    assert not progress.live
    with progress:
        feed(progress, 0.15)
        time.sleep(0.25)
    text = out.getvalue()
    assert "\r" not in text and "\x1b[" not in text  # no redraws, no escape codes
    lines = [x for x in text.splitlines() if "progress:" in x]
    assert len(lines) >= 3, text
    assert re.search(r"resources \d/2; bytes [\d.]+ [MG]iB/2\.0 GiB \(\d+%\) at .*/s", lines[1])
    assert any("copying server.a " in x and "left" in x for x in lines), lines
    assert "   done server.a: booted" in text and "... server.a: copied" in text


def test_bars_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160)
    progress = ApplyProgress(console, interval=100)
    with progress:
        node = workload("server.a", 2 * GiB)
        progress.planned_bytes(2 * GiB)
        progress.planned(2)
        progress.progress(node, GiB // 2, GiB)
        progress.display.refresh()
        drawn = out.getvalue()
        progress.finished(Outcome(node, Status.DONE, "booted"))
    assert "resources" in drawn and "0/2" in drawn
    assert "bytes" in drawn and "512.0 MiB/2.0 GiB (25%)" in drawn
    assert "server.a" in drawn  # its own bar, under the overall ones
    assert drawn.index("resources") < drawn.index("bytes") < drawn.rindex("server.a")


def documented_events() -> dict[str, set[str]]:
    text = DOCS.read_text()
    section = text[text.index("### Events") :]
    out: dict[str, set[str]] = {}
    for name, fields in re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", section, flags=re.M):
        out[name] = set(re.findall(r"`([a-z_]+)`", fields)) | {"type"}
    return out


def test_json_events_are_the_documented_ones() -> None:
    out = io.StringIO()
    events = JsonEvents(out, interval=0.1)
    with events:
        feed(events, 0.05)
        time.sleep(0.15)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    kinds = {e["type"] for e in lines}
    assert {"planned", "started", "step", "progress", "overall", "finished"} <= kinds
    documented = documented_events()
    for event in lines:
        assert set(event) == documented[event["type"]], event
    assert lines[0] == {"type": "planned", "total": 2, "bytes_total": 2 * GiB}
    last = [e for e in lines if e["type"] == "progress"][-1]
    assert (last["workload_done"], last["workload_total"], last["done"]) == (GiB, 2 * GiB, GiB)
    assert last["rate"] > 0 and last["eta_seconds"] >= 0
    overall = [e for e in lines if e["type"] == "overall"]
    assert overall and overall[-1]["bytes_total"] == 2 * GiB


def test_the_pace_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "2.5")
    assert interval_from_env() == 2.5
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    with pytest.raises(UsageError, match="number of seconds"):
        interval_from_env()
    monkeypatch.setenv(INTERVAL_ENV, "0")
    with pytest.raises(UsageError, match="between"):
        interval_from_env()
