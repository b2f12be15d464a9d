"""What `plait ask` shows while it works and after: the live view, the summary, what next.

On a terminal a rich live view redraws the plan and a table of the tasks; in a
pipe each event is one timestamped line. Either way every task shows its value
(shortened to one line) the moment it finishes, so the answer can be checked
against what the tools returned. ReAct's plain output is one line per step.
"""

from __future__ import annotations

import shlex
import sys
import time
from types import TracebackType
from typing import Any, Self, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from plait.runtime import _events as ev
from plait.compiler import Answer
from plait.compiler import _records as rc
from plait.compiler._react import parse_step
from plait.compiler._session import LLM_ROLES

VALUE_WIDTH = 72  # a shortened value: one line of at most this many characters
THOUGHT_WIDTH = 48


def shorten(value: Any, width: int = VALUE_WIDTH) -> str:
    """`value` on one line of at most `width` characters: text as it is, anything
    else as its repr, whitespace runs collapsed, the cut marked with `...`."""
    text = value if isinstance(value, str) and value else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


class AskView:
    """Listens to a question's events; draws the plan and the tasks with their values."""

    def __init__(self, file: TextIO | None = None, live: bool | None = None,
                 console: Console | None = None) -> None:
        self.file = file or sys.stderr
        self.live = self.file.isatty() if live is None else live
        self.console = console or Console(file=self.file, force_terminal=self.live or None,
                                          highlight=False)
        self.t0 = time.perf_counter()
        self.plan_text: dict[int, str] = {}
        self.plan_title: dict[int, str] = {}
        self.partial = ""  # plain mode: the plan line being written
        self.tasks: dict[int, dict[str, Any]] = {}  # task number -> row
        self.node_task: dict[int, int] = {}
        self.early: dict[int, list[Any]] = {}  # node events that came before their task's
        self.status = "planning"
        self.problems: list[str] = []
        # ReAct, plain mode: the step not shown yet, as (plan index, step number).
        self.step: tuple[int, int] | None = None
        self._live: Live | None = None

    def __enter__(self) -> Self:
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
        else:
            self._step_line(time.perf_counter() - self.t0)

    # ------------------------------------------------------------ events

    def __call__(self, event: Any) -> None:
        t = event.t - self.t0
        if isinstance(event, ev.RunStarted):
            self._line(t, f"run {event.run_id} started")
        elif isinstance(event, ev.RunFinished):
            self._step_line(t)
        elif isinstance(event, rc.PlanStarted):
            self.plan_text[event.plan] = ""
            self.status = {"plan": "planning", "repair": "repairing the plan",
                           "replan": "replanning", "react": f"step {event.round + 1}",
                           "tools": f"step {event.round + 1}"}[event.kind]
            # A function-calling step shows as a plan does: its calls are its tasks.
            stepwise = event.kind in ("react", "tools")
            self.plan_title[event.plan] = self.status if stepwise else event.kind
            if event.kind == "react":
                self._step_line(t)  # the step before, if no task of it has ended it
                self.step = (event.plan, event.round + 1)  # its task has its number
            elif event.kind != "plan":
                self._line(t, f"-- {self.status}")
        elif isinstance(event, rc.PlanText):
            self.plan_text[event.plan] = self.plan_text.get(event.plan, "") + event.text
            if self.step is None and not self.live:
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
                                        "took": None, "value": "", "replayed": False,
                                        "guessed": event.guessed}
            # A task with no pending inputs starts inside dispatch, before this event.
            for early in self.early.pop(event.node, ()):
                self(early)
        elif isinstance(event, rc.GuessStarted):
            if not self.live:
                self._line(t, f"guess | {event.call}")
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
            self._node(t, event)

    def _node(self, t: float, event: ev.NodeEvent) -> None:
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
            if self.step is None:
                guessed = " (its guess, adopted)" if row.get("guessed") else ""
                self._line(t, f"task {number} started: {row['call']}{guessed}")
        elif isinstance(event, ev.NodeFinished):
            row.update(state="done", took=event.duration, value=shorten(event.value),
                       replayed=event.replayed)
            how = "(replayed from the journal)" if event.replayed else f"in {event.duration:.2f}s"
            if self.step is None:
                self._line(t, f"task {number} done {how} -> {row['value']}")
        elif isinstance(event, ev.NodeFailed):
            row.update(state="failed", took=t - row["since"], value=shorten(event.error))
            if self.step is None:
                self._line(t, f"task {number} failed: {row['value']}")
        elif isinstance(event, (ev.NodeSkipped, ev.NodeCancelled)):
            row.update(state="skipped")
            if self.step is None:
                self._line(t, f"task {number} skipped")
        else:
            return
        if self.step is not None and row["state"] != "running":
            self._step_line(t)

    def _step_line(self, t: float) -> None:
        """Plain ReAct: the step not yet shown, on one line: thought | action -> observation."""
        if self.step is None or self._live is not None:
            return
        (index, number), self.step = self.step, None
        thought, action = parse_step(self.plan_text.get(index, ""))
        row = self.tasks.get(number)
        line = f"step {number}: {shorten(thought, THOUGHT_WIDTH) if thought else '(no thought)'}"
        if action is None:
            line += " | (no action)"
        elif row is not None:
            observed = {"done": "replayed -> " if row["replayed"] else "-> ",
                        "failed": "-> error: "}.get(row["state"], f"-> ({row['state']})")
            line += f" | {row['call']} {observed}{row['value'] if row['value'] else ''}"
        else:
            line += f" | {shorten(action)}"
            if not action.startswith("finish"):
                line += " -> not run"
        self._line(t, line.rstrip())

    def _line(self, t: float, text: str) -> None:
        if self._live is None:
            print(f"[{t:7.2f}s] {text}", file=self.file, flush=True)

    def _render(self) -> Group:
        now = time.perf_counter() - self.t0
        parts: list[Any] = []
        for i, text in self.plan_text.items():
            parts.append(Text(f"{self.plan_title.get(i, 'plan')}:", style="bold"))
            parts.append(Text(text.rstrip() or "...", style="cyan"))
        table = Table(box=None, padding=(0, 1), show_header=bool(self.tasks))
        # On a narrow terminal the call and the value give way (cut, on one line),
        # never the number, the state or the time.
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("call", max_width=40)
        table.add_column("state", no_wrap=True)
        table.add_column("time", justify="right", no_wrap=True)
        table.add_column("value", max_width=VALUE_WIDTH)
        for number, row in sorted(self.tasks.items()):
            took = row["took"]
            if took is None and row["state"] == "running":
                took = now - row["since"]
            state = "replayed" if row["replayed"] else row["state"]
            style = {"done": "green", "replayed": "green", "failed": "red",
                     "running": "yellow"}.get(state, "")
            table.add_row(str(number), _cell(row["call"]), Text(state, style=style),
                          "" if took is None or row["replayed"] else f"{took:.2f}s",
                          _cell(row["value"], "red" if state == "failed" else ""))
        parts.append(table)
        parts.append(Text(f"{self.status} ... {now:.1f}s", style="dim"))
        return Group(*parts)


