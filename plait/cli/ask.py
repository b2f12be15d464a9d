"""`plait ask "question" [--tools module|file.py] [--mcp CMD|URL]... [--model SPEC]
[--mode compiler|react|tools]`

Shows the plan as it streams and the tasks, with their values, as they run (a
live view on a terminal, plain timestamped lines otherwise; see `_view`). The
answer alone goes to stdout, so `$(plait ask ...)` captures just it; the view,
a summary and the commands to try next go to stderr.

Exit codes: 0 answered, 2 an error (the model, the journal, an option),
124 `--timeout` passed (as timeout(1) exits), 130 interrupted by Ctrl-C
(128 + SIGINT, as a shell reports it). A journaled question stopped either way is
recorded as `cancelled`, its finished calls written, and the message says how to
resume it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any, NoReturn

import typer

from plait.runtime._engine import new_run_id
from plait._errors import PlaitError
from plait.runtime._tools import Tool
from plait.cli._app import app
from plait.cli._journal import NO_JOURNAL_HELP, WRITE_HELP, for_run, resume_hint
from plait.cli._load import load_module
from plait.cli._view import AskView, next_steps, summary
from plait.compiler import MODES, Answer, aask, tools_of

DEFAULT_TOOLS = "plait.examples.tools"
EXIT_ERROR = 2
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130


def answer_json(answer: Answer) -> str:
    return json.dumps({
        "question": answer.question,
        "answer": answer.text,
        "mode": answer.mode,
        "model": answer.model,
        "elapsed": answer.elapsed,
        "tokens": {"prompt": answer.prompt_tokens, "completion": answer.completion_tokens},
        "plans": [{"kind": p.kind, "text": p.text, "errors": [str(e) for e in p.errors]}
                  for p in answer.plans],
        "tasks": [{"number": t.number, "call": t.call, "state": t.state,
                   "value": t.value, "error": t.error, "duration": t.duration}
                  for t in answer.tasks],
        "llm_calls": [{"role": c.role, "prompt_tokens": c.prompt_tokens,
                       "completion_tokens": c.completion_tokens, "duration": c.duration,
                       "replayed": c.replayed} for c in answer.llm_calls],
        "unresolved": [str(e) for e in answer.unresolved],
        "speculation": (None if answer.speculation is None
                        else dataclasses.asdict(answer.speculation)),
    }, default=str)


@app.command("ask")
def ask_command(
    question: str = typer.Argument(None, help="the question to answer (or --questions FILE)"),
    tools: str = typer.Option(None, "--tools", show_default=DEFAULT_TOOLS,
                              help="module.name or path/to/file.py; every plait tool in it "
                              f"(default: {DEFAULT_TOOLS}, unless --mcp gives the tools)"),
    mcp: list[str] = typer.Option(
        None, "--mcp", metavar="CMD|URL",
        help="an MCP server's tools: a command line (started over stdio, no shell) or an "
        "http(s) URL (streamable HTTP); repeatable. Stopped when the question ends"),
    model: str = typer.Option("local", "--model", help="local | openai:MODEL | sim:..."),
    mode: str = typer.Option("compiler", "--mode", help="compiler | react | tools"),
    max_replans: int = typer.Option(2, "--max-replans", min=0,
                                    help="new plans the joiner may ask for"),
    timeout: float = typer.Option(
        600.0, "--timeout",
        help=f"seconds for the whole question; past it, exit code {EXIT_TIMEOUT}",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the answer and its record as JSON"),
    journal: str = typer.Option(None, "--journal", "-j", help=WRITE_HELP),
    no_journal: bool = typer.Option(False, "--no-journal", help=NO_JOURNAL_HELP),
    run_id: str = typer.Option(
        None, "--run-id", help="name the run; asking again with a journaled run id resumes it"
    ),
    allow_rerun: bool = typer.Option(
        False, help="on resume, run calls in doubt again even if not idempotent"
    ),
    wait: float = typer.Option(
        0.0, "--wait", min=0.0, metavar="SECONDS",
        help="if another process is running this run id, wait this long for it to end",
    ),
    questions: str = typer.Option(
        None, "--questions", metavar="FILE",
        help="ask every row's `question` of a .jsonl, .csv or .parquet file, many at once "
        "(a dataset job: see plait map); --timeout is then per question"),
    out: str = typer.Option(None, "--out", "-o", help="with --questions: write each row "
                            "with its answer here (.jsonl or .parquet)"),
    key: str = typer.Option(None, "--key", help="with --questions: the column naming a row"),
    window: int = typer.Option(16, "--window", min=1,
                               help="with --questions: most questions at once"),
    speculate: str = typer.Option(
        None, "--speculate", metavar="siblings|question|draft:MODEL",
        help="start read-only calls before the plan writes them (same answer; see "
        "docs/speculation.md)"),
) -> None:
    """Answer a question with tools: the plan streams, its tasks run in parallel.
    With --questions FILE, answer every question of a dataset (an evaluation sweep).

    Every call is journaled (see --journal, --no-journal): a question stopped any
    way continues with `plait resume RUN_ID`.
    Exit codes: 0 answered, 2 error, 124 --timeout passed, 130 interrupted (Ctrl-C).
    """
    if mode not in MODES:
        raise typer.BadParameter(f"must be one of {', '.join(MODES)}", param_hint="--mode")
    if (question is None) == (questions is None):
        raise typer.BadParameter("give a QUESTION or --questions FILE (one of them)")
    mcp = list(mcp or ())
    if tools is None and not mcp:
        tools = DEFAULT_TOOLS
    if questions is not None:
        _ask_each(questions, tools, mcp=mcp, out=out, key=key, window=window, as_json=as_json,
                  model=model, mode=mode, max_replans=max_replans, timeout=timeout,
                  journal=for_run(journal, no_journal), run_id=run_id, wait=wait)
        return
    if out is not None or key is not None:
        raise typer.BadParameter("--out and --key go with --questions")
    if speculate is not None and speculate not in ("siblings", "question") and not (
            speculate.startswith("draft:") and len(speculate) > 6):
        raise typer.BadParameter("must be siblings, question or draft:MODEL",
                                 param_hint="--speculate")
    answer_question(question, tools, mcp=mcp, as_json=as_json, model=model, mode=mode,
                    max_replans=max_replans, timeout=timeout,
                    journal=for_run(journal, no_journal), run_id=run_id,
                    allow_rerun=allow_rerun, wait=wait, speculate=speculate)


def answer_question(question: str, tools: str | None, *, as_json: bool, timeout: float,
                    asked_with: Sequence[str] | None = None, mcp: Sequence[str] = (),
                    **options: Any) -> None:
    """Ask with the tools of module or file `tools` and of the MCP servers `mcp`,
    showing the work; print the answer.

    Shared by `plait ask` and `plait resume` (of a journaled question, whose
    journal names the tools it was `asked_with`: the module must still have them).
    """
    from plait.llm import LLMError

    if options.get("journal") is not None and not options.get("run_id"):
        # Named here, not in aask, so that an interrupted run can be resumed by it.
        options["run_id"] = new_run_id()
    try:
        # The MCP servers are stopped on every way out of this block (an answer, an
        # error, Ctrl-C, --timeout) before the exit code is set.
        with contextlib.ExitStack() as servers:
            chosen = _tool_source(tools, mcp, asked_with, servers)
            view = AskView()
            with view:
                answer = asyncio.run(aask(question, chosen, timeout=timeout, on_event=view,
                                          **options))
    except (LLMError, PlaitError) as exc:  # the model, or a journal that cannot be used
        _fail(f"error: {' '.join(str(exc).split())}", EXIT_ERROR)
    except TimeoutError:
        _fail(f"error: no answer within {timeout:g}s (--timeout)"
              f"{_resumable(options, tools, mcp)}", EXIT_TIMEOUT)
    except KeyboardInterrupt:  # asyncio.run has cancelled the question and waited for it
        _fail(f"interrupted{_resumable(options, tools, mcp)}", EXIT_INTERRUPTED)
    if as_json:
        print(answer_json(answer))
        return
    for error in answer.unresolved:
        print(f"not run: {error}", file=sys.stderr)
    print(answer.text or "(no answer)", flush=True)
    for line in [summary(answer), *next_steps(answer, options.get("journal"))]:
        print(line, file=sys.stderr)


def _ask_each(questions: str, tools: str | None, *, mcp: Sequence[str], out: str | None,
              key: str | None, window: int, as_json: bool, model: str, journal: str | None,
              run_id: str | None, wait: float, **options: Any) -> None:
    """Every row's question of a dataset, `window` at a time (`plait.asker`)."""
    from plait.cli.map import StdoutRows, run_job
    from plait.compiler import asker
    from plait.data import amap

    if journal is not None and not run_id:
        run_id = new_run_id()
    with contextlib.ExitStack() as servers:
        runner = asker(_tool_source(tools, mcp, None, servers), model=model, **options)
        run_job(lambda: amap(runner, questions, key=key, out=out or StdoutRows(), window=window,
                             journal=journal,
                             run_id=run_id, wait=wait, progress=True, raise_on_error=False),
                as_json, run_id, journal)


