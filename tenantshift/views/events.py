"""``apply --json``: the apply as a stream of JSON lines, for CI jobs and wrappers.

One object per line, each with ``type`` (the schema, with every field, is in docs/report.md,
"Following an apply from a program"):

- ``planned``: ``total`` nodes to run, ``bytes_total`` bytes the plan's workloads will copy;
- ``started``: ``node`` (its id, e.g. ``server.vm-bfv`` or ``network.app#late``);
- ``step``: ``node``, ``step`` (a workload's phase, e.g. ``copied``);
- ``progress``: ``node``, ``done`` and ``total`` bytes of its current copy, and the workload's
  ``workload_done``, ``workload_total``, ``rate`` and ``eta_seconds``;
- ``overall``: at a steady pace, ``resources_done``, ``resources_total``, ``bytes_done``,
  ``bytes_total``, ``rate``, ``eta_seconds`` (the bars of the terminal view);
- ``finished``: ``node``, ``status`` (done, failed, skipped), ``message``;
- ``result``: ``ok``, ``done``, ``failed``, ``skipped``, ``run_id``, ``resumed_from``, ``swept``.
"""

from __future__ import annotations

import json
import threading
from typing import IO, Any

from tenantshift.engine.apply import ApplyResult
from tenantshift.engine.walk.nodes import Node
from tenantshift.engine.walk.walker import Listener, Outcome, Status
from tenantshift.views.progress import Ticker, interval_from_env
from tenantshift.views.tally import Tally


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class JsonEvents(Listener):
    def __init__(self, stream: IO[str], *, interval: float | None = None) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self.tally = Tally()
        self.ticker = Ticker(interval or interval_from_env(), self.overall)

    def __enter__(self) -> JsonEvents:
        self.ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.ticker.stop()

    def emit(self, **event: Any) -> None:
        line = json.dumps(event, sort_keys=True)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def planned(self, total: int) -> None:
        with self._lock:
            self.tally.planned(total, self.tally.bytes_planned)
        self.emit(type="planned", total=total, bytes_total=self.tally.bytes_planned)

    def planned_bytes(self, total: int) -> None:
        with self._lock:
            self.tally.planned(self.tally.nodes_total, total)  # said with ``planned``

    def started(self, node: Node) -> None:
        self.emit(type="started", node=node.id)

    def step(self, node: Node, name: str) -> None:
        self.emit(type="step", node=node.id, step=name)

    def progress(self, node: Node, done: int, total: int) -> None:
        with self._lock:
            work = self.tally.progress(node.id, node.change.bytes_to_move, done, total)
            figures = {
                "workload_done": work.done,
                "workload_total": work.total,
                "rate": _round(work.rate.per_second()),
                "eta_seconds": _round(work.eta()),
            }
        self.emit(type="progress", node=node.id, done=done, total=total, **figures)

    def overall(self) -> None:
        with self._lock:
            tally = self.tally
            figures = {
                "resources_done": tally.nodes_done,
                "resources_total": tally.nodes_total,
                "bytes_done": tally.bytes_done,
                "bytes_total": tally.bytes_total,
                "rate": _round(tally.rate()),
                "eta_seconds": _round(tally.eta()),
            }
        self.emit(type="overall", **figures)

    def finished(self, outcome: Outcome) -> None:
        with self._lock:
            self.tally.finished(outcome.node.id)
        self.emit(
            type="finished",
            node=outcome.node.id,
            status=outcome.status.value,
            message=outcome.message,
        )

    def result(self, result: ApplyResult) -> None:
        self.overall()  # the final figures, whatever the pace
        self.emit(
            type="result",
            ok=result.ok,
            done=result.count(Status.DONE),
            failed=result.count(Status.FAILED),
            skipped=result.count(Status.SKIPPED),
            run_id=result.run_id,
            resumed_from=result.resumed_from,
            swept=list(result.swept),
        )
