"""The human plan view: Terraform's layout in rich markup, made from the JSON document."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape

from tenantshift.manifest import DEFAULT_PAIR
from tenantshift.plans import Action

_VERB = {
    "create": "will be created",
    "update": "will be updated in place",
    "replace": "must be replaced",
    "delete": "will be destroyed",
    "migrate": "will be migrated",
}
_STYLE = {
    "create": "green",
    "update": "yellow",
    "replace": "magenta",
    "delete": "red",
    "migrate": "cyan",
}
_SYMBOL = {a.value: a.symbol for a in Action}


def _value(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def render_human(document: dict[str, Any], *, verbose: bool = False) -> str:
    """Rich markup, Terraform's layout: one block per change, then the summary line."""
    lines: list[str] = []
    changes = [c for c in document["changes"] if c["action"] != "no-op"]
    for warning in document.get("warnings", []):
        lines.append(f"[yellow]Warning:[/] {escape(warning)}")
    if document.get("warnings"):
        lines.append("")
    if not changes:
        lines.append("[green]No changes.[/] The destination matches the source selection.")
    else:
        lines.append("tenantshift will perform the following actions:")
        lines.append("")
    for change in changes:
        lines.extend(_block(change))
    if verbose:
        for change in document["changes"]:
            if change["action"] == "no-op" and change.get("reason"):
                lines.append(f"  # {escape(change['address'])}: {escape(change['detail'])}")
    lines.append(_summary(document["summary"]))
    return "\n".join(lines) + "\n"


def _block(change: dict[str, Any]) -> list[str]:
    action = change["action"]
    style = _STYLE[action]
    address = escape(change["address"])
    heading = f"  # {address} {_VERB[action]}"
    if change.get("reason", "") and change["reason"].startswith("blocked_"):
        heading = f"  # {address} [bold red]is blocked[/]: {escape(change['detail'])}"
    elif change.get("detail"):
        heading += f" ({escape(change['detail'])})"
    pair = change.get("conversion_pair")
    if pair and pair != DEFAULT_PAIR:  # a pool: which pair the copies are planned on
        heading += f" [cyan]on pair {escape(pair)}[/]"
    symbol = escape(_SYMBOL[action])
    out = [heading, f"[{style}]{symbol:>3}[/] {address}"]
    if action in ("create", "migrate"):
        for name, value in sorted((change.get("after") or {}).items()):
            if value not in (None, [], ""):
                out.append(f"      [green]+[/] {name} = {escape(_value(value))}")
    elif action in ("update", "replace"):
        for field in change.get("fields", []):
            forces = " [red]# forces replacement[/]" if field["forces_replacement"] else ""
            before, after = escape(_value(field["before"])), escape(_value(field["after"]))
            out.append(f"      [yellow]~[/] {field['field']} = {before} -> {after}{forces}")
    out.append("")
    return out


def _summary(summary: dict[str, int]) -> str:
    text = (
        f"[bold]Plan:[/] {summary['create']} to create, {summary['update']} to update, "
        f"{summary['replace']} to replace, {summary['delete']} to delete, "
        f"{summary['migrate']} to migrate, {summary['no-op']} unchanged."
    )
    if summary.get("blocked"):
        text += f" [bold red]{summary['blocked']} blocked.[/]"
    return text
