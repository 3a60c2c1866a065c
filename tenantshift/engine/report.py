"""The migration report as data: the JSON twin of ``tenantshift report`` (docs/report.md).

Made from a plan document (fresh or saved) and, for an applied run, from the journal: every
step with its start, end, duration and retries, each workload's phases and volume copies, and
what is left to do. The HTML view (``views/report_html.py``) is rendered from this document
only, so it can never show what the JSON does not hold (Terraform's ``jsonformat``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tenantshift import __version__
from tenantshift.engine.state.journal import Journal, RunInfo
from tenantshift.errors import TenantshiftError

REPORT_FORMAT_VERSION = 1

Doc = dict[str, Any]


class ReportError(TenantshiftError):
    """The report cannot be made (no such run, no apply yet): said with what to do."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return round(delta.total_seconds(), 3)


def _address(node: str) -> str:
    """A node id's address: ``router.r#late`` -> ``router.r``."""
    return node.split("#", 1)[0]


def plan_section(plan: Doc) -> tuple[Doc, list[Doc], list[Doc]]:
    """The plan's summary, one entry per change (no-ops included), the blocked ones."""
    summary = {
        "created_at": plan.get("created_at"),
        "manifest_hash": plan.get("manifest_hash"),
        "counts": dict(plan["summary"]),
        "targets": list(plan.get("targets") or []),
        "warnings": list(plan.get("warnings") or []),
        "bytes_to_move": sum(int(c.get("bytes_to_move") or 0) for c in plan["changes"]),
    }
    changes = []
    blocked = []
    for change in plan["changes"]:
        is_blocked = str(change.get("reason") or "").startswith("blocked_")
        changes.append(
            {
                "address": change["address"],
                "kind": change["kind"],
                "action": change["action"],
                "reason": change.get("reason"),
                "detail": change.get("detail") or "",
                "blocked": is_blocked,
                "fields": list(change.get("fields") or []),
                "depends_on": list(change.get("depends_on") or []),
                "bytes_to_move": change.get("bytes_to_move"),
            }
        )
        if is_blocked:
            blocked.append(
                {
                    "address": change["address"],
                    "action": change["action"],
                    "reason": change["reason"],
                    "detail": change.get("detail") or "",
                }
            )
    return summary, changes, blocked


def plan_report(plan: Doc, *, origin: str, manifest_path: str = "") -> Doc:
    """The report of a plan that has not run (``origin``: ``plan`` or ``saved-plan``)."""
    summary, changes, blocked = plan_section(plan)
    return {
        "format_version": REPORT_FORMAT_VERSION,
        "tool_version": __version__,
        "generated_at": _now(),
        "origin": origin,
        "manifest_path": manifest_path or plan.get("manifest_path") or "",
        "plan": summary,
        "changes": changes,
        "blocked": blocked,
        "run": None,
        "left_to_do": None,
    }


def pick_run(runs: list[RunInfo], wanted: str) -> RunInfo:
    applies = [r for r in runs if r.plan_digest != "cleanup"]
    if not applies:
        raise ReportError("no apply has run for this manifest yet: report a plan instead")
    if wanted == "latest":
        return applies[-1]
    for run in applies:
        if run.run_id == wanted:
            return run
    known = ", ".join(r.run_id for r in applies[-5:])
    raise ReportError(f"no apply run {wanted!r} in the journal (latest runs: {known})")


def _chain(runs: list[RunInfo], run: RunInfo) -> list[str]:
    """The run and the interrupted runs it resumed, oldest first."""
    by_id = {r.run_id: r for r in runs}
    chain = [run.run_id]
    current = run
    while current.resumed_from and current.resumed_from in by_id and len(chain) < 100:
        current = by_id[current.resumed_from]
        chain.insert(0, current.run_id)
    return chain


