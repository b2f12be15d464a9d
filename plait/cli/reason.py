"""`plait reason "question" --model SPEC --fork threadweaver|multiverse|apr`

The model writes parallel blocks; plait runs each block's threads as concurrent
calls and joins them. The live view is the run's own (`plait._progress`): the
"reason" and "thread" calls in flight, then one line per call. The joined text
alone goes to stdout; the blocks and figures to stderr.

Exit codes: 0 done, 2 an error (the model, the journal, an option), 130 interrupted.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import typer

from plait.runtime._engine import new_run_id
from plait._errors import PlaitError
from plait._progress import Progress
from plait.cli._app import app
from plait.cli._fail import fail
from plait.cli._journal import NO_JOURNAL_HELP, WRITE_HELP, for_run, resume_hint
from plait.journal import RunRecord
from plait.reason import Reasoning, areason
from plait.reason._api import ENTRY, resume_options
from plait.reason._formats import FORMATS

EXIT_INTERRUPTED = 130


@app.command("reason")
def reason_command(
    question: str = typer.Argument(..., help="the question to reason about"),
    model: str = typer.Option("local", "--model", help="local | openai:MODEL | sim:..."),
    fork: str = typer.Option("threadweaver", "--fork", help=" | ".join(sorted(FORMATS))),
    max_tokens: int = typer.Option(2048, "--max-tokens", min=1, help="one call's output bound"),
    budget: int = typer.Option(None, "--budget", min=1,
                               help="completion tokens of the whole trajectory "
                               "(default 8 x --max-tokens)"),
    timeout: float = typer.Option(120.0, "--timeout", help="seconds for each call's reply"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    journal: str = typer.Option(None, "--journal", "-j", help=WRITE_HELP),
    no_journal: bool = typer.Option(False, "--no-journal", help=NO_JOURNAL_HELP),
    run_id: str = typer.Option(None, "--run-id",
                               help="name the run; reasoning again under it replays it"),
) -> None:
    """Reason about a question with parallel threads: blocks the model opens run
    as concurrent calls, joined back as the format's reference orchestrator does."""
    if fork.lower() not in FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(sorted(FORMATS))}",
                                 param_hint="--fork")
    spec = for_run(journal, no_journal)
    if spec is not None and not run_id:
        run_id = new_run_id()
    show(dict(question=question, model=model, fork=fork, max_tokens=max_tokens, budget=budget,
              timeout=timeout), spec, run_id, as_json)


def resume_reasoning(record: RunRecord, journal: str, as_json: bool) -> None:
    """`plait resume RUN_ID` of a reasoning run: reason again under its run id."""
    show(resume_options(record.arguments or {}), journal, record.run_id, as_json)


def show(options: dict[str, Any], journal: str | None, run_id: str | None,
         as_json: bool) -> None:
    """Reason under the live view; print the joined text, then the blocks."""
    from plait.llm import LLMError

    failure: Exception | None = None
    interrupted = False
    with Progress() as progress:
        try:
            result = asyncio.run(areason(**options, journal=journal, run_id=run_id,
                                         listeners=[progress]))
        except (LLMError, PlaitError) as exc:
            failure = exc
        except KeyboardInterrupt:
            interrupted = True
    if failure is not None:
        fail(f"error: {' '.join(str(failure).split())}")
    if interrupted:
        print(f"interrupted{resume_hint(run_id, journal) if run_id else ''}", file=sys.stderr)
        raise typer.Exit(EXIT_INTERRUPTED)
    if as_json:
        print(json.dumps(as_dict(result)))
        return
    print(result.text, flush=True)
    for line in summary(result):
        print(line, file=sys.stderr)


__all__ = ["ENTRY", "reason_command", "resume_reasoning"]


def as_dict(r: Reasoning) -> dict:
    return {
        "run_id": r.run_id, "fork": r.fork, "status": r.status, "text": r.text,
        "tokens": r.tokens, "critical_path_tokens": r.critical_path_tokens,
        "elapsed": r.elapsed, "calls": r.calls, "replayed": r.replayed,
        "problems": [list(p) for p in r.problems],
        "blocks": [{"depth": b.depth, "numbers": list(b.numbers), "problems": list(b.problems),
                    "threads": [{"number": t.number, "tokens": t.tokens, "ttft": t.ttft,
                                 "start": t.start, "end": t.end, "cut": t.cut}
                                for t in b.threads]} for b in r.blocks],
    }


def summary(r: Reasoning) -> list[str]:
    lines = []
    for k, b in enumerate(r.blocks, 1):
        threads = ", ".join(f"{t.number}: {t.tokens} tok {t.start:.2f}-{t.end:.2f}s"
                            for t in b.threads) or "not forked"
        why = f" [{', '.join(b.problems)}]" if b.problems else ""
        lines.append(f"block {k} (depth {b.depth}): {threads}{why}")
    ratio = r.tokens / max(r.critical_path_tokens, 1)
    replayed = f", {r.replayed} replayed" if r.replayed else ""
    lines.append(f"{r.calls} calls{replayed}; {r.tokens} tokens, {r.critical_path_tokens} on "
                 f"the longest path ({ratio:.2f}x); {r.elapsed:.2f}s")
    return lines
