"""A saved snapshot as a read-only provider: plan offline against a source you cannot reach."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tenantshift.fileio import write_private
from tenantshift.providers.base import ReadOnlyError
from tenantshift.providers.workload import WorkloadVerbs
from tenantshift.resources import REGISTRY, Record, Snapshot

SNAPSHOT_FORMAT = 1


def save_snapshot(snapshot: Snapshot, path: Path) -> None:
    """Atomic and private (0600): a snapshot is the tenant's whole inventory."""
    body = snapshot.model_dump(mode="json")
    body = {"format_version": SNAPSHOT_FORMAT, **body}
    write_private(path, json.dumps(body, indent=2, sort_keys=True) + "\n")


def load_snapshot(path: Path) -> Snapshot:
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReadOnlyError(f"{path}: not a readable snapshot file: {exc}") from exc
    except RecursionError:
        raise ReadOnlyError(f"{path}: not a snapshot file (nested too deeply)") from None
    if not isinstance(body, dict):
        raise ReadOnlyError(f"{path}: not a snapshot file (expected a JSON object)")
    version = body.pop("format_version", None)
    if version != SNAPSHOT_FORMAT:
        raise ReadOnlyError(f"{path}: snapshot format {version!r}, expected {SNAPSHOT_FORMAT}")
    return with_declared_fields(Snapshot.model_validate(body))


def with_declared_fields(snapshot: Snapshot) -> Snapshot:
    """A snapshot saved before a field was declared (a network's ``tags``) gets that field's
    default, as a fresh snapshot would read it: otherwise "absent" and "empty" would differ."""
    resources = {}
    for address, res in snapshot.resources.items():
        missing = (
            [f for f in REGISTRY[res.kind].fields if f.name not in res.params]
            if res.kind in REGISTRY
            else []
        )
        if missing:
            params = {**res.params, **{f.name: copy.deepcopy(f.default) for f in missing}}
            res = res.model_copy(update={"params": params})
        resources[address] = res
    return snapshot.model_copy(update={"resources": resources})


class SnapshotFileProvider:
    """Reads come from the file; any write is refused."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = path.name
        #: A file holds no data to move.
        self.workloads: WorkloadVerbs | None = None
        self._snapshot = load_snapshot(path)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def get(self, kind: str, id: str) -> Record | None:
        for res in self._snapshot.of_kind(kind):
            if res.id == id:
                return {**res.params, **res.info}
        return None

    def find(self, kind: str, source_id: str | None, params: Mapping[str, Any]) -> Record | None:
        return None

    def create(self, kind: str, params: Mapping[str, Any], source_id: str | None) -> Record:
        raise ReadOnlyError(f"{self.label} is a snapshot file: it cannot be changed")

    def update(self, kind: str, id: str, changes: Mapping[str, Any]) -> Record:
        raise ReadOnlyError(f"{self.label} is a snapshot file: it cannot be changed")

    def delete(self, kind: str, id: str) -> None:
        raise ReadOnlyError(f"{self.label} is a snapshot file: it cannot be changed")