def _timeline(steps: list[Doc], run_id: str, run_status: str) -> list[Doc]:
    """One entry per step of ``run_id``: begin paired with its end; retries are the earlier
    attempts of the same node and operation in this run or the runs it resumed."""
    attempts: dict[tuple[str, str], int] = {}
    open_steps: dict[tuple[str, str], Doc] = {}
    out: list[Doc] = []
    for step in steps:
        key = (step["node"], step["operation"])
        mine = step["run_id"] == run_id
        if step["phase"] == "begin":
            attempts[key] = attempts.get(key, 0) + 1
            if mine:
                entry = {
                    "node": step["node"],
                    "address": _address(step["node"]),
                    "operation": step["operation"],
                    "status": "running" if run_status == "running" else "interrupted",
                    "started_at": step["at"],
                    "finished_at": None,
                    "duration_seconds": None,
                    "retries": attempts[key] - 1,
                    "message": "",
                }
                open_steps[key] = entry
                out.append(entry)
        elif mine and key in open_steps and step["phase"] in ("done", "failed"):
            entry = open_steps.pop(key)
            entry["status"] = step["phase"]
            entry["finished_at"] = step["at"]
            entry["duration_seconds"] = _seconds(entry["started_at"], step["at"])
            entry["message"] = step["detail"] or ""
        elif mine and step["phase"] == "skipped":
            out.append(
                {
                    "node": step["node"],
                    "address": _address(step["node"]),
                    "operation": step["operation"],
                    "status": "skipped",
                    "started_at": step["at"],
                    "finished_at": step["at"],
                    "duration_seconds": 0.0,
                    "retries": attempts.get(key, 0),
                    "message": step["detail"] or "",
                }
            )
    return out


def _volume(copy: Doc) -> Doc:
    data = copy["data"]
    seconds = float(data.get("copy_seconds") or data.get("seconds") or 0)
    sent = int(data.get("bytes_wire") or 0)
    return {
        "run_id": copy["run_id"],
        "source": data.get("source_volume_id"),
        "destination": data.get("destination_volume_id"),
        "bytes_logical": data.get("bytes_logical"),
        "bytes_allocated": data.get("bytes_allocated"),
        "bytes_data": data.get("bytes_data"),
        "bytes_sent": sent,
        "seconds": data.get("seconds"),
        "rate_bytes_per_second": round(sent / seconds) if seconds > 0 else None,
        "codec": data.get("codec"),
        "chunks": data.get("chunks"),
        "digest": data.get("digest"),
        "verified": bool(data.get("verified")),
        "resumed_from": data.get("resumed_from") or 0,
        "finished_at": copy["at"],
    }


def _sync(row: Doc) -> Doc:
    """One sync or cutover of a warm workload, across every run (its history)."""
    return {
        "run_id": row["run_id"],
        "phase": row["phase"],
        "generation": row["generation"],
        "finished_at": row["at"],
        "bytes_read": row.get("read_bytes"),
        "bytes_data": row.get("data_bytes"),
        "bytes_sent": row.get("wire_bytes"),
        "copy_seconds": row.get("copy_seconds"),
        "downtime_seconds": row.get("downtime"),
        "phase_seconds": row.get("timings", {}),
    }


