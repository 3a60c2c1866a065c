"""Live apply progress: a bar per run and per copying workload on a terminal, plain lines
otherwise, and one line per finished node."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from tenantshift.engine.nodes import Node
from tenantshift.engine.walker import Listener, Outcome, Status

STYLE = {Status.DONE: "green", Status.FAILED: "bold red", Status.SKIPPED: "yellow"}


class ApplyProgress(Listener):
    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.bar.add_task("applying", total=None)
        self.copies: dict[str, TaskID] = {}
        self.bytes = Progress(
            TextColumn("  {task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )

    def planned(self, total: int) -> None:
        self.bar.update(self.task, total=total)

    def started(self, node: Node) -> None:
        self.bar.update(self.task, description=f"applying {node.id}")

    def step(self, node: Node, name: str) -> None:
        self.bar.console.print(f"   [cyan]...[/] {escape(node.id)}: {escape(name)}")

    def progress(self, node: Node, done: int, total: int) -> None:
        task = self.copies.get(node.id)
        if task is None:
            if not self.copies:
                self.bytes.start()
            task = self.copies[node.id] = self.bytes.add_task(node.id, total=total)
        self.bytes.update(task, completed=done, total=total)

    def finished(self, outcome: Outcome) -> None:
        task = self.copies.pop(outcome.node.id, None)
        if task is not None:
            self.bytes.remove_task(task)
            if not self.copies:
                self.bytes.stop()
        self.bar.advance(self.task)
        self.bar.console.print(
            f"[{STYLE[outcome.status]}]{outcome.status.value:>7}[/] {outcome.node.id}: "
            f"{escape(outcome.message)}",
        )

    def close(self) -> None:
        if self.copies:
            self.bytes.stop()
