"""The ``tenantshift`` command line: thin wrappers over engine functions.

Exit codes follow ``terraform plan -detailed-exitcode``: 0 success (no changes), 1 error,
2 changes present (only with ``--detailed-exitcode``). One user-facing error root,
``tenantshift.errors.TenantshiftError``, mapped to exit code 1 at this edge; no traceback
reaches the user for an expected failure, and every unexpected one keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from tenantshift.engine import commands
from tenantshift.engine.apply import ApplyResult
from tenantshift.engine.connect import open_provider
from tenantshift.engine.convhosts import deploy as convhosts
from tenantshift.engine.planning import plan_manifest
from tenantshift.engine.report import plan_report
from tenantshift.engine.walk.walker import Status
from tenantshift.errors import TenantshiftError, UsageError
from tenantshift.fileio import write_private
from tenantshift.manifest import CloudRef, Manifest, load_manifest, parse_vars
from tenantshift.plans import Plan
from tenantshift.plans.planfile import load_plan, save_plan
from tenantshift.plans.render import plan_document, render_json
from tenantshift.providers.snapshot_file import save_snapshot
from tenantshift.views.events import JsonEvents
from tenantshift.views.graphviz import (
    HINT,
    GraphvizMissing,
    output_format,
)
from tenantshift.views.graphviz import render as render_graphviz
from tenantshift.views.plan import render_human
from tenantshift.views.plangraph import changes_only as changes_only_graph
from tenantshift.views.plangraph import plan_graph, render_plan_dot
from tenantshift.views.progress import ApplyProgress
from tenantshift.views.report_html import render_html
from tenantshift.views.status import render_status

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
EnvOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--env",
        help="Let templates read this environment variable besides TENANTSHIFT_* and OS_* "
        "(repeatable).",
    ),
]
hosts_app = typer.Typer(
    help="Deploy, inspect and remove the conversion hosts a manifest declares with 'deploy:'.",
    no_args_is_help=True,
)
app.add_typer(hosts_app, name="conversion-hosts")

VarOpt = Annotated[
    list[str] | None, typer.Option("--var", help="Template variable KEY=VALUE (repeatable).")
]

#: Every expected failure, shown as one message without a traceback: the product's own errors.
#: A plain ValueError or OSError is not here: one that reaches this edge is a bug, and its
#: traceback is what a bug report needs.
USER_ERRORS = (TenantshiftError,)


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except USER_ERRORS as exc:
        errors.print(f"[bold red]Error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None


def _load(path: Path, variables: list[str] | None, env_names: list[str] | None) -> Manifest:
    return load_manifest(path, parse_vars(variables or []), env_names=env_names or [])


@app.command()
def validate(manifest: ManifestOpt, var: VarOpt = None, env: EnvOpt = None) -> None:
    """Check a manifest without touching any cloud."""
    with user_errors():
        _load(manifest, var, env)
    console.print(f"[green]{manifest}: valid[/]")


@app.command()
def plan(
    manifest: ManifestOpt,
    var: VarOpt = None,
    env: EnvOpt = None,
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
        loaded = _load(manifest, var, env)
        result = commands.plan(loaded, targets=tuple(target or ()))
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
            console.print(
                f"\nSaved the plan to {out}. Apply it with: tenantshift apply -m {manifest} {out}"
            )
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
def graph(
    plan_file: Annotated[
        Path | None, typer.Argument(help="A saved plan (no cloud is read); else -m plans now.")
    ] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", "-m")] = None,
    var: VarOpt = None,
    env: EnvOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write FILE.svg or FILE.png (Graphviz) or FILE.dot."),
    ] = None,
    changes_only: Annotated[
        bool, typer.Option("--changes-only", help="Hide no-ops; their edges are joined up.")
    ] = False,
    cluster: Annotated[
        str, typer.Option("--cluster", help="Group nodes by kind, network or none.")
    ] = "kind",
) -> None:
    """Draw the plan: each address coloured and shaped by its action, with a legend (DOT, or a
    picture with -o)."""
    with user_errors():
        fmt = output_format(out) if out is not None else None
        document = plan_document(_plan_for_picture(plan_file, manifest, var, env))
        shown = plan_graph(document)
        if changes_only:
            shown = changes_only_graph(shown)
        text = render_plan_dot(shown, cluster=cluster)
        if out is None or fmt is None:
            if out is None:
                sys.stdout.write(text)
            else:
                write_private(out, text)
            return
        try:
            picture = render_graphviz(text, fmt)
        except GraphvizMissing:
            sys.stdout.write(text)
            errors.print(HINT.format(name=out))
            raise typer.Exit(1) from None
        write_private(out, picture)
    console.print(f"Wrote {out}", highlight=False)


def _plan_for_picture(
    plan_file: Path | None,
    manifest: Path | None,
    var: list[str] | None,
    env: list[str] | None,
) -> Plan:
    """A saved plan as it is (no cloud read), or a fresh plan of the manifest."""
    if plan_file is not None:
        return load_plan(plan_file)
    if manifest is None:
        raise UsageError("give a saved plan or --manifest")
    return commands.plan(_load(manifest, var, env)).plan


@app.command()
def report(
    plan_file: Annotated[
        Path | None, typer.Argument(help="A saved plan (no cloud is read).")
    ] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", "-m")] = None,
    run: Annotated[
        str | None,
        typer.Option("--run", help="Report an applied run from the journal: latest or a run id."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write FILE.html, or FILE.json (the JSON twin)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="The JSON twin (on stdout without -o).")
    ] = False,
    var: VarOpt = None,
    env: EnvOpt = None,
) -> None:
    """Write a migration report to hand over: one self-contained HTML file (or its JSON twin)
    of a fresh plan (-m), a saved plan, or an applied run (-m --run latest)."""
    with user_errors():
        fmt = _report_format(out, as_json)
        if run is not None:
            if plan_file is not None:
                raise UsageError("--run reports what the journal holds: give -m, not a plan")
            if manifest is None:
                raise UsageError("--run needs the manifest (-m): the journal is in its state dir")
            document = commands.report_run(
                _load(manifest, var, env), run, manifest_path=str(manifest.resolve())
            )
        elif plan_file is not None:
            document = plan_report(plan_document(load_plan(plan_file)), origin="saved-plan")
        elif manifest is not None:
            fresh = commands.plan(_load(manifest, var, env)).plan
            document = plan_report(plan_document(fresh), origin="plan")
        else:
            raise UsageError("give a saved plan or --manifest")
        text = (
            json.dumps(document, indent=2, sort_keys=True) + "\n"
            if fmt == "json"
            else render_html(document)
        )
        if out is None:
            sys.stdout.write(text)
            return
        write_private(out, text)
    console.print(f"Wrote {out}")


def _report_format(out: Path | None, as_json: bool) -> str:
    if out is None:
        if not as_json:
            raise UsageError("give -o report.html (or report.json), or --json for stdout")
        return "json"
    suffix = out.suffix.lower()
    if suffix in (".html", ".htm") and not as_json:
        return "html"
    if suffix == ".json":
        return "json"
    raise UsageError(f"{out}: a report is written as .html or .json (--json: .json only)")


@app.command()
def snapshot(
    out: Annotated[Path, typer.Option("--out", "-o", help="Write the snapshot here.")],
    manifest: Annotated[Path | None, typer.Option("--manifest", "-m")] = None,
    side: Annotated[str, typer.Option(help="source or destination (with -m).")] = "source",
    cloud: Annotated[str | None, typer.Option(help="A clouds.yaml entry (without -m).")] = None,
    var: VarOpt = None,
    env: EnvOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Save the normalized state of one project (usable offline as a read-only source)."""
    with user_errors():
        if manifest is not None:
            snap = commands.snapshot(_load(manifest, var, env), side)
        elif cloud is not None:
            snap = open_provider(CloudRef(cloud=cloud), side).snapshot()
        else:
            raise UsageError("give --manifest or --cloud")
        save_snapshot(snap, out)
    console.print(f"{len(snap.resources)} resources written to {out}")
    if verbose:
        console.print(f"{snap.api_calls} API calls")


