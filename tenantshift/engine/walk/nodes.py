"""Typed apply nodes: what the walker runs.

Every node has an ``id`` (graph node and journal key), the ``Change`` it serves, a resource
class that says which concurrency bound it takes. Nodes are data: ``engine/apply.py`` decides
what runs each class (Terraform's walker asks vertices to run and knows nothing of them), so
this package never imports the workloads it schedules. The kind of work decides the class,
not a string suffix looked up in a table:

- ``ResourceNode``: one short API step on one resource (create, update, destroy, late, unlate);
  bounded by ``options.parallelism`` (``Limits.api``).
- ``WorkloadNode``: a long, resumable, multi-step migration (volumes, servers); bounded by
  ``options.copy_parallelism`` per conversion host pair (``Limits.copies``), so hours of
  copying never hold the slots of short API work.
- ``CleanupNode``: runs after its workload whatever happened to it (Terraform's tolerant
  vertex): it removes the temporaries the workload journaled and restores the source.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from tenantshift.plans import Action, Change
from tenantshift.resources import REGISTRY


class ResourceClass(StrEnum):
    """Which semaphore a node holds while it runs."""

    API = "api"
    COPY = "copy"


class Step(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DESTROY = "destroy"
    LATE = "late"
    UNLATE = "unlate"
    MIGRATE = "migrate"
    CLEANUP = "cleanup"


@dataclass(frozen=True)
class Node:
    """One unit of work on one address."""

    change: Change
    step: Step

    resource_class: ClassVar[ResourceClass] = ResourceClass.API
    #: Runs even when something upstream failed (cleanup-like work).
    always_run: ClassVar[bool] = False

    @property
    def id(self) -> str:
        return self.change.address

    @property
    def serial_key(self) -> str | None:
        """What this node takes turns on with the nodes naming the same key (the walker runs
        one of them at a time): the address its kind's ``serial_by`` reference names (a router
        interface's router); None for a kind that declares none."""
        if self.change.kind not in REGISTRY:
            return None
        serial_by = REGISTRY[self.change.kind].serial_by
        if serial_by is None:
            return None
        # A destroy acts on what exists (``before``, its references translated to the desired
        # addresses where matched), every other step on what is wanted.
        change = self.change
        params = (change.before if self.step is Step.DESTROY else change.after) or (
            change.after or change.before or {}
        )
        value = params.get(serial_by)
        return str(value) if value is not None else None


@dataclass(frozen=True)
class ResourceNode(Node):
    """A create/update/destroy/late/unlate step, run in the context's thread pool."""

    @property
    def id(self) -> str:
        if self.step is Step.UNLATE or (
            self.step in (Step.DESTROY, Step.LATE) and self.change.action is not Action.DELETE
        ):
            return f"{self.change.address}#{self.step.value}"
        return self.change.address


@dataclass(frozen=True)
class WorkloadNode(Node):
    """Migrate one workload (a volume, a server with its volumes): a journaled state machine."""

    resource_class: ClassVar[ResourceClass] = ResourceClass.COPY


@dataclass(frozen=True)
class CleanupNode(Node):
    """Sweep what the workload node left (its journaled temporaries), success or failure."""

    always_run: ClassVar[bool] = True

    @property
    def id(self) -> str:
        return f"{self.change.address}#cleanup"


def nodes_for(change: Change) -> list[Node]:
    """The nodes one change becomes (late ones are added by the graph builder). Raises on an
    action nothing maps, so a new action can never be dropped silently again."""
    if change.action is Action.NOOP:
        return []
    if change.action is Action.CREATE:
        return [ResourceNode(change, Step.CREATE)]
    if change.action is Action.UPDATE:
        return [ResourceNode(change, Step.UPDATE)]
    if change.action is Action.REPLACE:
        return [ResourceNode(change, Step.DESTROY), ResourceNode(change, Step.CREATE)]
    if change.action is Action.DELETE:
        return [ResourceNode(change, Step.DESTROY)]
    if change.action is Action.MIGRATE:
        return [WorkloadNode(change, Step.MIGRATE), CleanupNode(change, Step.CLEANUP)]
    raise ValueError(f"{change.address}: no apply node for action {str(change.action)!r}")
