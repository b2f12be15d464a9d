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

from plait.compiler._joiner import parse_decision, replan_plan
from plait.compiler._parser import SyntaxProblem, parse_call
from plait.compiler._react import parse_step
from plait.compiler._session import LLM_ROLES
from plait.cost import Prices, RunCost, call_cost, run_cost, session_of
from plait.journal import Intent, Journal, JournalError, JournalState, Result, RunRecord
from plait.journal._postgres import redact_all

QUESTION = "ask:"  # the entry of a question's run: ask:compiler, ask:react


def what(run: RunRecord) -> str:
    """What the run is, for a person: the question, or the workflow's name (the
    function, not the module it was loaded from, which may be generated)."""
    if run.entry.startswith(QUESTION) and isinstance(run.arguments, dict):
        return str(run.arguments.get("question", run.entry))
    return run.entry.rpartition(":")[2] or run.entry


def describe_run(run: RunRecord, crashed: bool, calls: int | None,
                 cost: RunCost | None = None) -> dict[str, Any]:
    """One run, as `plait runs --json` lists it and `plait show --json` heads it.
    `cost` None: not known (a dataset job's calls are not loaded to price them)."""
    end = run.finished_at if run.status != "running" else run.updated_at
    priced = cost.fields() if cost is not None else {
        "cost": None, "cost_saved": None, "currency": None, "cost_estimated": False,
        "cost_unpriced": [], "replayed": None}
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
        **priced,
        "error": run.error,
    })


def describe_calls(state: JournalState, live: bool = False,
                   prices: Prices | None = None) -> list[dict[str, Any]]:
    """Every journaled call of the run, in the order it (last) started, numbered
    from 1; an argument that is another call's value reads {"$ref": n}. A call
    with no result is `running` while its run's owner is `live`, else in doubt."""
    intents = sorted(state.intents.values(), key=lambda i: (i.started_at, i.key))
    number = {intent.key: n for n, intent in enumerate(intents, 1)}
    doubt = set() if live else set(state.in_doubt)
    last = max((s for r in state.results.values() if (s := session_of(r)) is not None),
               default=None)
    prices = prices if prices is not None else Prices()
    return [
        _call(n, intent, state.results.get(intent.key), intent.key in doubt, number, last,
              prices)
        for n, intent in enumerate(intents, 1)
    ]


def _call(n: int, intent: Intent, result: Result | None, in_doubt: bool,
          number: dict[str, int], last: int | None, prices: Prices) -> dict[str, Any]:
    session = session_of(result) if result is not None else None
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
        "cost": call_cost(intent, result, prices).cost if result is not None else None,
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
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        # A function-calling step ({"content", "tool_calls"}): its text, then its calls.
        calls = [f"{c[1]}({c[2]})" for c in value["tool_calls"] if isinstance(c, list)
                 and len(c) == 3]
        return "\n".join([str(value.get("content") or "")] + calls).strip()
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
            plan = replan_plan(text) if decision.action == "replan" else None
            if plan:  # a replan written in the decision's reply: the next plan
                steps.append(step)
                step = {"kind": "plan", "call": call["n"], "role": role, "text": plan}
        else:
            step["text"] = text
            if role == "react":
                last_step = text
                answer = _react_finish(text)
            elif role == "caller" and isinstance(value, dict) and not value["tool_calls"]:
                answer = text  # the model answered in text: no more calls
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


# ------------------------------------------------------------------ reading a journal
# What `plait runs --json` and `plait show --json` print, and what `plait ui`
# serves: one reading for both.


def list_runs(j: Journal, limit: int, prices: Prices,
              cache: dict[tuple[Any, ...], dict[str, Any]] | None = None,
              ) -> tuple[list[dict[str, Any]], set[str]]:
    """The newest runs, described, and the ids of those that crashed.

    `cache` (kept by a caller that lists again and again: `plait ui`) holds the
    descriptions of ended runs by their record, which changes if they change (a
    resume marks one running): only running runs are loaded again. It is
    emptied of runs no longer listed."""
    records = j.list_runs(limit=limit)
    crashed = {r.run_id for r in records if r.status == "running" and is_crashed(j, r.run_id)}
    runs = []
    kept: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in records:
        key = (r.run_id, r.status, r.updated_at, r.finished_at, r.tokens)
        described = cache.get(key) if cache is not None else None
        if described is None:
            # A dataset job's calls are neither counted nor priced: it may hold
            # millions (`plait show RUN` gives its rows by status, from an index).
            state = None if r.entry.startswith("map:") else _state(j, r.run_id)
            described = describe_run(r, r.run_id in crashed,
                                     None if state is None else len(state.intents),
                                     None if state is None else run_cost(state, prices))
        if r.status != "running":
            kept[key] = described
        runs.append(described)
    if cache is not None:
        cache.clear()
        cache.update(kept)
    return runs, crashed


def _state(j: Journal, run_id: str) -> JournalState | None:
    """The run's calls, or None when its rows cannot be read (damaged): the listing
    still lists it, and `plait show` says what is wrong."""
    try:
        # Past the CLI's `_Reading` wrapper, whose errors end the command.
        return getattr(j, "_journal", j).load(run_id)
    except JournalError:
        return None


def is_crashed(j: Journal, run_id: str) -> bool:
    """A running run nobody owns alive (no lease, a stale one, or a dead owner)."""
    lease = j.get_lease(run_id)
    return lease is None or not lease.alive()


def show_run(j: Journal, run_id: str, prices: Prices) -> dict[str, Any]:
    """A run (not a dataset job) and its calls, as `plait show --json` prints it
    (but for the journal's location)."""
    state = j.load(run_id)
    crashed = state.run.status == "running" and is_crashed(j, run_id)
    calls = describe_calls(state, live=state.run.status == "running" and not crashed,
                           prices=prices)
    run = describe_run(state.run, crashed, len(calls), run_cost(state, prices))
    run.update(clean({"arguments": state.run.arguments, "code_version": state.run.code_version}))
    return {"run": run, "calls": calls, "question": describe_question(state.run, calls)}


clean = redact_all  # every string in a value redacted (see the module doc)
