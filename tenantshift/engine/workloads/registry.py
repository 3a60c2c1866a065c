"""Which migration moves each workload kind, and what every migration module shares below
the migrations themselves (their error, each side's workload verbs).

The registry holds classes by what the rest of the engine needs of them (``MigrationKind``):
the plan's checks read their plan-time class methods, ``temporaries`` their phases, apply
runs them. It imports no migration, so nothing here imports back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from tenantshift.engine.state.temporary import Temporary
from tenantshift.errors import TenantshiftError
from tenantshift.manifest import Workloads
from tenantshift.plans import Change
from tenantshift.providers.workload import WorkloadVerbs
from tenantshift.resources import REGISTRY

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from tenantshift.engine.walk.context import ApplyContext
    from tenantshift.engine.walk.nodes import Node

Cloud = str  # "source" | "destination"
#: (cloud, quota name) -> amount: what one migration consumes.
Needs = dict[tuple[str, str], int]
Info = dict[str, Any]
Sizes = dict[str | None, int]


class WorkloadError(TenantshiftError):
    pass


class Runnable(Protocol):
    def run(self) -> Awaitable[str]: ...


class MigrationKind(Protocol):
    """A migration class, as the engine outside ``workloads`` sees it."""

    kind: ClassVar[str]
    PHASES: ClassVar[tuple[str, ...]]
    NEEDS_HOSTS: ClassVar[bool]
    WARM: ClassVar[bool]
    MADE_IN: ClassVar[dict[Temporary, str]]

    def __call__(self, ctx: ApplyContext, node: Node) -> Runnable: ...

    def needs(self, change: Change, info: Info, sizes: Sizes) -> Needs: ...

    def gib_to_move(self, change: Change, info: Info, sizes: Sizes) -> int: ...

    def describe(self, change: Change, info: Info) -> str: ...

    def source_problem(
        self, info: Info, workloads: Workloads, warm: str | None = None
    ) -> str | None: ...


C = TypeVar("C", bound=Callable[..., Any])

#: kind -> its migration, one per kind declared ``workload=True`` (a test checks).
MIGRATIONS: dict[str, MigrationKind] = {}


def register_migration(cls: C) -> C:
    """Class decorator: ``cls`` migrates the workload kind ``cls.kind``."""
    name = str(getattr(cls, "kind", ""))
    if name not in REGISTRY or not REGISTRY[name].workload:
        raise ValueError(f"{cls.__name__}: kind {name!r} is not a workload kind")
    if name in MIGRATIONS:
        raise ValueError(f"kind {name!r} has two migrations")
    MIGRATIONS[name] = cls  # type: ignore[assignment]
    return cls


def verbs_of(ctx: ApplyContext, cloud: Cloud, what: str) -> WorkloadVerbs:
    """One side's workload verbs, or a clear error (a snapshot file has none)."""
    provider = ctx.source if cloud == "source" else ctx.destination
    if provider is None:
        raise WorkloadError(f"migrating {what} needs the {cloud} cloud, and apply has none")
    if provider.workloads is None:
        raise WorkloadError(f"{provider.label}: this provider cannot move {what}")
    return provider.workloads
