"""What `plait runs` and `plait show` say about a run, as plain data.

One description serves both outputs: `--json` prints it as it is, and
`_render` draws it for a person. The JSON is documented in docs/durable.md
("Reading the journal"); fields are only ever added, never renamed.

Secrets never leave: every string is passed through the DSN redaction the
journal uses for its own messages (a password in a URL becomes ``***``), so a
DSN or a key-bearing URL held in an argument or a value does not reach the
terminal or a JSON file.
"""

from __future__ import annotations

from typing import Any

from plait.compiler._joiner import parse_decision
from plait.compiler._parser import SyntaxProblem, parse_call
from plait.compiler._react import parse_step
from plait.compiler._session import LLM_ROLES
from plait.journal import Intent, JournalState, Result, RunRecord
from plait.journal._postgres import redact

QUESTION = "ask:"  # the entry of a question's run: ask:compiler, ask:react


def what(run: RunRecord) -> str:
    """What the run is, for a person: the question, or the workflow's name (the
    function, not the module it was loaded from, which may be generated)."""
    if run.entry.startswith(QUESTION) and isinstance(run.arguments, dict):
        return str(run.arguments.get("question", run.entry))
    return run.entry.rpartition(":")[2] or run.entry


def describe_run(run: RunRecord, crashed: bool, calls: int | None) -> dict[str, Any]:
    """One run, as `plait runs --json` lists it and `plait show --json` heads it."""
    end = run.finished_at if run.status != "running" else run.updated_at
    return clean({
        "run_id": run.run_id,
        "what": what(run),
        "entry": run.entry,
        "status": "crashed" if crashed else run.status,
        "started_at": run.created_at,
        "finished_at": run.finished_at,
        "duration": (end - run.created_at) if end else None,
        "calls": calls,
        "tokens": run.tokens,
        "error": run.error,
    })


def describe_calls(state: JournalState, live: bool = False) -> list[dict[str, Any]]:
    """Every journaled call of the run, in the order it (last) started, numbered
    from 1; an argument that is another call's value reads {"$ref": n}. A call
    with no result is `running` while its run's owner is `live`, else in doubt."""
    intents = sorted(state.intents.values(), key=lambda i: (i.started_at, i.key))
    number = {intent.key: n for n, intent in enumerate(intents, 1)}
    doubt = set() if live else set(state.in_doubt)
    last = max((s for r in state.results.values() if (s := _session(r)) is not None),
               default=None)
    return [
        _call(n, intent, state.results.get(intent.key), intent.key in doubt, number, last)
        for n, intent in enumerate(intents, 1)
    ]


def _call(n: int, intent: Intent, result: Result | None, in_doubt: bool,
          number: dict[str, int], last: int | None) -> dict[str, Any]:
    session = _session(result) if result is not None else None
    return clean({
        "n": n,
        "key": intent.key,
        "tool": intent.tool,
        "state": ("in doubt" if in_doubt else "running") if result is None
        else "done" if result.ok else "failed",
        # A retry writes the call's intent again with the next attempt number, so the
        # intent that stays is the last attempt's (only its error is journaled).
        "attempts": intent.attempt,
        "session": session,
        "replayed": None if session is None or last is None else session < last,
        "started_at": result.started_at if result is not None else intent.started_at,
        "finished_at": result.finished_at if result is not None else None,
        "duration": result.finished_at - result.started_at if result is not None else None,
        "tokens": result.tokens if result is not None else 0,
        "record": _record(result),
        "arguments": _refs(intent.arguments, number),
        "value": result.value if result is not None and result.ok else None,
        "error": result.error if result is not None else None,
    })


def _record(result: Result | None) -> dict[str, Any] | None:
    """What the call's tool added to its record (an LLM call: its token split,
    ttft, elapsed, finish reason), or None."""
    if result is None or not isinstance(result.extra, dict):
        return None
    fields = {k: v for k, v in result.extra.items() if k != "session"}
    return fields or None


def _session(result: Result) -> int | None:
    """Which of the run's processes ran the call (1 the first, +1 for each resume);
    journals written before this was recorded have none."""
    session = result.extra.get("session") if isinstance(result.extra, dict) else None
    return session if type(session) is int else None


def _refs(value: Any, number: dict[str, int]) -> Any:
    """Arguments with each upstream call's key replaced by its number here."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("$ref"), str):
            return {"$ref": number.get(value["$ref"], value["$ref"])}
        return {k: _refs(v, number) for k, v in value.items()}
    if isinstance(value, list):
        return [_refs(v, number) for v in value]
    return value


def _llm_text(value: Any) -> str | None:
    """An LLM call's text: its value (journals before plait.generate: {"text": ...})."""
    if isinstance(value, str):
        return value
    return value.get("text") if isinstance(value, dict) else None


def describe_question(run: RunRecord, calls: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A question's transcript: the question, each plan (or ReAct step) as the model
    wrote it, each task with its value, each decision, and the answer. None for a
    workflow's run. Read with the compiler's own parsers, so it says what `ask` saw."""
    if not run.entry.startswith(QUESTION):
        return None
    arguments = run.arguments if isinstance(run.arguments, dict) else {}
    steps: list[dict[str, Any]] = []
    answer: str | None = None
    last_step = ""
    for call in calls:
        role, value = call["tool"], call["value"]
        if role not in LLM_ROLES:
            steps.append({"kind": "task", "call": call["n"], "tool": role,
                          "arguments": call["arguments"], "state": call["state"],
                          "value": value, "error": call["error"]})
            continue
        if str(call["error"] or "").startswith("LLMOptionError") or (
                isinstance(value, dict) and "refused" in value):
            continue  # the backend took no grammar: the session asked again without
        text = _llm_text(value)
        step: dict[str, Any] = {"kind": "decision" if role == "joiner" else "plan",
                                "call": call["n"], "role": role}
        if text is None:
            step.update(state=call["state"], error=call["error"])
        elif role == "joiner":
            decision = parse_decision(text)
            step.update(action=decision.action, answer=decision.answer,
                        thought=decision.thought)
            answer = decision.answer if decision.action == "finish" else None
        else:
            step["text"] = text
            if role == "react":
                last_step = text
                answer = _react_finish(text)
        steps.append(step)
    if answer is None and run.status == "done" and last_step:
        # Out of steps without a finish(...): ReAct answers with the last thought.
        thought, _ = parse_step(last_step)
        answer = thought or last_step.strip()
    return clean({
        "question": arguments.get("question"),
        "mode": run.entry.removeprefix(QUESTION),
        "model": arguments.get("model"),
        "steps": steps,
        "answer": answer if run.status == "done" else None,
    })


def _react_finish(text: str) -> str | None:
    _, action = parse_step(text)
    if action is None:
        return None
    try:
        name, args, kwargs = parse_call(action)
    except SyntaxProblem:
        return None
    if name != "finish":
        return None
    return str(args[0]) if args else str(next(iter(kwargs.values()), ""))


def clean(value: Any) -> Any:
    """`value` with every string redacted (see the module doc)."""
    if isinstance(value, str):
        return redact(value) if "://" in value or "password" in value.lower() else value
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value
