"""The apply graph, built from the plan and only from the plan (apply touches what it showed).

Built by a short list of small steps, Terraform-style:

1. one node per change that does something (no-ops only lend their destination ids);
2. a replacement splits into ``destroy`` then ``create``, delete-before-create;
3. references become edges: a resource after what it references;
4. destruction runs in reverse: a resource is destroyed only after whatever referenced it;
5. late fields (router routes) get a node after everything that references the resource;
6. and an ``unlate`` node before anything that references it is destroyed: Neutron keeps a
   router interface while a static route goes through it, so the routes that are not staying
   leave the router first.
"""

from __future__ import annotations

from collections import defaultdict

import networkx as nx

from tenantshift.engine.walk.nodes import Node, ResourceNode, Step, nodes_for
from tenantshift.errors import TenantshiftError
from tenantshift.plans import Action, Change, Plan
from tenantshift.resources import REGISTRY


class GraphCycleError(TenantshiftError):
    def __init__(self, cycle: list[str]) -> None:
        super().__init__("dependency cycle: " + " -> ".join([*cycle, cycle[0]]))
        self.cycle = cycle


def build_graph(plan: Plan) -> nx.DiGraph:
    """Edges point from a prerequisite to what waits for it."""
    graph: nx.DiGraph = nx.DiGraph()
    changes = [c for c in plan.changes if c.action is not Action.NOOP]
    builders: dict[str, Node] = {}  # address -> node that makes the desired resource exist
    destroyers: dict[str, Node] = {}  # destination address -> node that destroys it

    for change in changes:
        for node in _nodes_for(change):
            graph.add_node(node.id, node=node)
            if node.step in (Step.CREATE, Step.UPDATE, Step.MIGRATE):
                builders[change.address] = node
            elif node.step is Step.DESTROY:
                destroyers[change.target_address or change.address] = node

    for change in changes:
        if change.action is Action.MIGRATE:
            graph.add_edge(builders[change.address].id, f"{change.address}#cleanup")
        if change.address in builders and change.action is Action.REPLACE:
            graph.add_edge(f"{change.address}#destroy", change.address)
        for dependency in change.depends_on:
            if dependency in builders and change.address in builders:
                graph.add_edge(builders[dependency].id, builders[change.address].id)
            made_by_parent = change.action is Action.DELETE or (
                change.action is Action.REPLACE and change.target_id is None
            )
            if made_by_parent and dependency in builders:
                # A child the cloud makes with its parent can only be deleted after the parent.
                graph.add_edge(builders[dependency].id, destroyers_key(change))

    _destroy_in_reverse(plan, graph, destroyers)
    _late_after_referrers(plan, graph, builders)
    _unlate_before_referrers_go(changes, graph, destroyers)

    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return graph
    raise GraphCycleError([edge[0] for edge in cycle])


def destroyers_key(change: Change) -> str:
    return ResourceNode(change, Step.DESTROY).id


def _nodes_for(change: Change) -> list[Node]:
    nodes = nodes_for(change)
    kind = REGISTRY[change.kind]
    late = [f.name for f in kind.fields if f.late]
    if late and change.action is not Action.DELETE:
        touched = {fc.field for fc in change.fields}
        after = change.after or {}
        wants_late = any(after.get(f) not in (None, kind.field(f).default) for f in late)
        if (change.action is Action.UPDATE and touched & set(late)) or (
            change.action in (Action.CREATE, Action.REPLACE) and wants_late
        ):
            nodes.append(ResourceNode(change, Step.LATE))
    return nodes


def _destroy_in_reverse(plan: Plan, graph: nx.DiGraph, destroyers: dict[str, Node]) -> None:
    """A destination resource is destroyed after everything that referenced it is destroyed."""
    # ``before`` holds references rewritten to desired addresses: map back through the plan.
    # An index, not a scan of the plan per reference: a teardown of thousands of resources
    # was quadratic here (minutes at 4,000).
    target_of = {c.address: c.target_address for c in plan.changes if c.target_address}
    for node in destroyers.values():
        before = node.change.before or {}
        kind = REGISTRY[node.change.kind]
        for _, target in kind.references(before):
            for address in (target, target_of.get(target)):
                if address in destroyers and destroyers[address].id != node.id:
                    graph.add_edge(node.id, destroyers[address].id)


def _late_after_referrers(plan: Plan, graph: nx.DiGraph, builders: dict[str, Node]) -> None:
    referrers: dict[str, list[str]] = defaultdict(list)  # address -> what depends on it
    for change in plan.changes:
        for dependency in change.depends_on:
            referrers[dependency].append(change.address)
    for node_id, data in list(graph.nodes(data=True)):
        node: Node = data["node"]
        if node.step is not Step.LATE:
            continue
        address = node.change.address
        if address in builders:
            graph.add_edge(builders[address].id, node_id)
        for referrer in referrers.get(address, ()):
            if referrer in builders:
                graph.add_edge(builders[referrer].id, node_id)


def _unlate_before_referrers_go(
    changes: list[Change], graph: nx.DiGraph, destroyers: dict[str, Node]
) -> None:
    """A resource with late fields whose value goes away (an update of them, or its destruction)
    sheds what is not staying before anything referencing it is destroyed."""
    destroying: dict[str, list[Node]] = defaultdict(list)  # address -> destroyers referencing it
    for node in destroyers.values():
        before = node.change.before or {}
        for value in {v for _, v in REGISTRY[node.change.kind].references(before)}:
            destroying[value].append(node)
    for change in changes:
        kind = REGISTRY[change.kind]
        late = {f.name for f in kind.fields if f.late}
        if not late or change.target_id is None:
            continue
        touched = {fc.field for fc in change.fields}
        if change.action is Action.UPDATE and not touched & late:
            continue
        if change.action not in (Action.UPDATE, Action.REPLACE, Action.DELETE):
            continue
        itself = [change.address, change.target_address]
        referrers = list(
            {
                node.id: node
                for address in itself
                if address is not None
                for node in destroying.get(address, ())
                if node.change.address != change.address
            }.values()
        )
        if not referrers:
            continue
        unlate = ResourceNode(change, Step.UNLATE)
        graph.add_node(unlate.id, node=unlate)
        for node in referrers:
            graph.add_edge(unlate.id, node.id)
        late_id = ResourceNode(change, Step.LATE).id
        if late_id in graph and late_id != unlate.id:
            graph.add_edge(unlate.id, late_id)
