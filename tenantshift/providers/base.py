"""The Provider protocol: how the engine reads and writes one cloud project.

Providers speak *records* (see ``tenantshift.resources.base.Record``): declared field names,
references as ids of that cloud, external references as names. They translate their own
exceptions into ``ProviderError`` at this boundary, so no SDK traceback reaches the user.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tenantshift.errors import TenantshiftError
from tenantshift.resources import REGISTRY, Record, Snapshot
from tenantshift.resources.marker import same_source
from tenantshift.resources.snapshot import params_from_record

if TYPE_CHECKING:
    from tenantshift.providers.workload import WorkloadVerbs


class ProviderError(TenantshiftError):
    """A cloud call failed. ``call`` names the API call, ``detail`` is the cloud's own message."""

    def __init__(self, message: str, *, call: str | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.call = call
        self.retryable = retryable


class NotFoundError(ProviderError):
    pass


class ReadOnlyError(ProviderError):
    pass


@runtime_checkable
class Provider(Protocol):
    """One project of one cloud. Every write returns when the resource is ready (it waits)."""

    #: Who this is, for messages: a clouds.yaml name, a file name.
    label: str
    #: The workload kinds' verbs (attach, snapshot, boot...); None when this provider cannot
    #: move data (a snapshot file).
    workloads: WorkloadVerbs | None

    def snapshot(self) -> Snapshot:
        """Normalized state of the project: one list call per kind, never one GET per resource."""
        ...

    def get(self, kind: str, id: str) -> Record | None:
        """Re-read one resource (``None`` when it is gone)."""
        ...

    def find(self, kind: str, source_id: str | None, params: Mapping[str, Any]) -> Record | None:
        """Find what an earlier, interrupted run may have created: provenance first, then key."""
        ...

    def create(self, kind: str, params: Mapping[str, Any], source_id: str | None) -> Record:
        """Create and wait until usable, stamping ``source_id`` as the provenance marker."""
        ...

    def update(self, kind: str, id: str, changes: Mapping[str, Any]) -> Record:
        """Change only the given fields in place."""
        ...

    def delete(self, kind: str, id: str) -> None:
        """Delete and wait until gone; deleting what is already gone is not an error."""
        ...


def id_key(kind_name: str, params: Mapping[str, Any]) -> str:
    """A resource's key computed over ids instead of addresses: comparable within one cloud."""
    kind = REGISTRY[kind_name]
    return kind.key(params, lambda ref: str(ref))


#: Record key listing *every* provenance marker when a resource carries more than one (info
#: only; absent otherwise). Such a resource is claimed by two source resources: a conflict.
MARKERS_KEY = "provenance_markers"


def markers_of(record: Mapping[str, Any]) -> list[str]:
    """Every source id a record's resource is stamped with (usually none or one)."""
    several = record.get(MARKERS_KEY)
    if several:
        return sorted(str(m) for m in several)
    marker = record.get("provenance")
    return [str(marker)] if marker is not None else []


def find_in(
    records: Iterable[Record], kind_name: str, source_id: str | None, params: Mapping[str, Any]
) -> Record | None:
    """The generic matching rule every provider's ``find`` applies to its candidate records.

    Our marker first, then the key; never a resource that carries another source's marker (it
    is that source's copy, even if it has the same name), and never silently a resource that
    carries several markers: that is a ``ProviderError`` naming them.
    """
    candidates = list(records)
    kind = REGISTRY[kind_name]
    if source_id is not None and kind.provenance:
        for record in candidates:
            if any(same_source(m, source_id) for m in markers_of(record)):
                return _one_marker(kind_name, record, source_id)
    wanted = id_key(kind_name, params_from_record(kind, params))
    for record in candidates:
        if id_key(kind_name, params_from_record(kind, record)) == wanted:
            if kind.provenance and any(not same_source(m, source_id) for m in markers_of(record)):
                continue  # another source's copy that happens to share the name
            return record
    return None


def _one_marker(kind_name: str, record: Record, source_id: str) -> Record:
    markers = markers_of(record)
    if len(markers) > 1:
        raise ProviderError(
            f"{kind_name} {record.get('id')} in the destination carries the provenance markers "
            f"of {len(markers)} source resources ({', '.join(markers)}), {source_id} among "
            f"them: it cannot be the copy of all of them. Remove the wrong marker (or the "
            f"resource) and run plan again",
            call=f"find {kind_name}",
        )
    return record
