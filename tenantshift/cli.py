"""The ``tenantshift`` command line: thin wrappers over engine functions.

Exit codes follow ``terraform plan -detailed-exitcode``: 0 success (no changes), 1 error,
2 changes present (only with ``--detailed-exitcode``). One user-facing error type, mapped to
exit code 1 at this edge; no traceback reaches the user for an expected failure.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from tenantshift.engine.apply import JOURNAL_FILE, ApplyResult, apply_plan
from tenantshift.engine.connect import open_provider
from tenantshift.engine.graph import GraphCycleError, Node, build_graph
from tenantshift.engine.journal import Journal
from tenantshift.engine.lock import ApplyLock, LockedError
from tenantshift.engine.planning import PlanError, check_fresh, make_plan
from tenantshift.engine.walker import Listener, Outcome, Status
from tenantshift.manifest import CloudRef, Manifest, ManifestError, load_manifest, parse_vars
from tenantshift.plans import Plan
from tenantshift.plans.planfile import PlanFileError, load_plan, save_plan
from tenantshift.plans.render import plan_document, render_human, render_json
from tenantshift.providers import Provider, ProviderError
from tenantshift.providers.snapshot_file import save_snapshot

app = typer.Typer(
    help="Migrate an OpenStack tenant to another cloud or project: plan, review, apply.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)

ManifestOpt = Annotated[Path, typer.Option("--manifest", "-m", help="The migration manifest.")]
TargetOpt = Annotated[
    list[str] | None,
    typer.Option("--target", help="Only this address and what it depends on (repeatable)."),
]
VarOpt = Annotated[
    list[str] | None, typer.Option("--var", help="Template variable KEY=VALUE (repeatable).")
]

#: Every expected failure, shown as one message without a traceback.
USER_ERRORS = (
    ManifestError,
    PlanError,
    PlanFileError,
    ProviderError,
    LockedError,
    GraphCycleError,
    ValueError,
    OSError,
)


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except USER_ERRORS as exc:
        errors.print(f"[bold red]Error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None


def _load(path: Path, variables: list[str] | None) -> Manifest:
    return load_manifest(path, parse_vars(variables or []))


def _providers(manifest: Manifest) -> tuple[Provider, Provider]:
    return (
        open_provider(manifest.source, "source"),
        open_provider(manifest.destination, "destination"),
    )


@app.command()
def validate(manifest: ManifestOpt, var: VarOpt = None) -> None:
    """Check a manifest without touching any cloud."""
    with user_errors():
        _load(manifest, var)
    console.print(f"[green]{manifest}: valid[/]")


@app.command()
def plan(
    manifest: ManifestOpt,
    var: VarOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Save the plan here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON plan.")] = False,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 2 when there are changes.")
    ] = False,
    target: TargetOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Snapshot both clouds and show what apply would do."""
    with user_errors():
        loaded = _load(manifest, var)
        source, destination = _providers(loaded)
        result = make_plan(loaded, source, destination, targets=tuple(target or ()))
        if out is not None:
            save_plan(result.plan, out)
    if as_json:
        sys.stdout.write(render_json(result.plan))
    else:
        if verbose:
            console.print(
                f"snapshots: source {len(result.source.resources)} resources in "
                f"{result.source.api_calls} API calls, destination "
                f"{len(result.destination.resources)} in {result.destination.api_calls}"
            )
        console.print(render_human(plan_document(result.plan), verbose=verbose), end="")
        if out is not None:
            console.print(f"\nSaved the plan to {out}. Apply it with: tenantshift apply {out}")
    _exit_for_changes(result.plan, detailed_exitcode)


def _exit_for_changes(plan: Plan, detailed: bool) -> None:
    if detailed and plan.has_changes:
        raise typer.Exit(2)


