"""The journal's view: runs, workloads in progress, temporaries still to clean up."""

from __future__ import annotations

from typing import Any

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
    if status.syncs:
        lines.append("warm migrations:")
        for node, rows in status.syncs.items():
            lines.append(f"  {escape(node)}:")
            lines += [f"    {_sync_line(row)}" for row in rows]
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


def _sync_line(row: dict[str, Any]) -> str:
    """``sync 2 at ...: read 8.0 GiB, changed 80.0 MiB, sent 52.1 MiB in 41 s``."""
    mib = 2**20
    line = (
        f"{row['phase']} {row['generation']} at {row['at']}: read "
        f"{int(row.get('read_bytes') or 0) / mib:.1f} MiB, changed "
        f"{int(row.get('data_bytes') or 0) / mib:.1f} MiB, sent "
        f"{int(row.get('wire_bytes') or 0) / mib:.1f} MiB in "
        f"{float(row.get('copy_seconds') or 0):.0f} s"
    )
    if row.get("downtime") is not None:
        split = ", ".join(f"{k} {v:.1f} s" for k, v in (row.get("timings") or {}).items())
        line += f"; downtime {float(row['downtime']):.1f} s ({split})"
    return escape(line)
