"""`ask` / `aask`: answer a question with tools, as LLMCompiler, as ReAct, or
by the model's own function calling.

One question is one plait `Run` (on_error="continue": a failed task does not
stop the others). Its body streams the planner, which submits each task the
moment its line is parsed; then it repairs bad lines (bounded), waits for the
tasks, and asks the joiner to finish or replan (at most `max_replans` times).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any

from plait._api import close_after
from plait.runtime._durable import Durable, close_durable, open_durable
from plait.runtime._engine import Run, journal_failure, new_run_id, tools_by_name
from plait._errors import GraphError
from plait.runtime._events import Event
from plait.runtime._ownership import DEFAULT_LEASE_TTL
from plait.runtime._result import RunResult
from plait.runtime._tools import Tool
from plait.compiler._calling import FunctionCalling
from plait.compiler._grammar import question_names
from plait.compiler._joiner import Joiner
from plait.compiler._parser import PlanError
from plait.compiler._planner import Planner
from plait.compiler._prompt import planner_messages, repair_messages, slot_uses
from plait.compiler._react import ReAct
from plait.compiler._records import Answer, CompilerEvent, TaskResult
from plait.compiler._session import LLM_ROLES, Session
from plait.executors import Executor, executor_of
from plait.compiler._speculate import Draft, Speculation, speculator_of
from plait.generate._pool import enter_pool, spec_of
from plait.journal import Journal, JournalError

MODES = ("compiler", "react", "tools")
# Plan words, and the tool names of the LLM calls' own nodes.
RESERVED = frozenset({"join", "finish"}) | LLM_ROLES


def tools_of(tools: Iterable[Tool] | ModuleType) -> tuple[list[Tool], list[str]]:
    """The tools (and plan examples) given as a list, or every Tool in a module.

    A module may define `PLAN_EXAMPLES`, a list of example plans for the prompt.
    """
    if isinstance(tools, ModuleType):
        found: dict[str, Tool] = {}
        for value in vars(tools).values():
            if isinstance(value, Tool) and value.name not in found:
                found[value.name] = value
        examples = getattr(tools, "PLAN_EXAMPLES", None) or []
        return list(found.values()), [str(e) for e in examples]
    return list(tools), []


async def aask(
    question: str,
    tools: Iterable[Tool] | ModuleType,
    *,
    model: Any = "local",
    mode: str = "compiler",
    max_replans: int = 2,
    max_repairs: int = 2,
    max_tasks: int = 9,
    max_steps: int = 8,
    examples: Sequence[str] | None = None,
    planner_max_tokens: int | None = 400,
    joiner_max_tokens: int | None = 200,
    temperature: float | None = 0.0,
    constrained: bool | None = None,
    grounded: bool | None = None,
    thoughts: bool = True,
    llm_timeout: float | None = 120.0,
    timeout: float | None = None,
    on_event: Callable[[CompilerEvent | Event], None] | None = None,
    max_concurrency: int | None = None,
    journal: str | Journal | None = None,
    run_id: str | None = None,
    allow_rerun: bool = False,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    wait: float = 0.0,
    executor: str | Executor | None = None,
    speculate: Any = None,
    speculate_budget: int | None = None,
) -> Answer:
    """Answer `question` with `tools`; see `Answer` for what comes back.

    model        a spec ("local", "openai:MODEL", "sim:...") or an LLM object
    mode         "compiler" (plan, run in parallel, join), "react" (one step at a time)
                 or "tools" (the model's native function calling, each batch of calls
                 run in parallel; needs a model that calls functions)
    max_replans  how many times the joiner may ask for a new plan
    max_repairs  how many times a plan with bad lines is sent back for repair
    max_tasks    tasks per plan (the plan grammar's bound)
    examples     example plans for the planner prompt (default: the tools module's)
    constrained  pass the plan grammar / joiner schema: True, False, None = when
                 the backend takes them
    grounded     for small models (None: when the model says it is small, as the
                 bundled one does): a plan calls each of the question's names once,
                 then may compute on the results, and the answer is chosen under a
                 grammar among what the results give (see docs/compiler.md)
    timeout      seconds for the whole question (TimeoutError after)
    on_event     called with compiler events (plan text, tasks dispatched, decisions)
                 and the run's node events
    max_concurrency  at most this many calls in flight, the model's own calls
                 included (a task waits while the planner streams if it must)
    journal      a SQLite path or postgresql:// DSN: every LLM call and task is
                 journaled; asking again with the same `run_id` resumes the question,
                 replaying finished calls (plans, decisions, tool results) unpaid
    lease_ttl, wait  one owner per journaled question: RunOwnedError if another live
                 process asks it under the same run id, unless it ends within `wait`
                 seconds; an owner silent for `lease_ttl` seconds may be taken over
    executor     where the tasks' tool calls run: "local" (default), "ray" (each a Ray
                 task; docs/ray.md) or a `plait.executors` executor; the model's own
                 calls stay in this process
    speculate    compiler mode: start read-only calls (`speculate=True` tools) before
                 the planner writes them, in free slots only: "siblings", "question"
                 (the tools module's QUESTION_TEMPLATES), plait.question(...),
                 plait.draft(model) or "draft:MODEL". The answer is the same as without
                 (a guess is adopted only when it is the very call the plan writes);
                 see docs/speculation.md. `speculate_budget`: guesses started per
                 question (default `max_tasks`)
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if max_replans < 0 or max_repairs < 0 or max_tasks < 1 or max_steps < 1:
        raise ValueError("max_replans and max_repairs must be >= 0; max_tasks, max_steps >= 1")
    chosen = executor_of(executor)
    tool_list, module_examples = tools_of(tools)
    speculator = speculator_of(speculate, getattr(tools, "QUESTION_TEMPLATES", None) or ())
    if speculate_budget is not None and speculate_budget < 0:
        raise ValueError("speculate_budget must be >= 0")
    table = tools_by_name(tool_list)
    if not table:
        raise GraphError("ask needs at least one tool")
    taken = sorted(RESERVED & table.keys())
    if taken:  # a GraphError (a ValueError too): the CLI shows it as one line
        raise GraphError(f"tool name(s) {', '.join(taken)} are reserved: "
                         f"{', '.join(sorted(RESERVED))} are plan words or LLM-call nodes; "
                         f"rename it, e.g. @plait.tool(name=\"{taken[0]}_tool\")")
    # The question's LLM calls are nodes that find their model in the pool: the
    # current one (a dataset job's: its models and limits shared), else one of its
    # own. A given LLM object answers for its spec there; one opened from a spec
    # here is closed with the pool.
    pool, close_llm = enter_pool(None if isinstance(model, str) else model)
    try:
        llm = pool.llm(model)
    except BaseException:
        await close_llm()
        raise
    model_spec = spec_of(llm)
    draft_llm = None
    if isinstance(speculator, Draft):
        try:
            # Not a node of the run: an LLM object is used as it is, a spec opened
            # (and closed) with the question's pool.
            model_of = speculator.model
            draft_llm = model_of if not isinstance(model_of, str) else pool.llm(model_of)
        except BaseException:
            await close_llm()
            raise
    plan_examples = list(examples) if examples is not None else module_examples
    entry = f"ask:{mode}"
    run_id = run_id or new_run_id()

    durable = None
    if isinstance(journal, Durable):  # a dataset row's (`plait.asker`): its job's to close
        durable, journal = journal, None
        run_id = durable.run_id
    elif journal is not None:
        try:
            durable = await open_durable(
                journal, run_id=run_id, entry=entry,
                arguments={"question": question, "model": model_spec, "tools": sorted(table),
                           # How it is asked, kept for a resume; not its identity.
                           "options": {"max_replans": max_replans, "max_repairs": max_repairs,
                                       "max_tasks": max_tasks, "max_steps": max_steps,
                                       "max_concurrency": max_concurrency, "timeout": timeout,
                                       "tools_module": _source(tools)}},
                version="", allow_rerun=allow_rerun, lease_ttl=lease_ttl, wait=wait,
            )
        except BaseException:
            await close_llm()
            raise
    run = Run(
        run_id=run_id,
        entry=entry,
        on_error="continue",
        listeners=[on_event] if on_event is not None else [],
        max_concurrency=max_concurrency,
        durable=durable,
        executor=chosen,
    )
    session = Session(
        run=run, tools=table, model=model_spec, emit=on_event,
        temperature=temperature, llm_timeout=llm_timeout,
        use_grammar=None if constrained is None else constrained,
        use_schema=None if constrained is None else constrained,
        llm=llm if getattr(llm, "warms", False) else None,
    )
    if speculator is not None and mode == "compiler":
        session.speculation = Speculation(
            session, speculator, question=question, llm=draft_llm,
            budget=max_tasks if speculate_budget is None else speculate_budget)
    answer: list[str] = []
    failure: list[BaseException] = []  # the body's own error (the LLM's, say), if any

    async def body() -> None:
        try:
            await answer_question()
        except Exception as exc:
            failure.append(exc)
            raise
        finally:
            if session.speculation is not None:  # its guesses and draft end with the body
                await session.speculation.aclose()

    async def answer_question() -> None:
        if mode == "react":
            answer.append(await ReAct(session, max_steps=max_steps,
                                      max_tokens=joiner_max_tokens).answer(question))
            return
        if mode == "tools":
            answer.append(await FunctionCalling(session, max_steps=max_steps,
                                                max_tokens=planner_max_tokens).answer(question))
            return
        small = getattr(llm, "small", False) if grounded is None else grounded
        planner = Planner(session, max_tasks=max_tasks, max_tokens=planner_max_tokens,
                          thoughts=thoughts and not small,
                          spans=question_names(question) if small else None,
                          uses=slot_uses(plan_examples) if small else None)
        joiner = Joiner(session, max_tokens=joiner_max_tokens, grounded=small,
                        examples=plan_examples, planner=planner)
        reason: str | None = None
        for round in range(max_replans + 1):
            # A replan the joiner wrote in its reply is this round's plan, its tasks
            # running already; else (a first plan, a bare `Replan:`) the planner writes.
            record = joiner.plan
            if record is None:
                first = session.next_number
                messages = planner_messages(
                    question, tool_list, examples=plan_examples, first=first,
                    max_tasks=max_tasks, previous=session.shown() if round else (),
                    reason=reason,
                )
                record = await planner.write(messages, kind="replan" if round else "plan",
                                             round=round)
            for _ in range(max_repairs):
                broken = [e for e in record.errors if e.repairable]
                if not broken:
                    break
                messages = repair_messages(
                    question, tool_list, record.text, broken, valid=sorted(session.entries),
                    first=session.next_number, examples=plan_examples, max_tasks=max_tasks,
                )
                record = await planner.write(messages, kind="repair", round=round)
            session.unresolved.extend(e for e in record.errors if e.repairable)
            await joiner.settle(question, may_replan=round < max_replans)
            decision = await joiner.decide(question, round=round,
                                           may_replan=round < max_replans)
            if decision.action == "finish":
                answer.append(decision.answer)
                return
            reason = decision.answer

    started = time.perf_counter()
    session.t0 = started
    try:
        try:
            if timeout is None:
                result = await run.execute(body)
            else:
                async with asyncio.timeout(timeout):
                    result = await run.execute(body)
        except BaseException as exc:  # cancelled, timed out, or the journal failed
            if durable is not None and journal is not None:
                await close_after(durable, exc, own=isinstance(journal, str),
                                  tokens=sum(run.tokens.values()))
            raise
        elapsed = time.perf_counter() - started
        # A failed task is part of the answer; a failed body (the LLM, a bug) is raised.
        if durable is not None and journal is not None:
            try:
                await close_durable(durable, "failed" if failure else "done",
                                    failure[0] if failure else None,
                                    own=isinstance(journal, str),
                                    tokens=sum(run.tokens.values()))
            except JournalError as exc:  # the last results, or the run's end, not stored
                raise journal_failure(run_id, exc, "ended, but not in its journal") from exc
        if failure:
            raise failure[0]
    finally:
        await close_llm()
    return _answer(question, answer[0] if answer else "", mode, session, result, elapsed)


def _source(tools: Iterable[Tool] | ModuleType) -> dict[str, str | None] | None:
    """Where a tools module can be imported again: by its name, or from its file."""
    if not isinstance(tools, ModuleType):
        return None
    return {"name": tools.__name__, "file": getattr(tools, "__file__", None)}


def ask(question: str, tools: Iterable[Tool] | ModuleType, **options: Any) -> Answer:
    """Sync `aask`: the same arguments, for code that is not already async."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(aask(question, tools, **options))
    raise RuntimeError("ask() was called inside a running event loop; use `await aask(...)`")


def _answer(question: str, text: str, mode: str, session: Session,
            result: RunResult, elapsed: float) -> Answer:
    records = result.nodes
    speculation = session.speculation
    predicted = speculation.predicted if speculation is not None else {}
    tasks = []
    for number in sorted(session.entries):
        entry = session.entries[number]
        rec = records[entry.ref.node]
        ok, value = session.outcomes.get(number, (rec.state == "done", rec.value))
        error = None
        if rec.state != "done":
            if not ok and value:
                error = str(value)
            elif rec.error is not None:
                error = f"{type(rec.error).__name__}: {rec.error}"
            else:
                error = f"did not run ({rec.state})"
        tasks.append(TaskResult(
            number=number, tool=entry.task.tool, call=entry.call, refs=entry.task.refs,
            plan=entry.plan, node=entry.ref.node, state=rec.state,
            value=rec.value if rec.state == "done" else None, error=error,
            parsed_at=session.rel(entry.parsed_at),
            started_at=None if rec.started_at is None else session.rel(rec.started_at),
            finished_at=None if rec.finished_at is None else session.rel(rec.finished_at),
            predicted_at=(session.rel(predicted[number]) if number in predicted else None),
        ))
    unresolved: list[PlanError] = list(session.unresolved)
    return Answer(
        question=question, text=text.strip(), mode=mode, model=session.model,
        plans=tuple(session.plans), tasks=tuple(tasks), decisions=tuple(session.decisions),
        llm_calls=tuple(session.llm_calls), unresolved=tuple(unresolved),
        elapsed=elapsed, run_id=result.run_id,
        speculation=speculation.stats() if speculation is not None else None,
    )
