"""Imports point one way: a layer never imports a layer above it, the package-root helpers
(errors, canonical JSON, file writing) import no layer, and the conversion host agent imports
nothing of ours."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tenantshift"

#: Lowest first. A module may import its own layer and any layer with a smaller rank.
LAYERS = {
    "manifest": 0,
    "resources": 1,
    "providers": 2,
    "plans": 2,
    "engine": 3,
    "transfer": 3,
    "views": 4,
    "cli": 5,
}


#: Package-root modules every layer may import: they import no layer (only each other).
ROOT = {"canonical", "errors", "faults", "fileio"}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "tenantshift" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    relative = path.relative_to(PACKAGE)
    own = relative.parts[0].removesuffix(".py")
    if own not in LAYERS:
        return  # package root: __init__.py
    rank = LAYERS[own]
    upward = [
        module
        for module in imports_of(path)
        if (layer := layer_of(module)) is not None and LAYERS[layer] > rank
    ]
    assert not upward, f"{relative} ({own}) imports a higher layer: {upward}"


def test_plans_and_providers_do_not_import_each_other() -> None:
    for own, other in (("plans", "providers"), ("providers", "plans")):
        for path in (PACKAGE / own).rglob("*.py"):
            bad = [m for m in imports_of(path) if layer_of(m) == other]
            assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


def test_the_scan_sees_every_layer() -> None:
    seen = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in MODULES}
    assert set(LAYERS) <= seen


def test_conversion_host_deployment_reaches_the_cloud_only_through_the_provider() -> None:
    """engine/convhosts depends on the ConversionHostOps protocol, never on openstacksdk or the
    OpenStack provider's modules (the one way to the cloud is the provider's Caller)."""
    for path in (PACKAGE / "engine" / "convhosts").rglob("*.py"):
        bad = [
            m
            for m in imports_of(path)
            if m.split(".")[0] in ("openstack", "keystoneauth1")
            or m.startswith("tenantshift.providers.openstack")
        ]
        assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


@pytest.mark.parametrize("name", sorted(ROOT))
def test_package_root_modules_import_no_layer(name: str) -> None:
    ours = [m for m in imports_of(PACKAGE / f"{name}.py") if m.startswith("tenantshift")]
    assert all(m.removeprefix("tenantshift.") in ROOT for m in ours), f"{name}.py imports {ours}"


def test_the_agent_imports_nothing_of_ours() -> None:
    # The agent runs on the conversion hosts from a zip of its own directory: an import of
    # tenantshift (tenantshift.errors included) would fail there, not here.
    agent = PACKAGE / "transfer" / "agent"
    for path in agent.rglob("*.py"):
        ours = [m for m in imports_of(path) if m.split(".")[0] == "tenantshift"]
        # A relative import that climbs out of the agent's own package (``from .. import``).
        climbs = len(path.relative_to(agent).parts)
        ours += [
            f"{'.' * node.level}{node.module or ''}"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.level > climbs
        ]
        assert not ours, f"{path.relative_to(PACKAGE)} imports {ours}"


#: The engine's own rooms, lowest first: a subpackage (or top-level engine module) may import
#: its own room and any room of a smaller rank.
ENGINE = {
    "state": 0,  # journal, apply lock, temporary kinds
    "connect": 0,  # providers from a manifest's cloud references
    "walk": 1,  # the apply graph, its walker, the executor, the context
    "workloads": 2,  # migrations, their plan-time checks, temporaries' undo
    "convhosts": 2,  # conversion host deployment
    "planning": 3,
    "apply": 3,
    "report": 3,
    "commands": 4,
}


def engine_room(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["tenantshift", "engine"] or len(parts) < 3:
        return None
    return parts[2]


ENGINE_MODULES = sorted(p for p in (PACKAGE / "engine").rglob("*.py") if p.name != "__init__.py")


def test_every_engine_room_has_a_rank() -> None:
    rooms = {p.relative_to(PACKAGE / "engine").parts[0].removesuffix(".py") for p in ENGINE_MODULES}
    assert rooms == set(ENGINE)


@pytest.mark.parametrize(
    "path", ENGINE_MODULES, ids=lambda p: str(p.relative_to(PACKAGE / "engine"))
)
def test_engine_rooms_import_down(path: Path) -> None:
    own = path.relative_to(PACKAGE / "engine").parts[0].removesuffix(".py")
    upward = [
        m
        for m in imports_of(path)
        if (room := engine_room(m)) is not None and room != own and ENGINE[room] >= ENGINE[own]
    ]
    assert not upward, f"engine/{own} imports a room of its rank or above: {upward}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_imports_one_that_imports_it_back() -> None:
    """Every import counts, inside a function or under TYPE_CHECKING too: a circle held apart
    only at run time is still a circle a reader has to untangle."""
    names = {module_name(p): p for p in MODULES}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names} & set(names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from package import submodule`` imports the submodule; a name that is not
                # a submodule comes from the module itself.
                subs = {f"{node.module}.{a.name}" for a in node.names}
                targets |= subs & set(names)
                if node.module in names and not subs <= set(names):
                    targets.add(node.module)
        graph[name] = targets - {name}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import circles:\n" + "\n".join(cycles)
