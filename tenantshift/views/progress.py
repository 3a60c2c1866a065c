"""Live apply progress people can follow.

On a terminal: an overall bar for resources and one for bytes (rate, time left) above a bar per
copying workload (its bytes, rate, time left), redrawn in place, and one line per finished node.
Elsewhere (a CI log, a pipe): no redraws, plain lines instead: one per finished node and
workload phase, and a status line at a steady pace (every ``TENANTSHIFT_PROGRESS_INTERVAL``
seconds, default 10) with the same figures as the bars.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from tenantshift.engine.walk.nodes import Node
from tenantshift.engine.walk.walker import Listener, Outcome, Status
from tenantshift.errors import UsageError
from tenantshift.views.plangraph import human_bytes
from tenantshift.views.tally import Tally, Workload

STYLE = {Status.DONE: "green", Status.FAILED: "bold red", Status.SKIPPED: "yellow"}

INTERVAL_ENV = "TENANTSHIFT_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0


def interval_from_env() -> float:
    """Seconds between plain status lines (and JSON ``overall`` events)."""
    raw = os.environ.get(INTERVAL_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_INTERVAL
    except ValueError:
        raise UsageError(f"{INTERVAL_ENV} must be a number of seconds, not {raw!r}") from None
    if not 0.1 <= value <= 3600:
        raise UsageError(f"{INTERVAL_ENV} must be between 0.1 and 3600 seconds")
    return value


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def rate_text(rate: float | None) -> str:
    return f"{human_bytes(int(rate))}/s" if rate is not None else "?/s"


def bytes_figures(done: int, total: int, rate: float | None, eta: float | None) -> str:
    share = f" ({100 * done / total:.0f}%)" if total else ""
    return (
        f"{human_bytes(done)}/{human_bytes(total)}{share} at {rate_text(rate)}, {clock(eta)} left"
    )


def workload_figures(work: Workload) -> str:
    return bytes_figures(work.done, work.total, work.rate.per_second(), work.eta())


class Ticker:
    """Calls ``tick`` every ``interval`` seconds from a daemon thread until stopped."""

    def __init__(self, interval: float, tick: Callable[[], None]) -> None:
        self.interval = interval
        self._tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._tick()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class ApplyProgress(Listener):
    def __init__(self, console: Console, *, interval: float | None = None) -> None:
        self.console = console
        self.tally = Tally()
        self.lock = threading.Lock()
        self.started_at = time.monotonic()
        self.live = console.is_terminal
        self.overall = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            TextColumn("{task.fields[figures]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.resources = self.overall.add_task("resources", total=None, figures="")
        self.bytes = self.overall.add_task("bytes", total=None, figures="", visible=False)
        self.copying = Progress(
            TextColumn("  {task.description}"),
            BarColumn(bar_width=30),
            TextColumn("{task.fields[figures]}"),
            console=console,
        )
        self.copies: dict[str, TaskID] = {}
        self.display = Live(
            Group(self.overall, self.copying),
            console=console,
            transient=True,
            refresh_per_second=4,
        )
        self.ticker = Ticker(interval or interval_from_env(), self.status_line)

    # -- showing and pausing (the confirmation prompt prints without the live display) ----
    def start(self) -> None:
        if self.live:
            self.display.start()
        else:
            self.ticker.start()

    def stop(self) -> None:
        if self.live:
            self.display.stop()

    def close(self) -> None:
        self.ticker.stop()
        self.stop()

    def __enter__(self) -> ApplyProgress:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the listener ----------------------------------------------------------------------
    def planned(self, total: int) -> None:
        with self.lock:
            self.tally.planned(total, self.tally.bytes_planned)
            self._refresh_overall()

    def planned_bytes(self, total: int) -> None:
        with self.lock:
            self.tally.planned(self.tally.nodes_total, total)
            self._refresh_overall()

    def started(self, node: Node) -> None:
        pass

    def step(self, node: Node, name: str) -> None:
        self.console.print(f"   [cyan]...[/] {escape(node.id)}: {escape(name)}")

    def progress(self, node: Node, done: int, total: int) -> None:
        with self.lock:
            work = self.tally.progress(node.id, node.change.bytes_to_move, done, total)
            task = self.copies.get(node.id)
            if task is None:
                task = self.copies[node.id] = self.copying.add_task(node.id, figures="")
            self.copying.update(
                task, completed=work.done, total=work.total, figures=workload_figures(work)
            )
            self._refresh_overall()

    def finished(self, outcome: Outcome) -> None:
        with self.lock:
            self.tally.finished(outcome.node.id)
            task = self.copies.pop(outcome.node.id, None)
            if task is not None:
                self.copying.remove_task(task)
            self._refresh_overall()
        self.console.print(
            f"[{STYLE[outcome.status]}]{outcome.status.value:>7}[/] {outcome.node.id}: "
            f"{escape(outcome.message)}",
        )

    def _refresh_overall(self) -> None:
        tally = self.tally
        self.overall.update(
            self.resources,
            completed=tally.nodes_done,
            total=tally.nodes_total or None,
            figures=f"{tally.nodes_done}/{tally.nodes_total}",
        )
        if tally.bytes_total:
            self.overall.update(
                self.bytes,
                visible=True,
                completed=tally.bytes_done,
                total=tally.bytes_total,
                figures=bytes_figures(
                    tally.bytes_done, tally.bytes_total, tally.rate(), tally.eta()
                ),
            )

    def status_line(self) -> None:
        """The plain-output equivalent of the bars, printed at a steady pace."""
        with self.lock:
            tally = self.tally
            parts = [f"resources {tally.nodes_done}/{tally.nodes_total}"]
            if tally.bytes_total:
                parts.append(
                    "bytes "
                    + bytes_figures(tally.bytes_done, tally.bytes_total, tally.rate(), tally.eta())
                )
            copying = [f"{node} {workload_figures(work)}" for node, work in tally.workloads.items()]
        elapsed = clock(time.monotonic() - self.started_at)
        line = f"[{elapsed}] progress: " + "; ".join(parts)
        if copying:
            line += "; copying " + "; ".join(copying)
        self.console.print(escape(line), highlight=False)