@app.command()
def apply(
    plan_file: Annotated[
        Path | None, typer.Argument(help="A saved plan (checked for staleness).")
    ] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", "-m")] = None,
    var: VarOpt = None,
    env: EnvOpt = None,
    target: TargetOpt = None,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Do not ask.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print progress as JSON lines (docs/report.md).")
    ] = False,
) -> None:
    """Apply a saved plan, or plan and apply a manifest after confirmation."""
    if as_json:
        _apply_json(plan_file, manifest, var, env, target, auto_approve)
        return
    with user_errors():
        if plan_file is not None:
            if target:
                raise UsageError("--target goes with --manifest; a saved plan has its targets")
            saved = load_plan(plan_file)
            loaded = _load(plan_manifest(saved, manifest), var, env)
        elif manifest is not None:
            loaded = _load(manifest, var, env)
        else:
            raise UsageError("give a saved plan or --manifest")
        progress = ApplyProgress(console)
        with progress:
            if plan_file is not None:
                result: ApplyResult | None = commands.apply_saved(saved, loaded, listener=progress)
            else:
                fresh, result = commands.apply_manifest(
                    loaded,
                    confirm=lambda fresh: _show_and_confirm(fresh, auto_approve, progress),
                    targets=tuple(target or ()),
                    listener=progress,
                )
        if plan_file is None and not fresh.has_changes:
            console.print(render_human(plan_document(fresh)), end="")
    if result is not None:
        _report(result)


