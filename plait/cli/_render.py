"""`plait runs` and `plait show` for a person: rich tables and panels on a terminal,
plain aligned lines otherwise (a pipe, a file, a CI log), from the descriptions
`_runview` builds. Values are cut to one line unless `full`."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from plait.compiler._session import LLM_ROLES

ONE_LINE = 72  # characters of a value or a question shown when cut to one line


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def money(amount: float | None, currency: str | None = "USD", estimated: bool = False) -> str:
    """An amount for a person: `$0.0123`, `~$0.0123` when estimated, `?` unknown."""
    if amount is None:
        return "?"
    digits = 2 if amount >= 1 or amount == 0 else 4 if amount >= 0.0001 else 6
    text = f"{amount:.{digits}f}"
    text = f"${text}" if currency in ("USD", None) else f"{text} {currency}"
    return f"~{text}" if estimated else text


def run_cost_text(run: dict[str, Any]) -> str:
    """A run's cost on one line: what it cost, what its last resume saved, what
    has no price."""
    if run.get("currency") is None:  # a dataset job: its calls are not priced
        return "?"
    text = money(run["cost"], run["currency"], run["cost_estimated"])
    if run["cost_unpriced"]:
        text += f" (no price for {', '.join(run['cost_unpriced'])})"
    elif run["cost"] is None:
        text += " (calls without a token split)"
    if run.get("replayed"):
        text += (f", saved {money(run['cost_saved'], run['currency'])} by replaying "
                 f"{run['replayed']} call{'' if run['replayed'] == 1 else 's'}")
    return text


def inline(value: Any) -> str:
    """A value as one line of JSON-like text; an upstream call reads $n."""
    if isinstance(value, dict):
        if set(value) == {"$ref"}:
            return f"${value['$ref']}"
        return "{" + ", ".join(f"{json.dumps(k)}: {inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(inline(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def pretty(value: Any) -> str:
    """A value in full: a string as it is, anything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2)


def cut(text: str, width: int = ONE_LINE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def call_text(call: dict[str, Any], full: bool) -> str:
    """`tool(arguments) -> value` or `-> error: ...`, one line unless `full`."""
    args = call["arguments"]
    if not full and (call["tool"] in LLM_ROLES or _is_llm_call(args)):
        return _llm_text(call)
    if isinstance(args, dict):
        shown = ", ".join(f"{k}={inline(v)}" for k, v in args.items())
    else:
        shown = inline(args)
    head = f"{call['tool']}({shown if full else cut(shown)})"
    if call["error"] is not None:
        tail = f"error: {call['error']}"
    elif call["state"] == "done":
        tail = pretty(call["value"]) if full else cut(inline(call["value"]))
    else:
        tail = call["state"]
    return f"{head}\n  -> {tail}" if full else f"{head} -> {tail}"


def _is_llm_call(args: Any) -> bool:
    """An LLM-call node's arguments (plait.generate, an llm_tool): one request."""
    request = args.get("request") if isinstance(args, dict) and len(args) == 1 else None
    return isinstance(request, dict) and "messages" in request and "model" in request


def _llm_text(call: dict[str, Any]) -> str:
    """An LLM call on one line: its prompt's size and the text it wrote (its value;
    --full shows its whole request)."""
    request = call["arguments"].get("request") if isinstance(call["arguments"], dict) else None
    request = request if isinstance(request, dict) else {}
    count = len(request.get("messages") or ())
    head = f"{call['tool']}({count} message{'' if count == 1 else 's'})"
    value = call["value"]
    if call["error"] is not None:
        tail = f"error: {call['error']}"
    elif isinstance(value, str):
        tail = cut(inline(value))
    elif isinstance(value, dict) and "text" in value:  # journaled before plait.generate
        tail = cut(inline(value["text"]))
    elif isinstance(value, dict) and "refused" in value:
        tail = cut(f"refused: {value['refused']}")
    else:
        tail = call["state"] if value is None else cut(inline(value))
    return f"{head} -> {tail}"


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as aligned lines; the last column is not padded."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([c.ljust(w) for c, w in zip(r, widths, strict=False)] + [r[-1]]).rstrip()
            for r in rows]


# ------------------------------------------------------------------ plait runs


def render_runs(console: Console, runs: list[dict[str, Any]]) -> None:
    head = ("run", "status", "started", "duration", "calls", "tokens", "cost", "what")
    rows = [
        (r["run_id"], r["status"], when(r["started_at"]), seconds(r["duration"]),
         "?" if r["calls"] is None else str(r["calls"]), str(r["tokens"]),
         money(r["cost"], r["currency"], r["cost_estimated"]), cut(r["what"], 60))
        for r in runs
    ]
    if console.is_terminal:
        table = Table(*head)
        for row, r in zip(rows, runs, strict=True):
            table.add_row(*map(escape, row[:-1]), _what(row[-1], r))
        console.print(table)
        return
    for line in _columns([head, *rows]):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _what(text: str, run: dict[str, Any]) -> str:
    error = f"\n[red]{escape(cut(run['error'], 60))}[/red]" if run.get("error") else ""
    return escape(text) + error


