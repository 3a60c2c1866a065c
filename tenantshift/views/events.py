"""``apply --json``: the apply as a stream of JSON lines, for CI jobs and wrappers.

One object per line, each with ``type``:

- ``planned``: ``total`` nodes to run;
- ``started``: ``node`` (its id, e.g. ``server.vm-bfv`` or ``network.app#late``);
- ``step``: ``node``, ``step`` (a workload's phase, e.g. ``copied``);
- ``progress``: ``node``, ``done`` and ``total`` bytes of its current copy;
- ``finished``: ``node``, ``status`` (done, failed, skipped), ``message``;
- ``result``: ``ok``, ``done``, ``failed``, ``skipped``, ``run_id``, ``resumed_from``, ``swept``.
"""

from __future__ import annotations

import json
import threading
from typing import IO, Any

from tenantshift.engine.apply import ApplyResult
from tenantshift.engine.nodes import Node
from tenantshift.engine.walker import Listener, Outcome, Status


class JsonEvents(Listener):
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def emit(self, **event: Any) -> None:
        line = json.dumps(event, sort_keys=True)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def planned(self, total: int) -> None:
        self.emit(type="planned", total=total)

    def started(self, node: Node) -> None:
        self.emit(type="started", node=node.id)

    def step(self, node: Node, name: str) -> None:
        self.emit(type="step", node=node.id, step=name)

    def progress(self, node: Node, done: int, total: int) -> None:
        self.emit(type="progress", node=node.id, done=done, total=total)

    def finished(self, outcome: Outcome) -> None:
        self.emit(
            type="finished",
            node=outcome.node.id,
            status=outcome.status.value,
            message=outcome.message,
        )

    def result(self, result: ApplyResult) -> None:
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
