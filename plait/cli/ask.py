"""`plait ask "question" [--tools module|file.py] [--model SPEC] [--mode compiler|react]`

Shows the plan as it streams and the tasks as they run (a live view on a
terminal, plain timestamped lines otherwise), then the answer and a summary.

Exit codes: 0 answered, 2 an error (the model, the journal, an option),
124 `--timeout` passed (as timeout(1) exits), 130 interrupted by Ctrl-C
(128 + SIGINT, as a shell reports it). A journaled question stopped either way is
recorded as `cancelled`, its finished calls written, and the message says how to
resume it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from types import ModuleType, TracebackType
from typing import Any, NoReturn, TextIO

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from plait import _events as ev
from plait._engine import new_run_id
from plait._errors import PlaitError
from plait.cli._app import app
from plait.cli._journal import NO_JOURNAL_HELP, WRITE_HELP, for_run, resume_hint
from plait.cli._load import load_module
from plait.compiler import MODES, Answer, aask, tools_of
from plait.compiler import _records as rc
from plait.compiler._session import LLM_ROLES

DEFAULT_TOOLS = "plait.examples.tools"
EXIT_ERROR = 2
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130


class AskView:
    """Listens to a question's events; draws the plan and the tasks."""

    def __init__(self, file: TextIO | None = None, live: bool | None = None) -> None:
        self.file = file or sys.stderr
        self.live = self.file.isatty() if live is None else live
        self.console = Console(file=self.file, force_terminal=self.live or None, highlight=False)
        self.t0 = time.perf_counter()
        self.plan_text: dict[int, str] = {}
        self.plan_kind: dict[int, str] = {}
        self.partial = ""  # plain mode: the plan line being written
        self.tasks: dict[int, dict[str, Any]] = {}  # task number -> row
        self.node_task: dict[int, int] = {}
        self.early: dict[int, list[Any]] = {}  # node events that came before their task's
        self.status = "planning"
        self.problems: list[str] = []
        self._live: Live | None = None

    def __enter__(self) -> AskView:
        if self.live:
            self._live = Live(console=self.console, refresh_per_second=8, transient=True,
                              get_renderable=self._render)
            self._live.__enter__()
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(typ, exc, tb)
            self._live = None
            self.console.print(self._render())

    # ------------------------------------------------------------ events

    def __call__(self, event: Any) -> None:
        t = event.t - self.t0
        if isinstance(event, ev.RunStarted):
            self._line(t, f"run {event.run_id} started")
        elif isinstance(event, rc.PlanStarted):
            self.plan_text[event.plan] = ""
            self.plan_kind[event.plan] = event.kind
            self.status = {"plan": "planning", "repair": "repairing the plan",
                           "replan": "replanning", "react": f"step {event.round + 1}"}[event.kind]
            if event.kind != "plan":
                self._line(t, f"-- {self.status}")
        elif isinstance(event, rc.PlanText):
            self.plan_text[event.plan] = self.plan_text.get(event.plan, "") + event.text
            if not self.live:
                self.partial += event.text
                while "\n" in self.partial:
                    line, self.partial = self.partial.split("\n", 1)
                    if line.strip():
                        self._line(t, f"plan | {line}")
        elif isinstance(event, rc.PlanFinished):
            if not self.live and self.partial.strip():
                self._line(t, f"plan | {self.partial}")
            self.partial = ""
            self.status = "running tasks"
        elif isinstance(event, rc.TaskDispatched):
            self.node_task[event.node] = event.number
            self.tasks[event.number] = {"call": event.call, "state": "waiting", "since": t,
                                        "took": None, "value": ""}
            # A task with no pending inputs starts inside dispatch, before this event.
            for early in self.early.pop(event.node, ()):
                self(early)
        elif isinstance(event, rc.PlanProblem):
            self.problems.append(str(event.error))
            self._line(t, f"plan error: {event.error}")
        elif isinstance(event, rc.JoinerStarted):
            self.status = "joining"
        elif isinstance(event, rc.Decided):
            d = event.decision
            if d.action == "replan":
                self._line(t, f"joiner: replan ({d.answer})")
            self.status = "answered" if d.action == "finish" else "replanning"
        elif isinstance(event, ev.NodeEvent):
            if event.tool in LLM_ROLES:  # the model's own calls: the plan text shows them
                return
            number = self.node_task.get(event.node)
            row = self.tasks.get(number) if number is not None else None
            if row is None:
                if not isinstance(event, ev.NodeAdded):
                    self.early.setdefault(event.node, []).append(event)
                return
            if isinstance(event, ev.NodeStarted):
                row.update(state="running", since=t)
                self._line(t, f"task {number} started: {row['call']}")
            elif isinstance(event, ev.NodeFinished):
                row.update(state="done", took=event.duration)
                self._line(t, f"task {number} done in {event.duration:.2f}s")
            elif isinstance(event, ev.NodeFailed):
                row.update(state="failed", took=t - row["since"], value=event.error)
                self._line(t, f"task {number} failed: {event.error}")
            elif isinstance(event, (ev.NodeSkipped, ev.NodeCancelled)):
                row.update(state="skipped")
                self._line(t, f"task {number} skipped")

    def _line(self, t: float, text: str) -> None:
        if self._live is None:
            print(f"[{t:7.2f}s] {text}", file=self.file, flush=True)

    def _render(self) -> Group:
        now = time.perf_counter() - self.t0
        parts: list[Any] = []
        for i, text in self.plan_text.items():
            title = self.plan_kind.get(i, "plan")
            parts.append(Text(f"{title}:", style="bold"))
            parts.append(Text(text.rstrip() or "...", style="cyan"))
        table = Table(box=None, padding=(0, 1), show_header=bool(self.tasks))
        table.add_column("#", justify="right")
        table.add_column("call", overflow="ellipsis", max_width=60)
        table.add_column("state")
        table.add_column("time", justify="right")
        for number, row in sorted(self.tasks.items()):
            took = row["took"]
            if took is None and row["state"] == "running":
                took = now - row["since"]
            style = {"done": "green", "failed": "red", "running": "yellow"}.get(row["state"], "")
            table.add_row(str(number), row["call"], Text(row["state"], style=style),
                          "" if took is None else f"{took:.2f}s")
        parts.append(table)
        parts.append(Text(f"{self.status} ... {now:.1f}s", style="dim"))
        return Group(*parts)