# ------------------------------------------------------------------ plait show


def render_show(console: Console, run: dict[str, Any], calls: list[dict[str, Any]],
                question: dict[str, Any] | None, full: bool) -> None:
    sessions = max((c["session"] for c in calls if c.get("session")), default=1)
    facts = [
        ("run", f"{run['run_id']}  {run['status']}"),
        ("question" if question is not None else "workflow", run["what"]),
        ("entry", run["entry"]),
        ("started", f"{when(run['started_at'])}   duration {seconds(run['duration'])}   "
                    f"calls {run['calls']}   tokens {run['tokens']}"
                    + (f"   sessions {sessions} (resumed {sessions - 1}x)" if sessions > 1
                       else "")),
        ("cost", run_cost_text(run)),
    ]
    if run.get("error"):
        facts.append(("error", run["error"]))
    terminal = console.is_terminal
    if terminal:
        grid = Table.grid(padding=(0, 2))
        for name, value in facts:
            grid.add_row(f"[bold]{name}[/bold]", escape(value))
        console.print(grid)
    else:
        for line in _columns(facts):
            _plain(console, line)
    if question is not None:
        console.print()
        _transcript(console, question, full)
    console.print()
    _calls(console, calls, full, t0=min((c["started_at"] for c in calls), default=0.0),
           currency=run.get("currency"))


def _transcript(console: Console, q: dict[str, Any], full: bool) -> None:
    terminal = console.is_terminal
    if terminal:
        console.print(Panel(escape(q["question"] or ""), title="question",
                            title_align="left", border_style="cyan"))
    else:
        _block(console, "question", q["question"] or "")
    plans = 0
    for step in q["steps"]:
        if step["kind"] == "plan":
            plans += 1
            what = "step" if step["role"] in ("react", "caller") else "plan"
            title = f"{what} {plans} (#{step['call']} {step['role']})"
            body = step.get("text")
            if body is None:
                body = f"{step['state']}: {step.get('error') or ''}".rstrip(": ")
            if terminal:
                console.print(Panel(escape(body.rstrip()), title=title, title_align="left"))
            else:
                _block(console, title, body, always=True)
        elif step["kind"] == "task":
            line = f"task #{step['call']} {call_text(step, full)}"
            if terminal:
                style = "red" if step["error"] else "green"
                console.print(f"  [{style}]{escape(line)}[/{style}]")
            else:
                _plain(console, f"  {line}")
        else:  # a decision
            if "action" in step:
                body = f"{step['action']}: {step['answer']}"
                if step.get("thought"):
                    body += f"  (thought: {step['thought']})"
            else:
                body = f"{step['state']}: {step.get('error') or ''}".rstrip(": ")
            label = f"decision (#{step['call']} joiner)"
            if terminal:
                console.print(f"[bold]{escape(label)}:[/bold] {escape(body)}")
            else:
                _block(console, label, body)
    answer = q.get("answer")
    if terminal:
        console.print(Panel(escape(answer) if answer is not None else "[dim](no answer)[/dim]",
                            title="answer", title_align="left", border_style="green"))
    else:
        _block(console, "answer", answer if answer is not None else "(none)")


def _calls(console: Console, calls: list[dict[str, Any]], full: bool, t0: float,
           currency: str | None) -> None:
    head = ("#", "tool", "state", "attempts", "session", "start", "duration", "tokens", "cost",
            "key", "call")
    rows = []
    for c in calls:
        session = "-" if c["session"] is None else str(c["session"])
        if c.get("replayed"):
            session += " replayed"
        rows.append((
            str(c["n"]), c["tool"], c["state"], str(c["attempts"]), session,
            f"+{c['started_at'] - t0:.3f}s", seconds(c["duration"]), str(c["tokens"]),
            money(c["cost"], currency,
                  estimated=bool(c["cost"]) and bool((c["record"] or {}).get("estimated"))),
            c["key"][:12], call_text(c, full),
        ))
    if not rows:
        _plain(console, "no calls journaled")
        return
    if console.is_terminal:
        table = Table(*head, title="calls", title_justify="left")
        for row, c in zip(rows, calls, strict=True):
            style = {"failed": "red", "in doubt": "yellow"}.get(c["state"])
            table.add_row(*map(escape, row), style=style)
        console.print(table)
        return
    _plain(console, "calls:")
    for line in _columns([head, *rows]):
        _plain(console, f"  {line}" if not full else "  " + line.replace("\n", "\n  "))


def _plain(console: Console, line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _block(console: Console, label: str, text: str, always: bool = False) -> None:
    """`label: text` on one line, or the label and the text's lines indented under it."""
    lines = text.rstrip().splitlines() or [""]
    if len(lines) == 1 and not always:
        _plain(console, f"{label}: {lines[0]}")
        return
    _plain(console, f"{label}:")
    for line in lines:
        _plain(console, f"    {line}")
