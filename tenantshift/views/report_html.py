"""The migration report as one self-contained HTML file, rendered from the report document.

Everything is inline (CSS, a few lines of JS for filtering, the graph as SVG): the file can be
mailed, attached to a change ticket or opened offline, and it fetches nothing. Every value from
the plan or the journal is escaped.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from html import escape
from typing import Any

from tenantshift.views.graphviz import GraphvizError, render
from tenantshift.views.plangraph import (
    CATEGORIES,
    STYLE,
    changes_only,
    human_bytes,
    plan_graph,
    render_plan_dot,
)
from tenantshift.views.svgfallback import layered_svg

Doc = dict[str, Any]

#: Above this many addresses the report draws only the changes (no-ops collapsed).
FULL_GRAPH_LIMIT = 150

_CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#263238;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px} header p{margin:2px 0;color:#cfd8dc;font-size:13px}
main{padding:12px 28px 40px} section{margin:22px 0}
h2{font-size:17px;border-bottom:2px solid #cfd8dc;padding-bottom:4px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #ddd;border-left:6px solid #999;border-radius:6px;
 padding:8px 14px;min-width:92px}
.card .count{display:block;font-size:24px;font-weight:bold}
.card .label{font-size:12px;color:#555}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border:1px solid #e0e0e0;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eceff1} td.num{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font-family:Menlo,Consolas,monospace;font-size:12px}
.badge{display:inline-block;border-radius:4px;padding:1px 7px;font-size:12px;border:1px solid}
.status-done{color:#2e7d32} .status-failed,.status-interrupted{color:#c62828;font-weight:bold}
.status-skipped,.status-not-run{color:#a07800}
.graph{overflow:auto;background:#fff;border:1px solid #ddd;max-height:720px}
.bar{position:relative;height:10px;background:#eceff1;min-width:160px}
.bar span{position:absolute;top:0;height:10px;background:#0277bd}
.bar span.failed{background:#c62828}
.note{color:#555;font-size:13px} .ok{color:#2e7d32;font-weight:bold}
.controls{margin:6px 0;font-size:13px} .controls input[type=search]{width:260px}
"""

_JS = """
function filterChanges(){
  var q=document.getElementById('filter').value.toLowerCase();
  var hide=document.getElementById('hide-noop').checked;
  document.querySelectorAll('#changes tbody tr').forEach(function(r){
    var show=r.dataset.address.toLowerCase().indexOf(q)>=0&&!(hide&&r.dataset.action==='no-op');
    r.style.display=show?'':'none';});
}
"""


def graph_svg(changes: list[Doc]) -> tuple[str, str]:
    """The plan graph as inline SVG (Graphviz when installed, else a plain layered drawing),
    and a note saying what is drawn."""
    graph = plan_graph({"changes": changes})
    note = ""
    if graph.number_of_nodes() > FULL_GRAPH_LIMIT:
        graph = changes_only(graph)
        note = (
            f"Only the changes are drawn (more than {FULL_GRAPH_LIMIT} addresses); dashed "
            "arrows go through unchanged resources."
        )
    try:
        svg = render(render_plan_dot(graph, legend=False), "svg").decode()
        svg = svg[svg.index("<svg") :]
        # Fit the page's width (the viewBox keeps the proportions); the box scrolls if tall.
        svg = re.sub(r'^<svg width="[^"]*" height="[^"]*"', '<svg width="100%"', svg)
        return svg, note
    except GraphvizError:
        note = (note + " Drawn without Graphviz (install it for a better layout).").strip()
        return layered_svg(graph), note


def _badge(category: str) -> str:
    fill, border, _, _, symbol = STYLE[category]
    text = f"{symbol} {category}" if symbol else category
    return (
        f'<span class="badge" style="background:{fill};border-color:{border}">{escape(text)}</span>'
    )


def _category(change: Doc) -> str:
    return "blocked" if change.get("blocked") else str(change["action"])


def _status(status: str) -> str:
    return f'<span class="status-{escape(status.replace(" ", "-"))}">{escape(status)}</span>'


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{rest:02d}s" if hours else f"{minutes}m{rest:02d}s"


def _bytes(count: Any) -> str:
    return "" if count is None else human_bytes(int(count))


def _time(stamp: str | None) -> str:
    return escape(stamp.replace("T", " ")[:23]) if stamp else ""


