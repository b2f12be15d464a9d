"""`plait runs`, `plait show RUN_ID`, `plait resume RUN_ID`: the journal from the shell."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, cast

import typer
from rich.console import Console

from plait._api import aresume
from plait._errors import PlaitError, RunError
from plait._progress import Progress
from plait.cli._app import app
from plait.cli._fail import about_journal, fail, journal_errors
from plait.cli._load import load_object
from plait.cli._render import render_runs, render_show
from plait.cli._runview import clean, describe_calls, describe_question, describe_run
from plait.cli.ask import DEFAULT_TOOLS, answer_question
from plait.cli.run import report
from plait.journal import Journal, JournalError, open_journal

JOURNAL_HELP = "SQLite file or postgresql:// DSN (default: $PLAIT_JOURNAL or runs.db)"


def journal_option() -> str:
    return os.environ.get("PLAIT_JOURNAL", "runs.db")


def _open(spec: str) -> Journal:
    """An existing journal, for a command that reads it: never creates one, and an
    error reading it (a damaged file, a lost connection) ends the command with one
    line naming the journal."""
    path = _sqlite_path(spec)
    if path is not None and (not path.exists() or path.is_file() and not path.stat().st_size):
        env = os.environ.get("PLAIT_JOURNAL")
        given = (" (from $PLAIT_JOURNAL)" if spec == env
                 else " (the default)" if not env and spec == "runs.db" else "")
        fail(f"no journal at {path.absolute()}{given}: nothing was journaled there. Name one "
             "with --journal FILE or a postgresql:// DSN, or set PLAIT_JOURNAL; "
             "`plait run --journal FILE` creates it")
    try:
        journal = open_journal(spec)
    except PlaitError as exc:
        fail(str(exc))
    return cast(Journal, _Reading(journal))


def _sqlite_path(spec: str) -> Path | None:
    """The file a journal spec names, or None (PostgreSQL, in memory, a bad URL:
    `open_journal` says what is wrong with those)."""
    text = spec.strip()
    if text.lower().startswith("sqlite://"):
        text = text[len("sqlite://") :]
        if not text.startswith("/"):
            return None
    elif "://" in text or text in ("", ":memory:"):
        return None
    return Path(text).expanduser()


class _Reading:
    """A journal whose every method maps its errors to one `error: ...` line, so
    the commands that read it (and any read added to them) need no handler each."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._journal, name)
        if not callable(attr):
            return attr
        location = self._journal.location

        def call(*args: Any, **kwargs: Any) -> Any:
            with journal_errors(location):
                return attr(*args, **kwargs)

        return call


@app.command("runs")
def runs_command(
    journal: str = typer.Option(journal_option, "--journal", "-j", help=JOURNAL_HELP),
    limit: int = typer.Option(50, help="most runs to list, newest first"),
    as_json: bool = typer.Option(
        False, "--json", help="print the runs as JSON (fields: see docs/durable.md)"
    ),
) -> None:
    """List the runs in a journal: what (the question or the workflow), status,
    start, duration, calls, tokens.

    A run marked running whose owner is gone (its lease expired, or its process
    on this host no longer exists: killed, say) shows as crashed."""
    j = _open(journal)
    try:
        records = j.list_runs(limit=limit)
        crashed = {r.run_id for r in records if r.status == "running" and _crashed(j, r.run_id)}
        runs = [describe_run(r, r.run_id in crashed, _count_calls(j, r.run_id))
                for r in records]
    finally:
        j.close()
    if as_json:
        _print_json({"journal": clean(j.location), "runs": runs})
        return
    console = Console(highlight=False)
    render_runs(console, runs)
    same = "" if journal == journal_option() else " (with the same --journal)"
    for r in records:
        if r.run_id in crashed:
            console.print(f"crashed: {r.run_id} stopped without ending (its owner is gone); "
                          f"continue it with: plait resume {r.run_id}{same}",
                          soft_wrap=True, markup=False)


def _count_calls(j: Journal, run_id: str) -> int | None:
    """How many calls the run journaled, or None when its rows cannot be read
    (damaged): the listing still lists it, and `plait show` says what is wrong."""
    try:
        # Past the `_Reading` wrapper, whose errors end the command.
        return len(getattr(j, "_journal", j).load(run_id).intents)
    except JournalError:
        return None


def _crashed(j: Journal, run_id: str) -> bool:
    """A running run nobody owns alive (no lease, a stale one, or a dead owner)."""
    lease = j.get_lease(run_id)
    return lease is None or not lease.alive()


@app.command("show")
def show_command(
    run_id: str = typer.Argument(..., help="a run id from `plait runs`"),
    journal: str = typer.Option(journal_option, "--journal", "-j", help=JOURNAL_HELP),
    full: bool = typer.Option(
        False, "--full", help="every argument and value in full, not cut to one line"
    ),
    as_json: bool = typer.Option(
        False, "--json", help="print the run and its calls as JSON, values in full "
        "(fields: see docs/durable.md)"
    ),
) -> None:
    """What happened in a run: every call with its arguments, value or error,
    attempts, timing, tokens and whether it was replayed; for a question, the
    transcript: the question, each plan, each task's value, each decision, the answer."""
    j = _open(journal)
    try:
        state = j.load(run_id)
        crashed = state.run.status == "running" and _crashed(j, run_id)
    finally:
        j.close()
    calls = describe_calls(state, live=state.run.status == "running" and not crashed)
    run = describe_run(state.run, crashed, len(calls))
    question = describe_question(state.run, calls)
    if as_json:
        run.update(clean({"arguments": state.run.arguments,
                          "code_version": state.run.code_version}))
        _print_json({"journal": clean(j.location), "run": run, "calls": calls,
                     "question": question})
        return
    render_show(Console(highlight=False), run, calls, question, full)


def _print_json(data: object) -> None:
    # Plain print, not rich: JSON is for programs, and rich would wrap long lines.
    # ASCII-only: valid JSON whatever the model wrote (a lone surrogate, say).
    print(json.dumps(data, indent=2))


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
    wait: float = typer.Option(
        0.0, "--wait", min=0.0, metavar="SECONDS",
        help="if another process is running this run id, wait this long for it to end",
    ),
) -> None:
    """Continue a run from its journal: finished calls are replayed, not re-run."""
    j = _open(journal)
    try:
        record = j.get_run(run_id)
    finally:
        j.close()
    if record is None:
        fail(f"no run {run_id!r} in journal {j.location}")
    if record.entry.startswith("ask:"):  # a question: ask it again under its run id
        arguments = record.arguments or {}
        answer_question(
            arguments["question"], tools, as_json=as_json, timeout=600.0,
            model=arguments["model"], mode=record.entry.removeprefix("ask:"), journal=journal,
            run_id=run_id, allow_rerun=allow_rerun, asked_with=arguments.get("tools"), wait=wait,
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
                    wait=wait,
                    listeners=[progress],
                )
            )
        except RunError as exc:
            result = exc.result  # type: ignore[assignment]
        except PlaitError as exc:  # a damaged journal, an entry that cannot be imported
            failure = exc
    if failure is not None:  # after the progress summary: the error is the last line
        fail(about_journal(failure, j.location))
    report(result, as_json)
    if not result.ok:
        raise typer.Exit(1)
