"""The Python entry points: `@workflow`, `run`/`arun`, `run_graph`/`arun_graph`.

One sync entry over the async core: each sync function is `asyncio.run` of its
async twin, never a second implementation.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from plait.runtime._durable import Durable, close_durable, code_version, open_durable
from plait.runtime._engine import (
    Run,
    current_run,
    journal_failure,
    new_run_id,
    raise_for_status,
    tools_by_name,
)
from plait._entry import import_entry
from plait._errors import PlaitError
from plait.runtime._events import Listener
from plait.runtime._graph import Graph
from plait.runtime._ownership import DEFAULT_LEASE_TTL
from plait.runtime._result import RunResult
from plait.runtime._scheduler import OnError
from plait.runtime._tools import Tool
from plait.executors import Executor, executor_name, executor_of
from plait.generate._pool import using_pool
from plait.journal import Journal, JournalError, RunNotFoundError, open_journal


@dataclass(frozen=True, slots=True)
class Workflow:
    """An async function whose tool calls become a dataflow graph when run by plait."""

    fn: Callable[..., Coroutine[Any, Any, Any]]
    name: str

    def __call__(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        # Inside another run this is just the body: its calls join that run's graph.
        if current_run() is None:
            raise WorkflowCallError(self._how_to_run())
        return self.fn(*args, **kwargs)

    def _how_to_run(self) -> str:
        """Why calling the workflow outside a run does nothing, and the three ways to run it."""
        short = self.fn.__name__
        module = self.fn.__module__
        if module == "__main__" or not module or module.startswith("plait_user_"):  # a file
            where = _shown_path(self.fn.__code__.co_filename)
        else:
            where = module
        return (
            f"{short} is a plait workflow: calling it directly runs nothing. Run it with "
            f"plait.run({short}, ...) (in async code: await plait.arun({short}, ...)), or "
            f"from the shell: plait run {where}:{self.fn.__qualname__} ARGS..."
        )


class WorkflowCallError(PlaitError, TypeError):
    """A workflow called like a function outside a run (the message says how to run it)."""


def _shown_path(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        return filename
    return filename if relative.startswith("..") else relative


def workflow(fn: Callable[..., Coroutine[Any, Any, Any]]) -> Workflow:
    """Mark an async function as a workflow: `plait.run(wf, *args)` runs it."""
    if isinstance(fn, Workflow):
        return fn
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"@plait.workflow needs an async function, got {fn!r}")
    return Workflow(fn=fn, name=f"{fn.__module__}:{fn.__qualname__}")


async def arun(
    wf: Workflow | Callable[..., Coroutine[Any, Any, Any]],
    *args: Any,
    max_concurrency: int | None = None,
    on_error: OnError = "stop",
    listeners: Sequence[Listener] = (),
    run_id: str | None = None,
    journal: str | Journal | None = None,
    allow_rerun: bool = False,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    wait: float = 0.0,
    raise_on_error: bool = True,
    executor: str | Executor | None = None,
    **kwargs: Any,
) -> RunResult:
    """Run a workflow to the end; the result holds its value, every node and timings.

    on_error: "stop" (default) starts nothing new after a failure and lets running
    nodes finish; "cancel" cancels them too; "continue" runs everything that does
    not depend on the failed node. With `raise_on_error` a failed run raises
    RunError, whose `.result` still holds every result and every error.

    journal: a SQLite path (`runs.db`) or a `postgresql://` DSN. Every call is
    journaled; a run given a `run_id` that the journal already holds is resumed:
    finished calls are replayed, never re-run; calls in doubt (started, no result)
    run again only if their tool is idempotent or `allow_rerun` is set.

    A journaled run has one owner: it holds a lease, heartbeaten every
    `lease_ttl`/3 seconds. Starting or resuming a run another live process owns
    raises RunOwnedError naming it, unless it ends (or dies) within `wait` seconds.

    The run's LLM calls (`plait.generate`) share one pool of opened models: the
    current one (a dataset job's, or one entered by hand), else one for this run.

    executor: where tool calls run: "local" (default: this event loop, threads for
    sync tools), "ray" (each call a Ray task; docs/ray.md) or a `plait.executors`
    executor. Journaling, retries and scheduling stay in this process either way.
    """
    wf = workflow(wf)
    chosen = executor_of(executor)
    run_id = run_id or new_run_id()
    durable = None
    if journal is not None:
        durable = await open_durable(
            journal,
            run_id=run_id,
            entry=wf.name,
            # The options, kept for a resume (not part of the run's identity).
            arguments={"args": list(args), "kwargs": kwargs,
                       "options": {"max_concurrency": max_concurrency, "on_error": on_error,
                                   "executor": executor_name(executor)}},
            version=code_version(wf.fn),
            allow_rerun=allow_rerun,
            lease_ttl=lease_ttl,
            wait=wait,
        )
    result = None
    try:
        run = Run(
            run_id=run_id,
            entry=wf.name,
            max_concurrency=max_concurrency,
            on_error=on_error,
            listeners=listeners,
            durable=durable,
            executor=chosen,
        )
        async with using_pool():
            result = await run.execute(lambda: wf.fn(*args, **kwargs))
    except BaseException as exc:
        if durable is not None:
            await close_after(durable, exc, own=isinstance(journal, str))
        raise
    if durable is not None:
        try:
            await close_durable(durable, result.status, result.error,
                                own=isinstance(journal, str), tokens=result.tokens)
        except JournalError as exc:  # the last results, or the run's end, not stored
            raise journal_failure(run_id, exc, "ended, but not in its journal") from exc
    return raise_for_status(result) if raise_on_error else result


async def close_after(durable: Durable, failure: BaseException, *, own: bool,
                      tokens: int | None = None) -> None:
    """Close the journal side of a run that raised `failure` (a journal that failed, a
    cancel): store what can still be stored, mark the run, and never hide `failure`
    behind a second journal error (that one is noted on it)."""
    failed = isinstance(failure, Exception) and not isinstance(failure, TimeoutError)
    try:
        await close_durable(durable, "failed" if failed else "cancelled",
                            failure if failed else None, own=own, tokens=tokens)
    except JournalError as exc:
        if exc is durable.lost():  # another process took the run over: that is the error
            raise
        failure.add_note(f"closing the journal failed too: {exc}")


async def aresume(
    run_id: str,
    journal: str | Journal,
    *,
    workflow_fn: Workflow | Callable[..., Coroutine[Any, Any, Any]] | None = None,
    **options: Any,
) -> RunResult:
    """Continue a journaled run: its workflow, arguments and options come from the journal.

    The workflow is imported from the entry recorded in the journal
    (`module:qualname`, or `/path/to/file.py:qualname` for a workflow run from a
    file); pass `workflow_fn` for one that cannot be imported (a script's
    `__main__`): it stands in for the recorded entry. Options are those of `arun`
    (e.g. `allow_rerun=True`, `wait=SECONDS`, `max_concurrency=N`); the run's own
    (`max_concurrency`, `on_error`, `executor` when it was "local", "ray" or a
    `RayExecutor`) are kept unless given.
    """
    journal_obj = open_journal(journal) if isinstance(journal, str) else journal
    try:
        record = journal_obj.get_run(run_id)
        if record is None:
            raise RunNotFoundError(run_id, str(journal))
        if record.entry.startswith("ask:") and workflow_fn is None:
            raise PlaitError(
                f"run {run_id!r} answers a question; resume it by asking it again under "
                f"its run id: plait.ask(question, tools, run_id={run_id!r}, journal=...) "
                f"(CLI: plait resume {run_id})"
            )
        if record.entry.startswith("map:"):
            raise PlaitError(
                f"run {run_id!r} is a dataset job; resume it with "
                f"plait.data.resume_map({run_id!r}, journal) (CLI: plait resume {run_id})"
            )
        wf = workflow(workflow_fn) if workflow_fn is not None else _import_entry(record.entry)
        wf = replace(wf, name=record.entry)
        arguments = record.arguments or {}
        return await arun(
            wf,
            *arguments.get("args", []),
            run_id=run_id,
            journal=journal_obj,
            **{**(arguments.get("options") or {}), **options},
            **arguments.get("kwargs", {}),
        )
    finally:
        if isinstance(journal, str):
            journal_obj.close()


def resume(run_id: str, journal: str | Journal, **options: Any) -> RunResult:
    """Sync `aresume`."""
    return _sync(aresume(run_id, journal, **options))


def _import_entry(entry: str) -> Workflow:
    try:
        obj = import_entry(entry)
    except (ImportError, AttributeError) as exc:
        raise PlaitError(
            f"cannot import the run's workflow {entry!r} ({exc}); "
            "pass it as workflow_fn= (CLI: plait resume RUN_ID --workflow module:name)"
        ) from None
    return workflow(obj.fn if isinstance(obj, Workflow) else obj)


def run(wf: Workflow | Callable[..., Coroutine[Any, Any, Any]], *args: Any, **kwargs: Any) -> RunResult:
    """Sync `arun`: the same arguments, for code that is not already async."""
    return _sync(arun(wf, *args, **kwargs))


async def arun_graph(
    graph: Graph,
    tools: Iterable[Tool],
    *,
    max_concurrency: int | None = None,
    on_error: OnError = "stop",
    listeners: Sequence[Listener] = (),
    run_id: str | None = None,
    raise_on_error: bool = True,
    executor: str | Executor | None = None,
) -> RunResult:
    """Run a static graph. `result.value` lists every node's value by graph node id.

    executor: where tool calls run, as for `arun`."""
    table = tools_by_name(tools)
    graph.validate(table)  # a graph that cannot run fails here, before anything starts
    run = Run(
        run_id=run_id,
        entry="graph",
        max_concurrency=max_concurrency,
        on_error=on_error,
        listeners=listeners,
        executor=executor_of(executor),
    )

    async def body() -> Any:
        run.add_graph(graph, table)
        return None

    async with using_pool():
        result = await run.execute(body)
    if result.ok:
        values = [run.values[i] for i in run.graph_ids]
        result = RunResult(
            run_id=result.run_id,
            status=result.status,
            value=values,
            error=None,
            started_at=result.started_at,
            finished_at=result.finished_at,
            _nodes=run.nodes,
            _columns=run,
            replayed=result.replayed,
        )
    return raise_for_status(result) if raise_on_error else result


def run_graph(graph: Graph, tools: Iterable[Tool], **kwargs: Any) -> RunResult:
    """Sync `arun_graph`."""
    return _sync(arun_graph(graph, tools, **kwargs))


def _sync(coro: Coroutine[Any, Any, RunResult]) -> RunResult:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise RuntimeError(
        "plait.run() was called inside a running event loop; use `await plait.arun(...)`"
    )
