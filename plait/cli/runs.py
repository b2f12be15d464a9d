"""`plait runs`, `plait show RUN_ID`, `plait resume RUN_ID`: the journal from the shell."""

from __future__ import annotations

import asyncio
import datetime
import os

import typer
from rich.console import Console
from rich.table import Table

from plait._api import aresume
from plait._errors import PlaitError, RunError
from plait._progress import Progress
from plait.cli._app import app
from plait.cli._load import load_object
from plait.cli.ask import DEFAULT_TOOLS, answer_question
from plait.cli.run import fail, report
from plait.journal import Journal, JournalState, RunNotFoundError, open_journal

JOURNAL_HELP = "SQLite file or postgresql:// DSN (default: $PLAIT_JOURNAL or runs.db)"


def journal_option() -> str:
    return os.environ.get("PLAIT_JOURNAL", "runs.db")


def _open(spec: str) -> Journal:
    try:
        return open_journal(spec)
    except PlaitError as exc:
        raise typer.BadParameter(str(exc), param_hint="--journal") from None


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@app.command("runs")
def runs_command(
    journal: str = typer.Option(journal_option, "--journal", "-j", help=JOURNAL_HELP),
    limit: int = typer.Option(50, help="most runs to list, newest first"),
) -> None:
    """List the runs in a journal: status, duration, tokens."""
    j = _open(journal)
    try:
        records = j.list_runs(limit=limit)
    finally:
        j.close()
    table = Table("run", "entry", "status", "started", "duration", "tokens", "error")
    for r in records:
        end = r.finished_at or r.updated_at
        table.add_row(
            r.run_id,
            r.entry,
            r.status,
            _when(r.created_at),
            f"{end - r.created_at:.3f}s" if end else "-",
            str(r.tokens),
            (r.error or "")[:60],
        )
    Console().print(table)


@app.command("show")
def show_command(
    run_id: str = typer.Argument(..., help="a run id from `plait runs`"),
    journal: str = typer.Option(journal_option, "--journal", "-j", help=JOURNAL_HELP),
) -> None:
    """Every node of a run: state, timings, tokens, error."""
    j = _open(journal)
    try:
        state = j.load(run_id)
    except RunNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="RUN_ID") from None
    finally:
        j.close()
    _show(state)


def _show(state: JournalState) -> None:
    run = state.run
    console = Console()
    console.print(f"run {run.run_id}  {run.entry}  {run.status}  tokens {run.tokens}")
    if run.error:
        console.print(f"error: {run.error}")
    t0 = min((i.started_at for i in state.intents.values()), default=run.created_at)
    table = Table("key", "tool", "state", "attempt", "start", "duration", "tokens", "error")
    doubt = set(state.in_doubt)
    for key, intent in sorted(state.intents.items(), key=lambda kv: kv[1].started_at):
        result = state.results.get(key)
        if result is None:
            status, duration, tokens, error = ("in doubt" if key in doubt else "?"), "-", "-", ""
        else:
            status = "done" if result.ok else "failed"
            duration = f"{result.finished_at - result.started_at:.3f}s"
            tokens = str(result.tokens)
            error = (result.error or "")[:60]
        table.add_row(
            key[:12],
            intent.tool,
            status,
            str(intent.attempt),
            f"+{intent.started_at - t0:.3f}s",
            duration,
            tokens,
            error,
        )
    console.print(table)


@app.command("resume")
def resume_command(
    run_id: str = typer.Argument(..., help="a run id from `plait runs`"),
    journal: str = typer.Option(journal_option, "--journal", "-j", help=JOURNAL_HELP),
    allow_rerun: bool = typer.Option(
        False, help="run calls in doubt again even if their tool is not idempotent"
    ),
    workflow: str = typer.Option(
        None, help="module:workflow, when the recorded entry cannot be imported"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    tools: str = typer.Option(
        DEFAULT_TOOLS, "--tools", help="for a question (`plait ask`): the tools it was asked with"
    ),
) -> None:
    """Continue a run from its journal: finished calls are replayed, not re-run."""
    j = _open(journal)
    try:
        record = j.get_run(run_id)
    finally:
        j.close()
    if record is None:
        raise typer.BadParameter(f"no run {run_id!r} in {journal}", param_hint="RUN_ID")
    if record.entry.startswith("ask:"):  # a question: ask it again under its run id
        arguments = record.arguments or {}
        answer_question(
            arguments["question"], tools, as_json=as_json, timeout=600.0,
            model=arguments["model"], mode=record.entry.removeprefix("ask:"), journal=journal,
            run_id=run_id, allow_rerun=allow_rerun, asked_with=arguments.get("tools"),
        )
        return
    wf = load_object(workflow) if workflow else None
    failure: PlaitError | None = None
    with Progress() as progress:
        try:
            result = asyncio.run(
                aresume(
                    run_id,
                    journal,
                    workflow_fn=wf,
                    allow_rerun=allow_rerun,
                    listeners=[progress],
                )
            )
        except RunError as exc:
            result = exc.result  # type: ignore[assignment]
        except PlaitError as exc:
            failure = exc
    if failure is not None:
        fail(failure)
    report(result, as_json)
    if not result.ok:
        raise typer.Exit(1)
