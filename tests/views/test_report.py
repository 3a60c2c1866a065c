"""The migration report on memory clouds: from a fresh plan, a saved plan and the journal of an
applied run (timeline, statuses, what is left), its JSON twin, an old journal, and the HTML's
self-containedness."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tenantshift.engine.report import run_report
from tenantshift.engine.state.journal import Journal
from tenantshift.providers import ProviderError
from tenantshift.providers.memory import MemoryProvider
from tenantshift.views.plangraph import CATEGORIES
from tenantshift.views.report_html import render_html
from tests.cli_memory import run
from tests.views.html_dom import assert_self_contained, dom_of

DOCS = Path(__file__).resolve().parents[2] / "docs" / "report.md"


def test_report_of_a_fresh_plan(
    manifest: Path,
    clouds: dict[str, MemoryProvider],
    tmp_path: Path,
) -> None:
    out = tmp_path / "report.html"
    code, text = run("report", "-m", str(manifest), "-o", str(out))
    assert code == 0, text
    html = out.read_text()
    assert_self_contained(html)
    code, text = run("plan", "-m", str(manifest), "--json")
    plan = json.loads(text)
    dom = dom_of(html)
    for category in CATEGORIES:
        assert dom.text_by_id[f"count-{category}"] == str(plan["summary"][category])
    rows = {a.get("data-address") for t, a in dom.tags if t == "tr" and a.get("data-address")}
    assert rows == {c["address"] for c in plan["changes"]}
    assert "<svg" in html and "Apply run" not in html


def test_report_json_twin_from_a_saved_plan(
    manifest: Path,
    clouds: dict[str, MemoryProvider],
    tmp_path: Path,
) -> None:
    plan_file = tmp_path / "p.plan"
    assert run("plan", "-m", str(manifest), "-o", str(plan_file))[0] == 0
    code, text = run("report", str(plan_file), "--json")
    assert code == 0, text
    doc = json.loads(text)
    saved = json.loads(plan_file.read_text())
    assert doc["origin"] == "saved-plan" and doc["run"] is None
    assert doc["plan"]["counts"] == saved["summary"]
    assert [c["address"] for c in doc["changes"]] == [c["address"] for c in saved["changes"]]
    assert run("report", str(plan_file), "-o", str(tmp_path / "r.json"))[0] == 0
    assert json.loads((tmp_path / "r.json").read_text())["plan"] == doc["plan"]
    code, text = run("report", str(plan_file), "-o", str(tmp_path / "r.pdf"))
    assert code == 1 and ".html or .json" in text
    code, text = run("report", str(plan_file))
    assert code == 1 and "-o report.html" in text


def documented_keys() -> set[str]:
    cells = re.findall(r"^\| (`[^|]+) \|", DOCS.read_text(), flags=re.M)
    return {name for cell in cells for name in re.findall(r"`([a-z_]+)`", cell)}


def all_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        keys = set(value)
        for key, child in value.items():
            if key not in ("counts", "fields"):  # documented as the plan's summary and fields
                keys |= all_keys(child)
        return keys
    if isinstance(value, list):
        return set().union(*(all_keys(v) for v in value)) if value else set()
    return set()


def failing_destination(pair: dict[str, MemoryProvider], kind: str) -> None:
    def fault(operation: str, fault_kind: str, params: Any) -> None:
        if operation == "create" and fault_kind == kind:
            raise ProviderError(f"injected: no {kind} today")

    pair["destination"].fault = fault


def test_report_of_an_applied_run_has_every_step_and_what_is_left(
    manifest: Path,
    clouds: dict[str, MemoryProvider],
    tmp_path: Path,
) -> None:
    failing_destination(clouds, "keypair")
    code, text = run("apply", "-m", str(manifest), "--auto-approve", "--json")
    assert code == 1
    events = [json.loads(line) for line in text.splitlines()]
    finished = {e["node"]: e["status"] for e in events if e["type"] == "finished"}
    assert "failed" in finished.values()

    code, text = run("report", "-m", str(manifest), "--run", "latest", "--json")
    assert code == 0, text
    doc = json.loads(text)
    run_doc = doc["run"]
    assert doc["origin"] == "run" and run_doc["status"] == "failed"
    assert {s["node"]: s["status"] for s in run_doc["steps"]} == finished
    for step in run_doc["steps"]:
        if step["status"] in ("done", "failed"):
            assert step["duration_seconds"] is not None and step["duration_seconds"] >= 0
            assert step["started_at"] <= step["finished_at"]
        assert step["retries"] == 0
    assert run_doc["counts"]["failed"] == sum(1 for s in finished.values() if s == "failed")
    left = {c["address"]: c for c in doc["left_to_do"]["changes"]}
    assert {a for a, s in finished.items() if s != "done"} == set(left)
    assert all("injected" in c["why"] for c in left.values() if c["status"] == "failed")
    # Every key of the JSON twin is documented.
    assert all_keys(doc) <= documented_keys(), all_keys(doc) - documented_keys()

    # The second apply converges; its report counts one retry for each step that failed.
    clouds["destination"].fault = None
    assert run("apply", "-m", str(manifest), "--auto-approve")[0] == 0
    out = tmp_path / "r.html"
    assert run("report", "-m", str(manifest), "--run", "latest", "-o", str(out))[0] == 0
    html = out.read_text()
    assert_self_contained(html)
    dom = dom_of(html)
    assert "nothing-left" in dom.text_by_id
    first = json.loads(run("report", "-m", str(manifest), "--run", run_doc["run_id"], "--json")[1])
    assert first["run"]["run_id"] == run_doc["run_id"]
    second = json.loads(run("report", "-m", str(manifest), "--run", "latest", "--json")[1])
    assert second["left_to_do"]["changes"] == []
    assert dom.text_by_id["run-done"] == str(second["run"]["counts"]["done"])
    steps = {t[1].get("data-node") for t in dom.tags if t[0] == "tr" and t[1].get("data-node")}
    assert steps == {s["node"] for s in second["run"]["steps"]}
    code, text = run("report", "-m", str(manifest), "--run", "nope", "-o", str(out))
    assert code == 1 and "no apply run 'nope'" in text


def test_a_journal_from_before_reports_still_reads(tmp_path: Path) -> None:
    """The first journal schema: no plan column, no phases or copies tables."""
    path = tmp_path / "journal.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT,
            status TEXT NOT NULL, pid INTEGER NOT NULL, plan_digest TEXT, resumed_from TEXT);
        CREATE TABLE steps (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL,
            node TEXT NOT NULL, operation TEXT NOT NULL, phase TEXT NOT NULL, target_id TEXT,
            detail TEXT, at TEXT NOT NULL);
        INSERT INTO runs VALUES ('r1', '2026-01-01T10:00:00.000+00:00',
            '2026-01-01T10:00:05.000+00:00', 'succeeded', 1, 'abc', NULL);
        INSERT INTO steps (run_id, node, operation, phase, at) VALUES
            ('r1', 'network.a', 'create', 'begin', '2026-01-01T10:00:01.000+00:00'),
            ('r1', 'network.a', 'create', 'done', '2026-01-01T10:00:03.500+00:00');
        """
    )
    db.commit()
    db.close()
    journal = Journal(path)
    try:
        doc = run_report(journal)
        # Opened, it gained what reports need: a killed run's phase reads as interrupted.
        journal.run_id = "r1"
        journal.phase_started("volume.v", "copied")
        phases = run_report(journal)["run"]["workloads"][0]["phases"]
    finally:
        journal.close()
    assert [(p["phase"], p["status"]) for p in phases] == [("copied", "interrupted")]
    assert doc["plan"] is None and doc["run"]["plan_recorded"] is False
    (step,) = doc["run"]["steps"]
    assert step["duration_seconds"] == 2.5 and step["status"] == "done"
    html = render_html(doc)
    assert "before tenantshift kept the applied plan" in html and "network.a" in html


