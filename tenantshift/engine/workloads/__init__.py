"""Workload migrations: resumable state machines, one per ``migrate`` change (see base.py)."""

from __future__ import annotations

from tenantshift.engine.context import ApplyContext
from tenantshift.engine.nodes import Node
from tenantshift.engine.workloads.base import FAULT_KILL_AFTER, Migration, WorkloadError
from tenantshift.engine.workloads.image import ImageMigration
from tenantshift.engine.workloads.server import ServerMigration
from tenantshift.engine.workloads.temporaries import clean_up, sweep
from tenantshift.engine.workloads.volume import VolumeMigration

#: Migration per kind; every kind declared ``workload=True`` has one (a test checks).
MIGRATIONS: dict[str, type[Migration]] = {
    "volume": VolumeMigration,
    "server": ServerMigration,
    "image": ImageMigration,
}


async def migrate(ctx: ApplyContext, node: Node) -> str:
    if node.change.blocked:
        raise WorkloadError(f"blocked: {node.change.detail}")
    migration = MIGRATIONS.get(node.change.kind)
    if migration is None:
        raise WorkloadError(f"{node.change.address}: no migration for kind {node.change.kind}")
    return await migration(ctx, node).run()


__all__ = ["FAULT_KILL_AFTER", "MIGRATIONS", "WorkloadError", "clean_up", "migrate", "sweep"]
