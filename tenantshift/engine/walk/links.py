"""How an apply reaches its conversion hosts: transfer sessions, probes and leftover sweeps.

The default is the real thing (``tenantshift.transfer``: SSH, the agent, verified copies). The
unit tests pass links that move the memory cloud's bytes instead, so every phase of a
migration, failover included, runs without hosts; the devcloud tests prove the SSH path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from tenantshift.manifest import ConversionPair
from tenantshift.transfer import (
    Progress,
    TransferOptions,
    TransferResult,
    TransferSession,
    VolumeCopy,
    probe_hosts,
    remove_run_dirs,
    sweep_leftover_keys,
)


class CopySession(Protocol):
    """One run's session with a pair (``TransferSession``)."""

    #: The copy key's marker on the source host (journaled before the key is authorised).
    marker: str
    source_run_dir: str | None
    destination_run_dir: str | None
    #: Set when ``close`` could not revoke the key (it is swept later).
    leftover_marker: str | None

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def copy(
        self, copy: VolumeCopy, progress: Callable[[Progress], None] | None = None
    ) -> TransferResult: ...


async def _probe(pair: ConversionPair, timeout: float) -> list[str]:
    return await probe_hosts(pair, timeout=timeout)


async def _sweep_keys(
    pair: ConversionPair, markers: Sequence[str], options: TransferOptions
) -> None:
    await sweep_leftover_keys(pair, list(markers), options=options)


async def _remove_dirs(
    pair: ConversionPair, role: str, dirs: Sequence[str], options: TransferOptions
) -> None:
    await remove_run_dirs(pair, role, list(dirs), options=options)


@dataclass(frozen=True)
class Links:
    #: A new (unopened) session for a pair.
    open_session: Callable[[ConversionPair, TransferOptions], CopySession] = TransferSession
    #: What is wrong with a pair's hosts (empty: both ready).
    probe: Callable[[ConversionPair, float], Awaitable[list[str]]] = _probe
    #: Revoke copy keys a killed run left on a pair's source host.
    sweep_keys: Callable[[ConversionPair, Sequence[str], TransferOptions], Awaitable[None]] = (
        _sweep_keys
    )
    #: Remove run directories a killed run left on one host of a pair (``source``/``destination``).
    remove_dirs: Callable[
        [ConversionPair, str, Sequence[str], TransferOptions], Awaitable[None]
    ] = _remove_dirs
