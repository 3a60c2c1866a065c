"""The plan graph: categories, legend, workload sizes, changes-only collapsing, clusters; and
the graph command on memory clouds, with a real Graphviz ``dot``."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tenantshift import cli
from tenantshift.errors import UsageError
from tenantshift.plans import Action, Change
from tenantshift.plans.render import plan_document
from tenantshift.views.plangraph import (
    CATEGORIES,
    STYLE,
    changes_only,
    networks_of,
    plan_graph,
    render_plan_dot,
)
from tests.cli_memory import run
from tests.plans.plans_data import full_plan

runner = CliRunner()


def change(address: str, action: str, depends_on: tuple[str, ...] = (), **extra: Any) -> dict:
    return {
        "address": address,
        "kind": address.split(".")[0],
        "action": action,
        "reason": extra.pop("reason", None),
        "detail": "",
        "depends_on": list(depends_on),
        **extra,
    }


def full_document() -> dict[str, Any]:
    plan = full_plan()
    migrate = Change(
        address="volume.data",
        kind="volume",
        action=Action.MIGRATE,
        after={"name": "data", "size": 2},
        bytes_to_move=2 * 2**30,
    )
    return plan_document(plan.model_copy(update={"changes": [*plan.changes, migrate]}))


def node_attrs(dot: str, address: str) -> str:
    line = next(x for x in dot.splitlines() if x.strip().startswith(f'"{address}" ['))
    return line


def test_every_change_is_a_node_styled_by_its_action() -> None:
    document = full_document()
    graph = plan_graph(document)
    assert set(graph) == {c["address"] for c in document["changes"]}
    seen = {graph.nodes[n]["category"] for n in graph}
    assert seen == set(CATEGORIES), seen
    dot = render_plan_dot(graph)
    for c in document["changes"]:
        category = graph.nodes[c["address"]]["category"]
        fill, border, shape, _, _ = STYLE[category]
        assert f'color="{border}"' in node_attrs(dot, c["address"])
        attrs = node_attrs(dot, c["address"])
        assert f'shape="{shape}"' in attrs and f'fillcolor="{fill}"' in attrs, attrs
    blocked = [c for c in document["changes"] if (c["reason"] or "").startswith("blocked_")]
    assert blocked and all('shape="octagon"' in node_attrs(dot, c["address"]) for c in blocked)
    assert "2.0 GiB to move" in node_attrs(dot, "volume.data")
    # The legend names all seven categories, each in its own style.
    for name in CATEGORIES:
        assert f'shape="{STYLE[name][2]}"' in node_attrs(dot, f"legend:{name}")


def test_edges_follow_depends_on() -> None:
    document = full_document()
    graph = plan_graph(document)
    for c in document["changes"]:
        for dependency in c["depends_on"]:
            assert graph.has_edge(dependency, c["address"])
    assert graph.number_of_edges() == sum(len(c["depends_on"]) for c in document["changes"])


def test_changes_only_collapses_no_ops_transitively() -> None:
    document = {
        "changes": [
            change("network.a", "create"),
            change("subnet.a/n1", "no-op", ("network.a",)),
            change("port.n2", "no-op", ("subnet.a/n1",)),
            change("server.b", "update", ("port.n2",)),
            change("keypair.c", "create", ("network.a",)),
            change("keypair.z", "no-op"),
        ]
    }
    shown = changes_only(plan_graph(document))
    assert set(shown) == {"network.a", "server.b", "keypair.c"}
    assert shown.edges["network.a", "server.b"]["collapsed"] is True
    assert shown.edges["network.a", "keypair.c"]["collapsed"] is False
    dot = render_plan_dot(shown)
    assert '"network.a" -> "server.b" [style=dashed' in dot
    assert "subnet.a/n1" not in dot and "keypair.z" not in dot


def test_a_big_tenant_with_few_changes_shows_only_them() -> None:
    chain = [change("network.n0", "no-op")]
    chain += [change(f"port.p{i}", "no-op", (f"network.n{i}",)) for i in range(2000)]
    chain += [change(f"network.n{i}", "no-op", (f"port.p{i - 1}",)) for i in range(1, 2000)]
    chain += [change("server.s", "migrate", ("port.p1999",), bytes_to_move=2**30)]
    chain += [change("network.top", "create")]
    chain[0] = change("network.n0", "create")
    shown = changes_only(plan_graph({"changes": chain}))
    assert set(shown) == {"network.n0", "server.s", "network.top"}
    assert shown.has_edge("network.n0", "server.s")


def test_clusters_by_kind_or_by_network() -> None:
    document = {
        "changes": [
            change("network.a", "create"),
            change("subnet.a/s", "create", ("network.a",)),
            change("port.p", "create", ("subnet.a/s", "network.a")),
            change("network.b", "no-op"),
            change("keypair.k", "create"),
        ]
    }
    graph = plan_graph(document)
    assert networks_of(graph) == {
        "network.a": "network.a",
        "subnet.a/s": "network.a",
        "port.p": "network.a",
        "network.b": "network.b",
    }
    by_network = render_plan_dot(graph, cluster="network", legend=False)
    clusters = by_network.split("subgraph cluster_")[1:]
    assert len(clusters) == 2
    (network_a,) = [c for c in clusters if 'label="network.a"' in c]
    assert all(f'"{a}" [' in network_a for a in ("network.a", "subnet.a/s", "port.p"))
    by_kind = render_plan_dot(graph, cluster="kind", legend=False)
    assert by_kind.count("subgraph cluster_") == 4
    assert "subgraph" not in render_plan_dot(graph, cluster="none", legend=False)
    with pytest.raises(UsageError, match="--cluster"):
        render_plan_dot(graph, cluster="color")


def test_labels_with_quotes_stay_valid_dot() -> None:
    graph = plan_graph({"changes": [change('keypair.a"b\\c', "create")]})
    assert '"keypair.a\\"b\\\\c" [' in render_plan_dot(graph)


# -- the command, on memory clouds ---------------------------------------------------------


def test_graph_prints_dot_and_changes_only(manifest: Path, clouds: dict) -> None:
    code, out = run("graph", "-m", str(manifest))
    assert code == 0, out
    assert out.startswith("digraph plan {") and 'shape="box"' in out
    assert "network.net-00" in out and "cluster_legend" in out
    # After the apply, a renamed network is the only change: one node (and the legend).
    assert run("apply", "-m", str(manifest), "--auto-approve")[0] == 0
    net = next(r for r in clouds["source"].snapshot().resources.values() if r.kind == "network")
    clouds["source"].update("network", str(net.id), {"description": "changed"})
    code, out = run("graph", "-m", str(manifest), "--changes-only", "--cluster", "none")
    assert code == 0, out
    nodes = [x for x in out.splitlines() if x.startswith('    "') and "legend:" not in x]
    assert len(nodes) == 1 and net.address in nodes[0] and 'style="filled,rounded"' in nodes[0]


def test_graph_writes_svg_and_png_with_graphviz(
    manifest: Path,
    clouds: dict,
    tmp_path: Path,
    graphviz_dot: str,
) -> None:
    plan_file = tmp_path / "p.plan"
    assert run("plan", "-m", str(manifest), "-o", str(plan_file))[0] == 0
    svg = tmp_path / "plan.svg"
    code, out = run("graph", str(plan_file), "-o", str(svg))
    assert code == 0, out
    root = ET.fromstring(svg.read_text())
    ns = {"s": "http://www.w3.org/2000/svg"}
    titles = {t.text for t in root.iterfind(".//s:g[@class='node']/s:title", ns)}
    addresses = {c["address"] for c in json.loads(plan_file.read_text())["changes"]}
    assert addresses <= titles
    assert {f"legend:{name}" for name in CATEGORIES} <= titles
    fills = {p.get("fill") for p in root.iterfind(".//s:g[@class='node']//s:polygon", ns)}
    assert STYLE["create"][0] in fills
    png = tmp_path / "plan.png"
    assert run("graph", str(plan_file), "-o", str(png), "--cluster", "network")[0] == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dot = tmp_path / "plan.dot"
    assert run("graph", str(plan_file), "-o", str(dot))[0] == 0
    assert dot.read_text().startswith("digraph plan {")


def test_graph_without_graphviz_prints_dot_and_a_hint(
    manifest: Path,
    clouds: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = runner.invoke(cli.app, ["graph", "-m", str(manifest), "-o", str(tmp_path / "p.svg")])
    assert result.exit_code == 1
    assert result.stdout.startswith("digraph plan {")
    assert "apt-get install graphviz" in result.stderr
    assert not (tmp_path / "p.svg").exists()


def test_graph_refuses_an_unknown_picture_format(manifest: Path, clouds: dict) -> None:
    code, out = run("graph", "-m", str(manifest), "-o", "plan.jpeg")
    assert code == 1 and "by its suffix" in out
