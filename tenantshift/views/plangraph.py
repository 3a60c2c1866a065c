"""The plan as a graph people look at: one node per address, coloured and shaped by its action.

Made from the JSON plan document (the contract), so ``graph`` and ``report`` show exactly what
``plan --json`` holds: nodes are the plan's changes (no-ops included), edges its ``depends_on``
(from a prerequisite to what references it). ``changes_only`` hides the no-ops and collapses
their edges transitively (A -> no-op -> B becomes A -> B), so a large tenant with a few changes
shows a few nodes and what they need.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import networkx as nx

from tenantshift.errors import UsageError

#: Node categories: a blocked change is shown as blocked whatever its action.
CATEGORIES = ("create", "update", "replace", "delete", "migrate", "no-op", "blocked")

#: Per category: (fill, border, shape, extra style, symbol). Shapes differ as well as colours,
#: so the graph still reads in greyscale print-outs and for colour-blind reviewers.
STYLE: dict[str, tuple[str, str, str, str, str]] = {
    "create": ("#d7f5d7", "#2e7d32", "box", "", "+"),
    "update": ("#fff1bf", "#a07800", "box", "rounded", "~"),
    "replace": ("#f3d6f5", "#8e24aa", "hexagon", "", "-/+"),
    "delete": ("#fbd5d5", "#c62828", "box", "dashed", "-"),
    "migrate": ("#cdeefb", "#0277bd", "cylinder", "", ">"),
    "no-op": ("#f0f0f0", "#9e9e9e", "ellipse", "", ""),
    "blocked": ("#ffc9c9", "#b71c1c", "octagon", "bold", "!"),
}

CLUSTERS = ("kind", "network", "none")


def category(change: dict[str, Any]) -> str:
    reason = change.get("reason") or ""
    return "blocked" if reason.startswith("blocked_") else str(change["action"])


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def workload_size(change: dict[str, Any]) -> str:
    """What a migrate moves, for its label (the plan's ``bytes_to_move``)."""
    moves = change.get("bytes_to_move")
    return f"{human_bytes(int(moves))} to move" if moves is not None else ""


def plan_graph(document: dict[str, Any]) -> nx.DiGraph:
    graph: nx.DiGraph = nx.DiGraph()
    for change in document["changes"]:
        graph.add_node(
            change["address"],
            category=category(change),
            kind=change["kind"],
            size=workload_size(change),
            detail=change.get("detail") or "",
        )
    for change in document["changes"]:
        for dependency in change.get("depends_on") or []:
            if dependency in graph:
                graph.add_edge(dependency, change["address"], collapsed=False)
    return graph


def changes_only(graph: nx.DiGraph) -> nx.DiGraph:
    """Without no-ops; an edge that went through no-ops joins its two changed ends (dashed)."""
    keep = [n for n, data in graph.nodes(data=True) if data["category"] != "no-op"]
    out: nx.DiGraph = nx.DiGraph()
    out.add_nodes_from((n, graph.nodes[n]) for n in keep)
    for node in keep:
        queue = deque(graph.successors(node))
        seen: set[str] = set()
        while queue:
            nxt = queue.popleft()
            if nxt in seen:
                continue
            seen.add(nxt)
            if graph.nodes[nxt]["category"] != "no-op":
                direct = graph.has_edge(node, nxt)
                if not out.has_edge(node, nxt) or direct:
                    out.add_edge(node, nxt, collapsed=not direct)
            else:
                queue.extend(graph.successors(nxt))
    return out


def networks_of(graph: nx.DiGraph) -> dict[str, str]:
    """Address -> the network it belongs to: itself for a network, else the first network
    reached by following its references (a port's network, an interface's subnet's network)."""
    out: dict[str, str] = {}
    for node in graph:
        if graph.nodes[node]["kind"] == "network":
            out[node] = node
            continue
        found = sorted(a for a in nx.ancestors(graph, node) if graph.nodes[a]["kind"] == "network")
        if found:
            # The nearest network: the one with the shortest reference path.
            found.sort(key=lambda a: nx.shortest_path_length(graph, a, node))
            out[node] = found[0]
    return out


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _node_line(node: str, data: dict[str, Any], label: str | None = None) -> str:
    fill, border, shape, extra, symbol = STYLE[data["category"]]
    if label is None:
        label = f"{symbol} {node}".strip()
        if data.get("size"):
            label += f"\n{data['size']}"
    style = ",".join(s for s in ("filled", extra) if s)
    attrs = {
        "label": label,
        "shape": shape,
        "style": style,
        "fillcolor": fill,
        "color": border,
        "tooltip": f"{data['category']}: {data.get('detail') or node}",
    }
    if data["category"] == "no-op":
        attrs["fontcolor"] = "#666666"
    body = ", ".join(f"{k}={_quote(v)}" for k, v in attrs.items())
    return f"    {_quote(node)} [{body}];"


def _legend() -> list[str]:
    lines = [
        "  subgraph cluster_legend {",
        '    label="Legend"; fontsize=11; style="rounded"; color="#bbbbbb";',
    ]
    previous = None
    for name in CATEGORIES:
        symbol = STYLE[name][4]
        text = f"{symbol} {name}" if symbol else name
        lines.append(_node_line(f"legend:{name}", {"category": name, "detail": name}, text))
        if previous is not None:
            lines.append(f"    {_quote(previous)} -> {_quote(f'legend:{name}')} [style=invis];")
        previous = f"legend:{name}"
    lines.append("  }")
    return lines


def render_plan_dot(
    graph: nx.DiGraph, *, cluster: str = "kind", title: str = "", legend: bool = True
) -> str:
    """DOT of a plan graph: nodes in one cluster per kind (or per network, or none), collapsed
    edges dashed, and a legend of the seven categories."""
    if cluster not in CLUSTERS:
        raise UsageError(f"--cluster is one of {', '.join(CLUSTERS)}, not {cluster!r}")
    lines = [
        "digraph plan {",
        "  rankdir=LR; newrank=true; compound=true;",
        '  graph [fontname="Helvetica", fontsize=12];',
        '  node [fontname="Helvetica", fontsize=10, penwidth=1.4];',
        '  edge [color="#777777", arrowsize=0.7];',
    ]
    if title:
        lines.append(f'  labelloc="t"; label={_quote(title)};')
    groups: dict[str, list[str]] = {}
    if cluster == "kind":
        for node in graph:
            groups.setdefault(graph.nodes[node]["kind"], []).append(node)
    elif cluster == "network":
        owner = networks_of(graph)
        for node in graph:
            groups.setdefault(owner.get(node, ""), []).append(node)
    else:
        groups[""] = list(graph)
    for index, (name, members) in enumerate(sorted(groups.items())):
        if name:
            lines.append(f"  subgraph cluster_{index} {{")
            lines.append(f'    label={_quote(name)}; style="rounded"; color="#cccccc";')
        lines += [_node_line(n, graph.nodes[n]) for n in sorted(members)]
        if name:
            lines.append("  }")
    for a, b, data in sorted(graph.edges(data=True)):
        extra = (
            ' [style=dashed, tooltip="through unchanged resources"]'
            if data.get("collapsed")
            else ""
        )
        lines.append(f"  {_quote(a)} -> {_quote(b)}{extra};")
    if legend:
        lines += _legend()
    return "\n".join([*lines, "}"]) + "\n"