def summary(answer: Answer) -> str:
    states: dict[str, int] = {}
    for t in answer.tasks:
        states[t.state] = states.get(t.state, 0) + 1
    task_text = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"
    plans = sum(1 for p in answer.plans if p.kind != "react")
    calls = len(answer.llm_calls)
    replayed = sum(c.replayed for c in answer.llm_calls)
    extra = (f"{plans} plan(s), {answer.replans} replan(s)" if answer.mode == "compiler"
             else f"{len(answer.plans)} step(s)")
    return (
        f"{answer.elapsed:.2f}s · {answer.tokens} tokens ({answer.prompt_tokens} prompt + "
        f"{answer.completion_tokens} completion, {calls} LLM calls"
        f"{f', {replayed} replayed from the journal' if replayed else ''}) · "
        f"{len(answer.tasks)} task(s): {task_text} · {extra}"
    )


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
    }, default=str)


@app.command("ask")
def ask_command(
    question: str = typer.Argument(..., help="the question to answer"),
    tools: str = typer.Option(DEFAULT_TOOLS, "--tools",
                              help="module.name or path/to/file.py; every plait tool in it"),
    model: str = typer.Option("local", "--model", help="local | openai:MODEL | sim:..."),
    mode: str = typer.Option("compiler", "--mode", help="compiler | react"),
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
) -> None:
    """Answer a question with tools: the plan streams, its tasks run in parallel.

    Every call is journaled (see --journal, --no-journal): a question stopped any
    way continues with `plait resume RUN_ID`.
    Exit codes: 0 answered, 2 error, 124 --timeout passed, 130 interrupted (Ctrl-C).
    """
    if mode not in MODES:
        raise typer.BadParameter(f"must be one of {', '.join(MODES)}", param_hint="--mode")
    answer_question(question, tools, as_json=as_json, model=model, mode=mode,
                    max_replans=max_replans, timeout=timeout,
                    journal=for_run(journal, no_journal), run_id=run_id,
                    allow_rerun=allow_rerun, wait=wait)


def answer_question(question: str, tools: str, *, as_json: bool, timeout: float,
                    asked_with: Sequence[str] | None = None, **options: Any) -> None:
    """Ask with the tools of module or file `tools`, showing the work; print the answer.

    Shared by `plait ask` and `plait resume` (of a journaled question, whose
    journal names the tools it was `asked_with`: the module must still have them).
    """
    from plait.llm import LLMError

    if options.get("journal") is not None and not options.get("run_id"):
        # Named here, not in aask, so that an interrupted run can be resumed by it.
        options["run_id"] = new_run_id()
    try:
        module = _tools_module(tools, asked_with)
        view = AskView()
        with view:
            answer = asyncio.run(aask(question, module, timeout=timeout, on_event=view,
                                      **options))
    except (LLMError, PlaitError) as exc:  # the model, or a journal that cannot be used
        _fail(f"error: {' '.join(str(exc).split())}", EXIT_ERROR)
    except TimeoutError:
        _fail(f"error: no answer within {timeout:g}s (--timeout){_resumable(options)}",
              EXIT_TIMEOUT)
    except KeyboardInterrupt:  # asyncio.run has cancelled the question and waited for it
        _fail(f"interrupted{_resumable(options)}", EXIT_INTERRUPTED)
    if as_json:
        print(answer_json(answer))
        return
    for error in answer.unresolved:
        print(f"not run: {error}", file=sys.stderr)
    print(answer.text or "(no answer)")
    print(summary(answer))


def _tools_module(tools: str, asked_with: Sequence[str] | None) -> ModuleType:
    module = load_module(tools)
    found, _ = tools_of(module)
    if not found:
        raise typer.BadParameter(f"no plait tools in {tools}", param_hint="--tools")
    names = sorted(t.name for t in found)
    if asked_with is not None and names != sorted(asked_with):
        raise typer.BadParameter(
            f"the question was asked with tools {', '.join(sorted(asked_with))}; {tools} has "
            f"{', '.join(names)}. Pass the module or file it was asked with.",
            param_hint="--tools")
    return module


def _fail(message: str, code: int) -> NoReturn:
    print(message, file=sys.stderr)
    raise typer.Exit(code)


def _resumable(options: dict[str, Any]) -> str:
    """For a journaled question (recorded as cancelled): the command that resumes it
    (its tools module is in the journal: no --tools)."""
    if options.get("journal") is None:
        return ""
    return resume_hint(options["run_id"], options["journal"])
