"""The apply graph as DOT."""

from __future__ import annotations

import networkx as nx


def render_dot(graph: nx.DiGraph) -> str:
    lines = ["digraph tenantshift {", "  rankdir=LR;"]
    lines += [f'  "{node}";' for node in sorted(graph.nodes)]
    lines += [f'  "{a}" -> "{b}";' for a, b in sorted(graph.edges)]
    return "\n".join([*lines, "}"]) + "\n"