def _summary(doc: Doc) -> list[str]:
    plan = doc["plan"]
    out = ['<section id="summary"><h2>Plan summary</h2>']
    if plan is None:
        out.append(
            '<p class="note">This run was recorded before tenantshift kept the applied plan '
            "in its journal: the timeline below is all it knows.</p></section>"
        )
        return out
    out.append('<div class="cards">')
    counts = plan["counts"]
    for category in CATEGORIES:
        key = "blocked" if category == "blocked" else category
        border = STYLE[category][1]
        out.append(
            f'<div class="card" style="border-left-color:{border}">'
            f'<span class="count" id="count-{escape(key)}" data-count="{int(counts.get(key, 0))}">'
            f"{int(counts.get(key, 0))}</span>"
            f'<span class="label">{escape(key)}</span></div>'
        )
    out.append(
        '<div class="card" style="border-left-color:#0277bd">'
        f'<span class="count" id="bytes-to-move">{escape(_bytes(plan["bytes_to_move"]))}</span>'
        '<span class="label">to move</span></div></div>'
    )
    out.append(
        f'<p class="note">Plan made {_time(plan["created_at"])}; manifest hash '
        f"<code>{escape(str(plan['manifest_hash'])[:16])}</code>"
        + (f"; restricted to {escape(', '.join(plan['targets']))}" if plan["targets"] else "")
        + ".</p>"
    )
    for warning in plan["warnings"]:
        out.append(f'<p class="note">Warning: {escape(warning)}</p>')
    out.append("</section>")
    return out


def _run(doc: Doc) -> list[str]:
    run = doc["run"]
    if run is None:
        return []
    counts = run["counts"]
    resumed = (
        f" It resumed interrupted run <code>{escape(run['resumed_from'])}</code>."
        if run["resumed_from"]
        else ""
    )
    out = [
        '<section id="run"><h2>Apply run</h2>',
        f'<p>Run <code id="run-id">{escape(run["run_id"])}</code>: '
        f"{_status(run['status'])}, {_time(run['started_at'])} to "
        f"{_time(run['finished_at']) or '?'} ({escape(_duration(run['duration_seconds']))}). "
        f"{resumed}</p>",
        '<div class="cards">',
    ]
    for key in ("done", "failed", "skipped", "interrupted"):
        out.append(
            f'<div class="card"><span class="count" id="run-{key}" data-count="'
            f'{int(counts.get(key, 0))}">{int(counts.get(key, 0))}</span>'
            f'<span class="label">steps {key}</span></div>'
        )
    out.append("</div></section>")
    return out


def _blocked(doc: Doc) -> list[str]:
    if not doc["blocked"]:
        return []
    out = [
        '<section id="blocked"><h2>Blocked</h2>',
        "<p>Apply will not run these; each says what is missing.</p>",
        "<table><thead><tr><th>Address</th><th>Action</th><th>Reason</th><th>Why</th></tr>"
        "</thead><tbody>",
    ]
    for item in doc["blocked"]:
        out.append(
            f'<tr data-address="{escape(item["address"])}"><td class="mono">'
            f"{escape(item['address'])}</td><td>{_badge(item['action'])}</td>"
            f"<td>{escape(item['reason'])}</td><td>{escape(item['detail'])}</td></tr>"
        )
    out.append("</tbody></table></section>")
    return out


def _fields(change: Doc) -> str:
    rows = []
    for field in change["fields"]:
        forces = " <em>(forces replacement)</em>" if field.get("forces_replacement") else ""
        rows.append(
            f"<code>{escape(field['field'])}</code>: "
            f"<code>{escape(json.dumps(field.get('before'), sort_keys=True))}</code> &rarr; "
            f"<code>{escape(json.dumps(field.get('after'), sort_keys=True))}</code>{forces}"
        )
    return "<br>".join(rows)


def _changes(doc: Doc) -> list[str]:
    if not doc["changes"]:
        return []
    with_status = doc["run"] is not None
    out = [
        '<section id="changes-section"><h2>Changes by address</h2>',
        '<div class="controls"><input type="search" id="filter" placeholder="filter addresses" '
        'oninput="filterChanges()"> <label><input type="checkbox" id="hide-noop" '
        'onchange="filterChanges()"> hide unchanged</label></div>',
        '<table id="changes"><thead><tr><th>Address</th><th>Action</th><th>Why / what</th>'
        "<th>Fields</th>" + ("<th>Status</th>" if with_status else "") + "</tr></thead><tbody>",
    ]
    for change in doc["changes"]:
        what = change["detail"]
        if change.get("bytes_to_move") is not None:
            what = (what + "; " if what else "") + f"{_bytes(change['bytes_to_move'])} to move"
        reason = f"{change['reason']}: " if change.get("reason") else ""
        status = f"<td>{_status(change.get('status', ''))}</td>" if with_status else ""
        out.append(
            f'<tr data-address="{escape(change["address"])}" '
            f'data-action="{escape(change["action"])}"><td class="mono">'
            f"{escape(change['address'])}</td><td>{_badge(_category(change))}</td>"
            f"<td>{escape(reason + what)}</td><td>{_fields(change)}</td>{status}</tr>"
        )
    out.append("</tbody></table></section>")
    return out


