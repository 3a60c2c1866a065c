"""A plan graph as SVG without Graphviz: columns by dependency depth, one row per node.

Plainer than ``dot``'s layout, but it keeps the report self-contained and complete on a machine
without Graphviz (the HTML report always carries a graph).
"""

from __future__ import annotations

from html import escape

import networkx as nx

from tenantshift.views.plangraph import STYLE

_COLUMN = 300
_ROW = 40
_BOX_W = 270
_BOX_H = 28


def layered_svg(graph: nx.DiGraph) -> str:
    try:
        layers = [sorted(layer) for layer in nx.topological_generations(graph)]
    except nx.NetworkXUnfeasible:  # a cycle cannot be layered: one column
        layers = [sorted(graph)]
    where: dict[str, tuple[int, int]] = {}
    for column, layer in enumerate(layers):
        for row, node in enumerate(layer):
            where[node] = (20 + column * _COLUMN, 20 + row * _ROW)
    width = 40 + max(1, len(layers)) * _COLUMN
    height = 40 + max((len(layer) for layer in layers), default=1) * _ROW
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" '
        'font-size="11">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#777"/></marker>'
        "</defs>",
    ]
    for a, b, data in graph.edges(data=True):
        (x1, y1), (x2, y2) = where[a], where[b]
        dash = ' stroke-dasharray="5,3"' if data.get("collapsed") else ""
        parts.append(
            f'<line x1="{x1 + _BOX_W}" y1="{y1 + _BOX_H / 2}" x2="{x2}" y2="{y2 + _BOX_H / 2}" '
            f'stroke="#777"{dash} marker-end="url(#arrow)"/>'
        )
    for node, (x, y) in where.items():
        data = graph.nodes[node]
        fill, border, _, extra, symbol = STYLE[data["category"]]
        dash = ' stroke-dasharray="4,2"' if extra == "dashed" else ""
        rx = 12 if data["category"] in ("no-op", "update") else 2
        label = f"{symbol} {node}".strip()
        if data.get("size"):
            label += f" ({data['size']})"
        why = f": {data['detail']}" if data.get("detail") else ""
        parts.append(
            f'<g class="node" data-address="{escape(node)}">'
            f"<title>{escape(node)} ({escape(data['category'])}){escape(why)}</title>"
            f'<rect x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="{rx}" fill="{fill}" '
            f'stroke="{border}" stroke-width="1.4"{dash}/>'
            f'<text x="{x + 8}" y="{y + 18}">{escape(label[:46])}</text></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