def _apply_json(
    plan_file: Path | None,
    manifest: Path | None,
    var: list[str] | None,
    env: list[str] | None,
    target: list[str] | None,
    auto_approve: bool,
) -> None:
    """The same apply, as JSON lines on stdout; errors still go to stderr."""
    with user_errors():
        events = JsonEvents(sys.stdout)
        if plan_file is not None:
            if target:
                raise UsageError("--target goes with --manifest; a saved plan has its targets")
            saved = load_plan(plan_file)
            loaded = _load(plan_manifest(saved, manifest), var, env)
            with events:
                result: ApplyResult | None = commands.apply_saved(saved, loaded, listener=events)
        elif manifest is not None:
            if not auto_approve:
                raise UsageError("--json cannot ask for confirmation: add --auto-approve")
            loaded = _load(manifest, var, env)
            with events:
                _, result = commands.apply_manifest(
                    loaded,
                    confirm=lambda _: True,
                    targets=tuple(target or ()),
                    listener=events,
                )
        else:
            raise UsageError("give a saved plan or --manifest")
    if result is None:
        events.emit(type="result", ok=True, done=0, failed=0, skipped=0, run_id=None)
        return
    events.result(result)
    if not result.ok:
        raise typer.Exit(1)


def _show_and_confirm(fresh: Plan, auto_approve: bool, progress: ApplyProgress) -> bool:
    progress.stop()  # the plan and the prompt print without the live display
    console.print(render_human(plan_document(fresh)), end="")
    if auto_approve or _confirm():
        progress.start()
        return True
    console.print("Apply cancelled.")
    raise typer.Exit(1)


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
    for line in result.swept:
        console.print(f"Cleaned up after an earlier run: {escape(line)}")
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
def journal(manifest: ManifestOpt, var: VarOpt = None, env: EnvOpt = None) -> None:
    """Show the apply runs recorded for a manifest, and how the last one went (= status)."""
    status(manifest, var, env)


@app.command()
def status(manifest: ManifestOpt, var: VarOpt = None, env: EnvOpt = None) -> None:
    """Show the apply runs, each unfinished workload's phase and bytes, and leftovers."""
    with user_errors():
        found = commands.status(_load(manifest, var, env))
    if found is None:
        console.print("No apply has run for this manifest yet.")
        return
    for line in render_status(found):
        console.print(line)


@app.command()
def cleanup(manifest: ManifestOpt, var: VarOpt = None, env: EnvOpt = None) -> None:
    """Remove what an abandoned migration left (attachments, temporary volumes) and restore the
    source; unfinished workloads start over at the next apply."""
    with user_errors():
        swept = commands.cleanup(_load(manifest, var, env))
    for line in swept:
        console.print(escape(line))
    console.print("Nothing left to clean up." if not swept else "Cleanup complete.")


@hosts_app.command("deploy")
def hosts_deploy(manifest: ManifestOpt, var: VarOpt = None, env: EnvOpt = None) -> None:
    """Create (or find, or finish creating) the conversion hosts; pin and report their host
    keys. Idempotent: a re-run creates nothing that exists."""
    with user_errors():
        reports = convhosts.deploy(
            _load(manifest, var, env), say=lambda line: console.print(escape(line))
        )
    for r in reports:
        console.print(
            escape(
                f"{r.side}: {r.server} ({r.server_id}) at {r.address} [cloud address "
                f"{r.cloud_address}], host key {r.fingerprint} (from the {r.host_key_source})"
            )
        )
    changed = any(r.actions for r in reports)
    console.print("Conversion hosts deployed." if changed else "No changes: already deployed.")


@hosts_app.command("remove")
def hosts_remove(manifest: ManifestOpt, var: VarOpt = None, env: EnvOpt = None) -> None:
    """Delete what deploy created (servers, floating IPs, and the security groups and keypairs
    it created; never ones it found and used)."""
    with user_errors():
        done = convhosts.remove(
            _load(manifest, var, env), say=lambda line: console.print(escape(line))
        )
    console.print("Nothing to remove." if not done else "Conversion hosts removed.")


@hosts_app.command("status")
def hosts_status(
    manifest: ManifestOpt,
    var: VarOpt = None,
    env: EnvOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What the deployment record says of each host (no cloud is read)."""
    with user_errors():
        rows = convhosts.status(_load(manifest, var, env))
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    for row in rows:
        line = f"{row['side']}: {row['server']}: {row['state']}"
        if row["address"]:
            line += f" at {row['address']}:{row['port']}"
        if row["fingerprint"]:
            line += f", host key {row['fingerprint']} (from the {row['host_key_source']})"
        console.print(escape(line))