def _graph(doc: Doc) -> list[str]:
    if not doc["changes"]:
        return []
    svg, note = graph_svg(doc["changes"])
    legend = " ".join(_badge(c) for c in CATEGORIES)
    return [
        '<section id="graph"><h2>Plan graph</h2>',
        f'<p class="note">{legend} Arrows go from a resource to what references it. {escape(note)}'
        "</p>",
        f'<div class="graph">{svg}</div></section>',
    ]


def _offsets(run: Doc) -> tuple[datetime | None, float]:
    if not run["steps"]:
        return None, 0.0
    start = datetime.fromisoformat(run["started_at"])
    ends = [datetime.fromisoformat(s["finished_at"] or s["started_at"]) for s in run["steps"]]
    span = max((e - start).total_seconds() for e in ends)
    return start, max(span, 0.001)


def _timeline(doc: Doc) -> list[str]:
    run = doc["run"]
    if run is None:
        return []
    start, span = _offsets(run)
    out = [
        '<section id="timeline"><h2>Timeline</h2>',
        "<p>Every step of the run from the journal, in the order they started. Retries are "
        "earlier attempts of the same step (in this run or the interrupted runs it resumed).</p>",
        '<table id="steps"><thead><tr><th>Step</th><th>Operation</th><th>Status</th>'
        "<th>Start</th><th>End</th><th>Duration</th><th>Retries</th><th>When</th>"
        "<th>Message</th></tr></thead><tbody>",
    ]
    for step in sorted(run["steps"], key=lambda s: s["started_at"]):
        bar = ""
        if start is not None:
            begin = (datetime.fromisoformat(step["started_at"]) - start).total_seconds()
            end = datetime.fromisoformat(step["finished_at"] or step["started_at"])
            length = max((end - start).total_seconds() - begin, 0)
            left, width = 100 * begin / span, max(100 * length / span, 0.5)
            css = ' class="failed"' if step["status"] != "done" else ""
            bar = (
                f'<div class="bar"><span{css} style="left:{left:.2f}%;width:{width:.2f}%">'
                "</span></div>"
            )
        out.append(
            f'<tr data-node="{escape(step["node"])}"><td class="mono">{escape(step["node"])}</td>'
            f"<td>{escape(step['operation'])}</td><td>{_status(step['status'])}</td>"
            f"<td>{_time(step['started_at'])}</td><td>{_time(step['finished_at'])}</td>"
            f'<td class="num">{escape(_duration(step["duration_seconds"]))}</td>'
            f'<td class="num">{int(step["retries"])}</td><td>{bar}</td>'
            f"<td>{escape(step['message'])}</td></tr>"
        )
    out.append("</tbody></table></section>")
    return out


def _workloads(doc: Doc) -> list[str]:
    run = doc["run"]
    if run is None or not run["workloads"]:
        return []
    out = ['<section id="workloads"><h2>Workloads</h2>']
    for workload in run["workloads"]:
        address = escape(workload["address"])
        out.append(f'<h3 class="mono" data-workload="{address}">{address}: ')
        out.append(f"{_status(workload['status'])}</h3>")
        if workload["phases"]:
            phases = ", ".join(
                f"{escape(p['phase'])} ({escape(_duration(p['duration_seconds']) or p['status'])})"
                for p in workload["phases"]
            )
            out.append(f'<p class="note">Phases: {phases}</p>')
        out += _syncs(workload.get("syncs") or [])
        if not workload["volumes"]:
            out.append('<p class="note">No verified copy recorded in this run.</p>')
            continue
        out.append(
            "<table><thead><tr><th>Source volume</th><th>Destination volume</th>"
            "<th>Logical</th><th>Allocated</th><th>Data</th><th>Sent</th><th>Time</th>"
            "<th>Rate</th><th>Codec</th><th>Digest</th><th>Verified</th></tr></thead><tbody>"
        )
        for volume in workload["volumes"]:
            rate = volume["rate_bytes_per_second"]
            verified = (
                '<span class="ok">verified</span>' if volume["verified"] else _status("failed")
            )
            resumed = (
                f" (resumed at {_bytes(volume['resumed_from'])})" if volume["resumed_from"] else ""
            )
            out.append(
                f'<tr><td class="mono">{escape(str(volume["source"]))}</td>'
                f'<td class="mono">{escape(str(volume["destination"]))}</td>'
                f'<td class="num">{_bytes(volume["bytes_logical"])}</td>'
                f'<td class="num">{_bytes(volume["bytes_allocated"])}</td>'
                f'<td class="num">{_bytes(volume["bytes_data"])}</td>'
                f'<td class="num">{_bytes(volume["bytes_sent"])}</td>'
                f'<td class="num">{escape(_duration(volume["seconds"]))}{resumed}</td>'
                f'<td class="num">{_bytes(rate) + "/s" if rate is not None else ""}</td>'
                f"<td>{escape(str(volume['codec']))}</td>"
                f'<td class="mono" title="{escape(str(volume["digest"]))}">'
                f"{escape(str(volume['digest'])[:16])}</td><td>{verified}</td></tr>"
            )
        out.append("</tbody></table>")
    out.append("</section>")
    return out