def test_the_report_escapes_what_the_plan_holds() -> None:
    hostile = "<script>alert(1)</script>"
    doc = {
        "format_version": 1,
        "tool_version": "x",
        "generated_at": "2026-01-01T00:00:00+00:00",
        "origin": "plan",
        "manifest_path": hostile,
        "plan": {
            "created_at": None,
            "manifest_hash": "0",
            "counts": {c: 0 for c in CATEGORIES},
            "targets": [],
            "warnings": [hostile],
            "bytes_to_move": 0,
        },
        "changes": [
            {
                "address": f"network.{hostile}",
                "kind": "network",
                "action": "create",
                "reason": None,
                "detail": hostile,
                "blocked": False,
                "fields": [],
                "depends_on": [],
                "bytes_to_move": None,
            }
        ],
        "blocked": [],
        "run": None,
        "left_to_do": None,
    }
    html = render_html(doc)
    assert hostile not in html
    assert html.count("<script>") == 1  # ours, the filter


@pytest.mark.parametrize("args", [["--run", "latest"], []])
def test_report_needs_a_source(args: list[str]) -> None:
    code, text = run("report", *args, "-o", "x.html")
    assert code == 1 and ("-m" in text or "manifest" in text)


def test_without_graphviz_the_report_still_draws_every_change(
    manifest: Path,
    clouds: dict[str, MemoryProvider],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan_file = tmp_path / "p.plan"
    assert run("plan", "-m", str(manifest), "-o", str(plan_file))[0] == 0
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "r.html"
    code, text = run("report", str(plan_file), "-o", str(out))
    assert code == 0, text
    html = out.read_text()
    assert "Drawn without Graphviz" in html
    svg = html[html.index("<svg") : html.index("</svg>")]
    drawn = set(re.findall(r'<g class="node" data-address="([^"]+)"><title>', svg))
    changes = json.loads(plan_file.read_text())["changes"]
    assert drawn == {c["address"] for c in changes}
    assert_self_contained(html)
