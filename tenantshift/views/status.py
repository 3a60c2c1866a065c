"""The journal's view: runs, workloads in progress, temporaries still to clean up."""

from __future__ import annotations

from rich.markup import escape

from tenantshift.engine.commands import Status


def render_status(status: Status) -> list[str]:
    lines = []
    for run in status.runs:
        resumed = f", resumed from {run.resumed_from}" if run.resumed_from else ""
        lines.append(
            f"run {run.run_id}: {run.status}, {run.started_at} -> {run.finished_at or '?'}{resumed}"
        )
    if status.workloads:
        lines.append("workloads not finished:")
        for node, (phase, data) in status.workloads.items():
            extra = ""
            if "data_bytes" in data:
                extra = f", {data['data_bytes'] / 2**20:.1f} MiB copied, digest {data['digest']}"
            lines.append(f"  {escape(node)}: done up to {phase}{extra}")
    if status.pending:
        lines.append("temporaries left (tenantshift cleanup removes them):")
        for row in status.pending:
            lines.append(
                f"  {row['cloud']} {row['kind']} {escape(str(row['name']))} "
                f"({row['state']}, for {escape(str(row['owner']))})"
            )
    if status.unfinished:
        lines.append("unfinished copies in the destination (tenantshift cleanup removes them):")
        lines += [f"  {escape(c.line())}" for c in status.unfinished]
    if status.unread:
        lines.append(f"the clouds could not be read for unfinished copies: {escape(status.unread)}")
    return lines