def _syncs(syncs: list[Doc]) -> list[str]:
    """A warm workload's history: each sync and the cutover, with its real downtime."""
    if not syncs:
        return []
    out = [
        "<table><thead><tr><th>Warm step</th><th>Finished</th><th>Read</th><th>Changed</th>"
        "<th>Sent</th><th>Copy time</th><th>Downtime</th></tr></thead><tbody>"
    ]
    for sync in syncs:
        downtime = sync["downtime_seconds"]
        split = ", ".join(
            f"{escape(name)} {escape(_duration(seconds))}"
            for name, seconds in sync["phase_seconds"].items()
        )
        out.append(
            f"<tr><td>{escape(sync['phase'])} {sync['generation']}</td>"
            f"<td>{escape(_time(sync['finished_at']))}</td>"
            f'<td class="num">{_bytes(sync["bytes_read"])}</td>'
            f'<td class="num">{_bytes(sync["bytes_data"])}</td>'
            f'<td class="num">{_bytes(sync["bytes_sent"])}</td>'
            f'<td class="num">{escape(_duration(sync["copy_seconds"]))}</td>'
            f'<td class="num" title="{split}">'
            f"{escape(_duration(downtime)) if downtime is not None else ''}</td></tr>"
        )
    out.append("</tbody></table>")
    return out


def _left(doc: Doc) -> list[str]:
    left = doc["left_to_do"]
    if left is None:
        return []
    out = ['<section id="left"><h2>What is left to do</h2>']
    if not (left["changes"] or left["unfinished_workloads"] or left["temporaries"]):
        out.append(
            '<p class="ok" id="nothing-left">Nothing: every change of the plan is done and '
            "no temporary is left.</p></section>"
        )
        return out
    if left["changes"]:
        out.append(
            "<table><thead><tr><th>Address</th><th>Action</th><th>Status</th><th>Why</th>"
            "</tr></thead><tbody>"
        )
        for item in left["changes"]:
            out.append(
                f'<tr><td class="mono">{escape(item["address"])}</td>'
                f"<td>{_badge(item['action'])}</td><td>{_status(item['status'])}</td>"
                f"<td>{escape(item['why'])}</td></tr>"
            )
        out.append("</tbody></table>")
    for item in left["unfinished_workloads"]:
        out.append(
            f"<p>{escape(item['address'])}: done up to phase {escape(item['phase'])}; "
            "the next apply resumes it.</p>"
        )
    if left["temporaries"]:
        out.append("<p>Temporaries still in place (<code>tenantshift cleanup</code> removes them):")
        out.append("<ul>")
        for row in left["temporaries"]:
            out.append(
                f"<li>{escape(row['cloud'])} {escape(row['kind'])} "
                f"<code>{escape(row['name'])}</code> ({escape(row['state'])}, for "
                f"{escape(row['owner'])})</li>"
            )
        out.append("</ul></p>")
    out.append(
        '<p class="note">Run <code>tenantshift plan -m MANIFEST</code> to see what is left '
        "against the clouds as they are now.</p></section>"
    )
    return out


def render_html(doc: Doc) -> str:
    origin = {"plan": "a fresh plan", "saved-plan": "a saved plan", "run": "an applied run"}
    title = "tenantshift migration report"
    body = [
        "<header>",
        f"<h1>{title}</h1>",
        f"<p>From {escape(origin.get(doc['origin']) or str(doc['origin']))} of "
        f"<code>{escape(doc['manifest_path'] or '(no manifest path)')}</code></p>",
        f"<p>Generated {_time(doc['generated_at'])} by tenantshift "
        f"{escape(doc['tool_version'])}; report format {int(doc['format_version'])}.</p>",
        "</header><main>",
        *_summary(doc),
        *_run(doc),
        *_blocked(doc),
        *_graph(doc),
        *_changes(doc),
        *_timeline(doc),
        *_workloads(doc),
        *_left(doc),
        "</main>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_CSS}</style><script>{_JS}</script></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