def _tool_source(tools: str | None, mcp: Sequence[str], asked_with: Sequence[str] | None,
                 servers: contextlib.ExitStack) -> ModuleType | list[Tool]:
    """The tools module alone, or its tools and every MCP server's (each server
    started here and stopped when `servers` closes)."""
    if not mcp:
        return _tools_module(tools or DEFAULT_TOOLS, asked_with)
    from plait.tools import mcp_tools

    found = list(tools_of(_tools_module(tools, None))[0]) if tools else []
    for target in mcp:
        found.extend(servers.enter_context(mcp_tools(target)))
    _same_tools(found, asked_with, "these have", "the --tools and --mcp", "--mcp")
    return found


def _tools_module(tools: str, asked_with: Sequence[str] | None) -> ModuleType:
    module = load_module(tools)
    found, _ = tools_of(module)
    if not found:
        raise typer.BadParameter(f"no plait tools in {tools}", param_hint="--tools")
    _same_tools(found, asked_with, f"{tools} has", "the module or file", "--tools")
    return module


def _same_tools(found: Sequence[Tool], asked_with: Sequence[str] | None, these: str,
                source: str, hint: str) -> None:
    """A resumed question needs the tools it was asked with: their names, at least."""
    names = sorted(t.name for t in found)
    if asked_with is not None and names != sorted(asked_with):
        raise typer.BadParameter(
            f"the question was asked with tools {', '.join(sorted(asked_with))}; {these} "
            f"{', '.join(names)}. Pass {source} it was asked with.", param_hint=hint)


def _fail(message: str, code: int) -> NoReturn:
    print(message, file=sys.stderr)
    raise typer.Exit(code)


def _resumable(options: dict[str, Any], tools: str | None = None,
               mcp: Sequence[str] = ()) -> str:
    """For a journaled question (recorded as cancelled): the command that resumes it
    (its tools module is in the journal: no --tools; its MCP servers are not)."""
    if options.get("journal") is None:
        return ""
    extra = [*(["--tools", tools] if mcp and tools else []),
             *(w for target in mcp for w in ("--mcp", target))]
    return resume_hint(options["run_id"], options["journal"], extra)