def _cell(text: str, style: str = "") -> Text:
    """One line, cut with an ellipsis where its column ends (Text, so never markup)."""
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


def summary(answer: Answer) -> str:
    states: dict[str, int] = {}
    for t in answer.tasks:
        states[t.state] = states.get(t.state, 0) + 1
    task_text = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"
    plans = sum(1 for p in answer.plans if p.kind not in ("react", "tools"))
    calls = len(answer.llm_calls)
    replayed = sum(c.replayed for c in answer.llm_calls)
    extra = (f"{plans} plan(s), {answer.replans} replan(s)" if answer.mode == "compiler"
             else f"{len(answer.plans)} step(s)")
    return (
        f"{answer.elapsed:.2f}s · {answer.tokens} tokens ({answer.prompt_tokens} prompt + "
        f"{answer.completion_tokens} completion, {calls} LLM calls"
        f"{f', {replayed} replayed from the journal' if replayed else ''}) · "
        f"{len(answer.tasks)} task(s): {task_text} · {extra}{speculation_text(answer)}"
    )


def speculation_text(answer: Answer) -> str:
    """' · speculation: ...' for an answer asked with speculation, else ''."""
    sp = answer.speculation
    if sp is None:
        return ""
    return (f" · speculation ({sp.speculator}): {sp.hits} hit(s), {sp.misses} miss(es), "
            f"{sp.wasted} wasted ({sp.wasted_seconds:.2f} tool s)")


MAX_ECHO = 120  # characters of a question shown again in a suggested command


def next_steps(answer: Answer, journal: str | None) -> list[str]:
    """Two or three lines after the answer: commands that work from here."""
    from plait.cli._journal import journal_option
    from plait.journal._postgres import redact

    commands: list[tuple[list[str], str]] = []
    if journal is not None:
        where = [] if journal == journal_option() else ["--journal", redact(journal)]
        commands.append((["plait", "show", answer.run_id, *where], "this run, call by call"))
        commands.append((["plait", "runs", *where], "every recorded run"))
    if answer.model.split(":", 1)[0] in ("local", "sim"):
        # A long question is not worth pasting back: a placeholder stands for it.
        asked = answer.question if len(answer.question) <= MAX_ECHO else "QUESTION"
        commands.append((["plait", "ask", asked, "--model", "openai:MODEL"],
                         "a larger model (OPENAI_BASE_URL, OPENAI_API_KEY)"))
    # Each line after `next:` pastes into a shell as it is (the note is a comment).
    shown = [shlex.join(c) for c, _ in commands]
    pad = max([len(c) for c in shown if len(c) <= 48], default=0)  # a long one sticks out
    return [f"{'next:' if i == 0 else '':5} {command:{pad}}  # {note}"
            for i, (command, (_, note)) in enumerate(zip(shown, commands, strict=True))]
