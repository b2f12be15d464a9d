"""`plait run module:workflow args...`"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer

from plait._api import Workflow, arun
from plait._errors import PlaitError, RunError
from plait._progress import Progress
from plait._result import RunResult
from plait.cli._app import app
from plait.cli._fail import about_journal, fail
from plait.cli._load import load_object
from plait.journal._postgres import redact

# Lists/objects nested in one argument. Far past what a command line needs, and
# far below where the runtime's own recursion (identity, refs) would give out.
MAX_ARG_DEPTH = 100


def _arg(text: str, number: int) -> Any:
    """A command-line argument as JSON when it parses (numbers, lists), else a string."""
    depth = _nesting(text)
    if depth > MAX_ARG_DEPTH:
        fail(f"argument {number} ({text[:20]}...) nests lists or objects {depth} levels deep; "
             f"plait run takes at most {MAX_ARG_DEPTH}")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _nesting(text: str) -> int:
    """How deep `[` and `{` nest in JSON text, outside strings (without recursing)."""
    if "[" not in text and "{" not in text:
        return 0
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


@app.command("run")
def run_command(
    target: str = typer.Argument(..., help="module:workflow or path/to/file.py:workflow"),
    args: list[str] = typer.Argument(None, help="arguments (JSON when they parse)"),
    max_concurrency: int = typer.Option(None, help="at most this many calls in flight"),
    on_error: str = typer.Option("stop", help="stop | cancel | continue"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    journal: str = typer.Option(
        None, "--journal", "-j", help="journal every call to this SQLite file or postgresql:// DSN"
    ),
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
) -> None:
    """Run a workflow with a live progress display, then print its value and timings."""
    if on_error not in ("stop", "cancel", "continue"):
        raise typer.BadParameter("must be stop, cancel or continue", param_hint="--on-error")
    values = [_arg(a, i) for i, a in enumerate(args or [], 1)]
    wf = load_object(target)
    if not isinstance(wf, Workflow):
        fail(f"{target} is not a @plait.workflow")
    failure: PlaitError | None = None
    with Progress() as progress:
        try:
            result = asyncio.run(
                arun(
                    wf,
                    *values,
                    max_concurrency=max_concurrency,
                    on_error=on_error,  # type: ignore[arg-type]
                    listeners=[progress],
                    journal=journal,
                    run_id=run_id,
                    allow_rerun=allow_rerun,
                    wait=wait,
                )
            )
        except RunError as exc:
            result = exc.result  # type: ignore[assignment]
        except PlaitError as exc:  # a journal that cannot be opened, a mismatched run id
            failure = exc
    if failure is not None:  # after the progress summary: the error is the last line
        fail(about_journal(failure, redact(journal)) if journal else str(failure))
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
    if result.ok:
        print(result.value)
    else:
        print(f"run failed: {result.error}")
        for node, err in sorted(result.errors.items()):
            print(f"  ${node} {result.nodes[node].tool}: {type(err).__name__}: {err}")
    path = " -> ".join(f"${i} {result.nodes[i].tool}" for i in result.critical_path)
    replayed = f", {result.replayed} replayed from the journal" if result.replayed else ""
    print(
        f"\n{len(result.nodes)} calls{replayed} in {result.elapsed:.3f}s "
        f"(sum of call times {busy:.3f}s, {busy / max(result.elapsed, 1e-9):.1f}x overlap); "
        f"critical path {result.critical_path_time():.3f}s: {path}"
    )