@app.command()
def show(
    plan_file: Annotated[Path, typer.Argument(help="A plan saved with plan -o.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a saved plan."""
    with user_errors():
        saved = load_plan(plan_file)
    if as_json:
        sys.stdout.write(render_json(saved))
    else:
        console.print(render_human(plan_document(saved)), end="")


@app.command()
def graph(manifest: ManifestOpt, var: VarOpt = None) -> None:
    """Print the apply graph of the current plan as DOT (pipe it into ``dot -Tsvg``)."""
    with user_errors():
        loaded = _load(manifest, var)
        source, destination = _providers(loaded)
        result = make_plan(loaded, source, destination)
        apply_graph = build_graph(result.plan)
    lines = ["digraph tenantshift {", "  rankdir=LR;"]
    lines += [f'  "{node}";' for node in sorted(apply_graph.nodes)]
    lines += [f'  "{a}" -> "{b}";' for a, b in sorted(apply_graph.edges)]
    sys.stdout.write("\n".join([*lines, "}"]) + "\n")


@app.command()
def snapshot(
    out: Annotated[Path, typer.Option("--out", "-o", help="Write the snapshot here.")],
    manifest: Annotated[Path | None, typer.Option("--manifest", "-m")] = None,
    side: Annotated[str, typer.Option(help="source or destination (with -m).")] = "source",
    cloud: Annotated[str | None, typer.Option(help="A clouds.yaml entry (without -m).")] = None,
    var: VarOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Save the normalized state of one project (usable offline as a read-only source)."""
    with user_errors():
        if manifest is not None:
            loaded = _load(manifest, var)
            if side not in ("source", "destination"):
                raise ValueError("--side is source or destination")
            ref = loaded.source if side == "source" else loaded.destination
        elif cloud is not None:
            ref = CloudRef(cloud=cloud)
        else:
            raise ValueError("give --manifest or --cloud")
        snap = open_provider(ref, side).snapshot()
        save_snapshot(snap, out)
    console.print(f"{len(snap.resources)} resources written to {out}")
    if verbose:
        console.print(f"{snap.api_calls} API calls")


class _Progress(Listener):
    """A live bar on a terminal (plain lines elsewhere) plus one line per finished node."""

    STYLE = {Status.DONE: "green", Status.FAILED: "bold red", Status.SKIPPED: "yellow"}

    def __init__(self) -> None:
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

    def planned(self, total: int) -> None:
        self.bar.update(self.task, total=total)

    def started(self, node: Node) -> None:
        self.bar.update(self.task, description=f"applying {node.id}")

    def finished(self, outcome: Outcome) -> None:
        self.bar.advance(self.task)
        self.bar.console.print(
            f"[{self.STYLE[outcome.status]}]{outcome.status.value:>7}[/] {outcome.node.id}: "
            f"{escape(outcome.message)}",
        )


@app.command()
def apply(
    plan_file: Annotated[
        Path | None, typer.Argument(help="A saved plan (checked for staleness).")
    ] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", "-m")] = None,
    var: VarOpt = None,
    target: TargetOpt = None,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Do not ask.")] = False,
) -> None:
    """Apply a saved plan, or plan and apply a manifest after confirmation."""
    with user_errors():
        if plan_file is not None:
            if target:
                raise ValueError("--target goes with --manifest; a saved plan has its targets")
            saved = load_plan(plan_file)
            loaded = _load(manifest or Path(saved.manifest_path), var)
        elif manifest is not None:
            loaded = _load(manifest, var)
        else:
            raise ValueError("give a saved plan or --manifest")
        source, destination = _providers(loaded)
        # Held from the freshness check or the prompt to the end: no other apply in between.
        with ApplyLock(loaded.state_dir) as lock:
            if plan_file is not None:
                check_fresh(saved, loaded, source, destination)
                the_plan = saved
            else:
                targets = tuple(target or ())
                the_plan = make_plan(loaded, source, destination, targets=targets).plan
                console.print(render_human(plan_document(the_plan)), end="")
                if not the_plan.has_changes:
                    return
                if not auto_approve and not _confirm():
                    console.print("Apply cancelled.")
                    raise typer.Exit(1)
            progress = _Progress()
            with progress.bar:
                result = apply_plan(
                    the_plan,
                    destination,
                    loaded.state_dir,
                    parallelism=loaded.options.parallelism,
                    listener=progress,
                    lock=lock,
                )
    _report(result)


def _confirm() -> bool:
    if not sys.stdin.isatty():
        errors.print(
            "Refusing to apply without confirmation: stdin is not a terminal "
            "(use --auto-approve or a saved plan)."
        )
        return False
    answer = console.input("\nDo you want to perform these actions? Only 'yes' will be accepted: ")
    return answer.strip() == "yes"


def _report(result: ApplyResult) -> None:
    if result.resumed_from:
        console.print(
            f"Resumed after interrupted run {result.resumed_from}"
            + (f" ({len(result.in_doubt)} steps re-checked)" if result.in_doubt else "")
        )
    console.print(
        f"\n[bold]Apply {'complete' if result.ok else 'failed'}![/] "
        f"{result.count(Status.DONE)} done, {result.count(Status.FAILED)} failed, "
        f"{result.count(Status.SKIPPED)} skipped (run {result.run_id})."
    )
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def journal(manifest: ManifestOpt, var: VarOpt = None) -> None:
    """Show the apply runs recorded for a manifest, and how the last one went."""
    with user_errors():
        loaded = _load(manifest, var)
        path = loaded.state_dir / JOURNAL_FILE
        if not path.exists():
            console.print("No apply has run for this manifest yet.")
            return
        book = Journal(path)
        runs = book.runs()
        for run in runs:
            resumed = f", resumed from {run.resumed_from}" if run.resumed_from else ""
            console.print(
                f"run {run.run_id}: {run.status}, {run.started_at} -> "
                f"{run.finished_at or '?'}{resumed}"
            )
        if runs:
            steps = book.steps(runs[-1].run_id)
            console.print(f"last run: {len(steps)} steps")
        book.close()