def run_report(journal: Journal, wanted: str = "latest", *, manifest_path: str = "") -> Doc:
    """The report of an applied run, from the journal alone (no cloud is read)."""
    runs = journal.runs()
    run = pick_run(runs, wanted)
    chain = _chain(runs, run)
    plan = journal.run_plan(run.run_id)
    steps = journal.steps()
    steps = [s for s in steps if s["run_id"] in chain]
    timeline = _timeline(steps, run.run_id, run.status)
    phases = journal.phases(chain)
    copies = journal.copies(chain)

    workload_nodes = (
        {s["node"] for s in timeline if s["operation"] == "migrate"}
        | {p["node"] for p in phases}
        | {c["node"] for c in copies}
    )
    if plan is not None:
        workload_nodes |= {c["address"] for c in plan["changes"] if c["action"] == "migrate"}
    final: dict[str, Doc] = {}
    for entry in timeline:
        final[entry["node"]] = entry
    workloads = []
    for node in sorted(workload_nodes):
        step = final.get(node)
        workloads.append(
            {
                "address": node,
                "status": step["status"] if step else "not run",
                "phases": [
                    {
                        "run_id": p["run_id"],
                        "phase": p["phase"],
                        "status": _phase_status(p, runs),
                        "started_at": p["started_at"],
                        "finished_at": p["finished_at"],
                        "duration_seconds": _seconds(p["started_at"], p["finished_at"]),
                    }
                    for p in phases
                    if p["node"] == node
                ],
                "volumes": [_volume(c) for c in copies if c["node"] == node],
                "syncs": [_sync(row) for row in journal.syncs(node)],
            }
        )

    counts = {"done": 0, "failed": 0, "skipped": 0, "interrupted": 0, "running": 0}
    for entry in final.values():
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1

    doc: Doc = {
        "format_version": REPORT_FORMAT_VERSION,
        "tool_version": __version__,
        "generated_at": _now(),
        "origin": "run",
        "manifest_path": manifest_path,
        "plan": None,
        "changes": [],
        "blocked": [],
        "run": {
            "run_id": run.run_id,
            "status": run.status,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "duration_seconds": _seconds(run.started_at, run.finished_at),
            "resumed_from": run.resumed_from,
            "chain": chain,
            "plan_recorded": plan is not None,
            "counts": counts,
            "steps": timeline,
            "workloads": workloads,
        },
        "left_to_do": _left_to_do(journal, plan, final),
    }
    if plan is not None:
        doc["plan"], doc["changes"], doc["blocked"] = plan_section(plan)
        status_of = _status_by_address(final)
        for change in doc["changes"]:
            change["status"] = (
                "no-op"
                if change["action"] == "no-op"
                else status_of.get(change["address"], "not run")
            )
    return doc


def _phase_status(phase: Doc, runs: list[RunInfo]) -> str:
    """A phase left ``running`` by a run that is no longer running was interrupted."""
    if phase["status"] != "running":
        return str(phase["status"])
    alive = any(r.run_id == phase["run_id"] and r.status == "running" for r in runs)
    return "running" if alive else "interrupted"


def _status_by_address(final: dict[str, Doc]) -> dict[str, str]:
    """An address is done when every node of it is; else its worst node's status."""
    rank = {"failed": 0, "interrupted": 1, "running": 2, "skipped": 3, "done": 4}
    out: dict[str, str] = {}
    for node, entry in final.items():
        address = _address(node)
        if address not in out or rank.get(entry["status"], 0) < rank.get(out[address], 0):
            out[address] = entry["status"]
    return out


def _left_to_do(journal: Journal, plan: Doc | None, final: dict[str, Doc]) -> Doc:
    status_of = _status_by_address(final)
    changes = []
    if plan is not None:
        for change in plan["changes"]:
            if change["action"] == "no-op":
                continue
            status = status_of.get(change["address"], "not run")
            if status == "done":
                continue
            why = next(
                (
                    e["message"]
                    for n, e in final.items()
                    if _address(n) == change["address"] and e["status"] != "done" and e["message"]
                ),
                change.get("detail") or "",
            )
            if str(change.get("reason") or "").startswith("blocked_"):
                status, why = "blocked", change.get("detail") or ""
            changes.append(
                {
                    "address": change["address"],
                    "action": change["action"],
                    "status": status,
                    "why": why,
                }
            )
    workloads = [
        {"address": node, "phase": phase} for node, (phase, _) in journal.node_states().items()
    ]
    temporaries = [
        {
            "cloud": row["cloud"],
            "kind": row["kind"],
            "name": str(row["name"]),
            "state": row["state"],
            "owner": row["owner"],
        }
        for row in journal.pending_temporaries()
    ]
    return {"changes": changes, "unfinished_workloads": workloads, "temporaries": temporaries}
