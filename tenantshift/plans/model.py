"""What a plan is made of. The JSON form of these models is the documented contract
(docs/plan-format.md); the human view is rendered from the same objects."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

PLAN_FORMAT_VERSION = 1


class Action(StrEnum):
    NOOP = "no-op"
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    MIGRATE = "migrate"

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]


_SYMBOLS = {
    Action.NOOP: " ",
    Action.CREATE: "+",
    Action.UPDATE: "~",
    Action.REPLACE: "-/+",
    Action.DELETE: "-",
    Action.MIGRATE: ">",
}


class Reason(StrEnum):
    """Why a change is what it is; ``blocked_*`` reasons mean apply will not run it."""

    IMMUTABLE_FIELD = "immutable_field"
    DEPENDENCY_REPLACED = "dependency_replaced"
    AUTO_CREATED = "auto_created"
    NOT_IN_SOURCE = "not_in_source"
    PRUNE = "prune"
    ADOPT = "adopt"
    BLOCKED_PREREQUISITE = "blocked_prerequisite"
    BLOCKED_QUOTA = "blocked_quota"
    BLOCKED_IN_USE = "blocked_in_use"
    BLOCKED_SHRINK = "blocked_shrink"
    BLOCKED_IMMUTABLE = "blocked_immutable"
    RESUME = "resume"

    @property
    def blocks(self) -> bool:
        return self.value.startswith("blocked_")


class FieldChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str
    before: Any = None
    after: Any = None
    #: This field cannot change in place.
    forces_replacement: bool = False


class Change(BaseModel):
    """The plan for one address. Invariants: ``before`` is None exactly for creates, ``after``
    exactly for deletes; ``target_id`` is the destination id when the resource exists there."""

    model_config = ConfigDict(frozen=True)

    address: str
    kind: str
    action: Action
    reason: Reason | None = None
    detail: str = ""
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    fields: list[FieldChange] = []
    #: Addresses of the desired resources this one references (graph edges).
    depends_on: list[str] = []
    source_id: str | None = None
    target_id: str | None = None
    #: Address of the destination resource this change acts on, when it differs (a rename).
    target_address: str | None = None
    #: For a migrate: the logical bytes its disks hold (what the copies read), when known.
    bytes_to_move: int | None = None
    #: For a migrate through the conversion hosts: the pair its copies are planned on (the
    #: engine's largest-first schedule; at apply a free pair takes it when this one is busy).
    conversion_pair: str | None = None
    #: For a warm server migration: ``sync`` (copy while the source runs; the destination
    #: server is not made) or ``cutover`` (stop, the last changes, boot). None: cold.
    warm: Literal["sync", "cutover"] | None = None

    @property
    def blocked(self) -> bool:
        return self.reason is not None and self.reason.blocks


class Fingerprint(BaseModel):
    """What a snapshot looked like when the plan was made: a digest and one per address."""

    model_config = ConfigDict(frozen=True)

    digest: str
    resources: dict[str, str] = {}


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True)

    format_version: int = PLAN_FORMAT_VERSION
    tool_version: str
    created_at: str
    manifest_path: str
    manifest_hash: str
    source: Fingerprint
    destination: Fingerprint
    changes: list[Change]
    warnings: list[str] = []
    targets: list[str] = []

    def summary(self) -> dict[str, int]:
        counts = {a.value: 0 for a in Action}
        counts["blocked"] = 0
        for change in self.changes:
            counts[change.action.value] += 1
            if change.blocked:
                counts["blocked"] += 1
        return counts

    @property
    def has_changes(self) -> bool:
        return any(c.action is not Action.NOOP for c in self.changes)

    def by_address(self) -> dict[str, Change]:
        return {c.address: c for c in self.changes}
