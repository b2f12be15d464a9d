"""`plait run module:workflow args...` (and the reporting `plait resume` shares)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import typer

from plait._api import arun
from plait.runtime._engine import new_run_id
from plait._errors import PlaitError, RunError
from plait.runtime._events import Listener
from plait._progress import Progress
from plait.runtime._result import RunResult
from plait.cli._app import app
from plait.cli._args import workflow_arguments
from plait.cli._fail import about_journal, fail
from plait.cli._journal import NO_JOURNAL_HELP, WRITE_HELP, for_run, resume_hint
from plait.cli._load import load_workflow
from plait.journal._postgres import redact

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it

@app.command("run")
def run_command(
    target: str = typer.Argument(..., help="module:workflow or path/to/file.py:workflow"),
    args: list[str] = typer.Argument(
        None, help="the workflow's arguments, converted to its parameters' type hints "
        "(JSON when they parse, for a parameter without one)"
    ),
    max_concurrency: int = typer.Option(None, help="at most this many calls in flight"),
    on_error: str = typer.Option("stop", help="stop | cancel | continue"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    journal: str = typer.Option(None, "--journal", "-j", help=WRITE_HELP),
    no_journal: bool = typer.Option(False, "--no-journal", help=NO_JOURNAL_HELP),
    run_id: str = typer.Option(
        None, help="name the run; a journaled run with this id is resumed"
    ),
    allow_rerun: bool = typer.Option(
        False, help="on resume, run calls in doubt again even if not idempotent"
    ),
    wait: float = typer.Option(
        0.0, "--wait", min=0.0, metavar="SECONDS",
        help="if another process is running this run id, wait this long for it to end",
    ),
    executor: str = typer.Option(
        "local", help="where tool calls run: local | ray (the cluster at RAY_ADDRESS; "
        "needs plait[ray])"
    ),
) -> None:
    """Run a workflow with a live progress display, then print its value and timings.

    Every call is journaled (see --journal, --no-journal): a run stopped any way
    continues with `plait resume RUN_ID`. Exit codes: 0 done, 1 the run failed,
    2 an error (arguments, the journal), 130 interrupted (Ctrl-C).
    """
    if on_error not in ("stop", "cancel", "continue"):
        raise typer.BadParameter("must be stop, cancel or continue", param_hint="--on-error")
    if executor not in ("local", "ray"):
        raise typer.BadParameter("must be local or ray", param_hint="--executor")
    wf = load_workflow(target)
    values = workflow_arguments(wf, args or [])
    spec = for_run(journal, no_journal)
    if spec is not None and not run_id:
        run_id = new_run_id()  # named here, so that a stopped run can be resumed by it
    start_run(
        lambda listeners: arun(
            wf, *values, max_concurrency=max_concurrency,
            on_error=on_error,  # type: ignore[arg-type]
            listeners=listeners, journal=spec, run_id=run_id, allow_rerun=allow_rerun, wait=wait,
            executor=executor,
        ),
        as_json, run_id, spec,
    )


def start_run(run: Callable[[list[Listener]], Coroutine[Any, Any, RunResult]], as_json: bool,
              run_id: str | None, journal: str | None, location: str | None = None) -> None:
    """Run (or resume) a workflow under a progress display, then report it; shared by
    `plait run` and `plait resume`. `run(listeners)` is the run's coroutine; errors
    name the journal by `location` (default: its spec, without a password)."""
    failure: PlaitError | None = None
    interrupted = False
    with Progress() as progress:
        try:
            result = asyncio.run(run([progress]))
        except RunError as exc:
            result = exc.result  # type: ignore[assignment]
        except PlaitError as exc:  # a journal that cannot be opened, a mismatched run id
            failure = exc
        except KeyboardInterrupt:  # asyncio.run has cancelled the run and waited for it
            interrupted = True
    # After the progress summary: the error is the last line.
    if failure is not None:
        where = location or (redact(journal) if journal else None)
        fail(about_journal(failure, where) if where else str(failure))
    if interrupted:
        hint = resume_hint(run_id, journal) if run_id else ""
        print(f"interrupted{hint}", file=sys.stderr)
        raise typer.Exit(EXIT_INTERRUPTED)
    report(result, as_json)
    if not result.ok:
        raise typer.Exit(1)


def report(result: RunResult, as_json: bool) -> None:
    busy = sum(n.duration or 0.0 for n in result.nodes)
    if as_json:
        print(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "status": result.status,
                    "replayed": result.replayed,
                    "value": result.value,
                    "tokens": result.tokens,
                    "error": str(result.error) if result.error else None,
                    "elapsed": result.elapsed,
                    "critical_path": result.critical_path,
                    "nodes": [
                        {"id": n.id, "tool": n.tool, "state": n.state, "duration": n.duration,
                         "tokens": n.tokens}
                        for n in result.nodes
                    ],
                },
                default=str,
            )
        )
        return
    # As `plait ask`: the value alone on stdout (`value=$(plait run ...)` captures
    # just it); what went wrong and the summary on stderr.
    if result.ok:
        print(result.value)
    else:
        print(f"run failed: {result.error}", file=sys.stderr)
        for node, err in sorted(result.errors.items()):
            print(f"  ${node} {result.nodes[node].tool}: {type(err).__name__}: {err}",
                  file=sys.stderr)
    path = " -> ".join(f"${i} {result.nodes[i].tool}" for i in result.critical_path)
    replayed = f", {result.replayed} replayed from the journal" if result.replayed else ""
    print(
        f"\n{len(result.nodes)} calls{replayed} in {result.elapsed:.3f}s "
        f"(sum of call times {busy:.3f}s, {busy / max(result.elapsed, 1e-9):.1f}x overlap); "
        f"critical path {result.critical_path_time():.3f}s: {path}",
        file=sys.stderr,
    )
