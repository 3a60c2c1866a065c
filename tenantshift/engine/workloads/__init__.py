"""Workload migrations: resumable state machines, one per ``migrate`` change (see base.py).

Each workload kind registers its migration (``@register_migration``); importing this package
registers them all.
"""

from __future__ import annotations

from tenantshift.engine.walk.context import ApplyContext
from tenantshift.engine.walk.nodes import Node
from tenantshift.engine.workloads import image, server, volume  # noqa: F401  (registration)
from tenantshift.engine.workloads.base import Migration
from tenantshift.engine.workloads.registry import MIGRATIONS, WorkloadError
from tenantshift.engine.workloads.temporaries import UNDO, clean_up, sweep


async def migrate(ctx: ApplyContext, node: Node) -> str:
    if node.change.blocked:
        raise WorkloadError(f"blocked: {node.change.detail}")
    migration = MIGRATIONS.get(node.change.kind)
    if migration is None:
        raise WorkloadError(f"{node.change.address}: no migration for kind {node.change.kind}")
    return await migration(ctx, node).run()


__all__ = ["MIGRATIONS", "UNDO", "Migration", "WorkloadError", "clean_up", "migrate", "sweep"]
