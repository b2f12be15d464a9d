"""`plait.reason` and `plait.reasoner`: a question's reasoning with parallel threads.

    r = plait.reason("How many primes are below 50?", model="sim:...",
                     fork=ThreadWeaver(), journal="runs.db", run_id="q7")
    r.text, r.blocks, r.critical_path_tokens, r.tokens

The trajectory runs as a run of its own (journaled when a journal is given):
asking again under the same run id replays every segment and thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any


from plait.runtime._engine import current_run
from plait._errors import PlaitError
from plait.runtime._events import Listener
from plait.runtime._tools import Tool, ToolPolicy, make_tool
from plait.generate._node import DEFAULT_TIMEOUT, run_calls
from plait.generate._pool import current_pool, spec_of
from plait.llm import LLM, LLMOptionError, Message
from plait.reason._formats import FORMATS, ForkFormat, ThreadWeaver
from plait.reason._records import Reasoning
from plait.reason._run import Options, drive

DEFAULT_MAX_TOKENS = 2048
ENTRY = "reason:"  # a reasoning run's entry in the journal: reason:threadweaver


def resume_options(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """`areason`'s arguments for a journaled reasoning run, from its recorded ones."""
    args = arguments.get("args") or ["", "threadweaver"]
    kwargs = dict(arguments.get("kwargs") or {})
    fork = FORMATS[args[1]]
    bounds = {k: kwargs.pop(k) for k in ("max_threads", "max_depth", "max_blocks")
              if k in kwargs}
    if args[1] == "threadweaver":
        bounds.pop("max_depth", None)  # fixed at 1: ThreadWeaver's threads do not nest
    return {"question": args[0], "fork": fork(**bounds), **kwargs}


def _fork_of(fork: ForkFormat | str | None) -> ForkFormat:
    if fork is None:
        return ThreadWeaver()
    if isinstance(fork, str):
        make = FORMATS.get(fork.lower())
        if make is None:
            raise ValueError(f"unknown fork format {fork!r}; known: {', '.join(sorted(FORMATS))}")
        return make()
    if not isinstance(fork, ForkFormat):
        raise TypeError(f"fork must be a ForkFormat (ThreadWeaver(), Multiverse(), APR()) "
                        f"or its name, got {fork!r}")
    return fork


async def areason(
    question: str,
    *,
    model: str | LLM | None = None,
    fork: ForkFormat | str | None = None,
    system: str | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    budget: int | None = None,
    temperature: float | None = 0.0,
    seed: int | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    grammar: Mapping[str, str] | None = None,
    journal: Any = None,
    run_id: str | None = None,
    listeners: Sequence[Listener] = (),
) -> Reasoning:
    """`plait.reason` for async code."""
    fork = _fork_of(fork)
    if not isinstance(question, str) or not question:
        raise ValueError("reason needs a question: a non-empty str")
    if not (isinstance(max_tokens, int) and max_tokens >= 1):
        raise ValueError(f"max_tokens must be a whole number >= 1, got {max_tokens!r}")
    if budget is None:
        budget = 8 * max_tokens
    if not (isinstance(budget, int) and budget >= 1):
        raise ValueError(f"budget must be a whole number >= 1, got {budget!r}")
    unknown = set(grammar or {}) - {"parent", "thread", "continue"}
    if unknown:
        raise ValueError(f"grammar takes the kinds parent, thread, continue; got {sorted(unknown)}")
    messages = ((("system", system),) if system is not None else ()) + (("user", question),)
    holder: dict[str, Any] = {}

    async def reasoning(question: str, fork: str, **settings: Any) -> str:
        # `settings` are recorded with the run (for `plait resume`), not read here.
        run = current_run()
        assert run is not None
        pool = current_pool()
        assert pool is not None
        llm = pool.llm(model)
        options = Options(spec_of(llm), messages, holder["fork"], max_tokens, budget,
                          temperature, seed, timeout, dict(grammar or {}), _continues(llm))
        text, chain, state = await drive(run, options)
        holder.update(text=text, chain=chain, state=state, run=run)
        return text

    from plait._api import Workflow, arun  # the api layer sits above this one

    holder["fork"] = fork
    started = time.perf_counter()
    # What `plait resume RUN_ID` needs to reason again under the run id.
    settings = {"model": model if isinstance(model, str) else getattr(model, "spec", None),
                "max_threads": fork.max_threads, "max_depth": fork.max_depth,
                "max_blocks": fork.max_blocks, "system": system, "max_tokens": max_tokens,
                "budget": budget, "temperature": temperature, "seed": seed,
                "timeout": timeout, "grammar": dict(grammar) if grammar else None}
    result = await arun(Workflow(fn=reasoning, name=f"{ENTRY}{fork.name}"), question,
                        fork.name, run_id=run_id, journal=journal, on_error="continue",
                        listeners=listeners, raise_on_error=False, **settings)
    if "state" not in holder:  # the trajectory itself failed (not a thread: those degrade)
        error = result.error
        cause = getattr(error, "__cause__", None)
        raise (cause if isinstance(cause, Exception) else error) or PlaitError(
            "reason ended without a trajectory")
    state = holder["state"]
    ran = run_calls(holder["run"]).ran
    total = sum(1 for t in holder["run"].node_tools if t.name in ("reason", "thread"))
    return Reasoning(
        question=question, text=holder["text"], chain=holder["chain"],
        problems=tuple(state.problems), elapsed=time.perf_counter() - started,
        calls=len(ran), replayed=total - len(ran), run_id=result.run_id, fork=fork.name,
        status="cut" if state.cut else "done",
    )


def _continues(llm: LLM) -> bool:
    """Whether `llm` continues an assistant prefix: its options are checked when a
    stream is made, before any call (the stream is never started)."""
    try:
        llm.stream([Message("user", "?")], prefill="?")  # type: ignore[call-arg]
    except (LLMOptionError, TypeError):
        return False
    return True


def reason(question: str, **options: Any) -> Reasoning:
    """Answer `question` with the model writing parallel blocks and plait running
    their threads as concurrent calls, joined back byte for byte as the format's
    reference orchestrator does.

    model        a spec ("local", "openai:MODEL", "sim:...") or an LLM object
    fork         ThreadWeaver() (default), Multiverse(), APR(), or one's name
    system       a system message before the question
    max_tokens   one call's output bound; budget: the trajectory's (all calls;
                 default 8 x max_tokens); past it the trajectory ends, recorded
    temperature, seed   as a model takes them
    timeout      seconds for each call's whole reply
    grammar      GBNF by call kind ("parent", "thread", "continue") for a backend
                 that takes one (the bundled model): forces well-formed blocks
    journal, run_id   journal the trajectory; the same run id again replays it
    listeners    event listeners (node events: "reason" and "thread" calls)

    Returns a `Reasoning`: `.text`, `.blocks` (threads with tokens and timings),
    `.critical_path_tokens`, `.tokens`, `.elapsed`, `.critical_path_bound(...)`.
    In async code, `await plait.areason(...)`.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(areason(question, **options))
    raise PlaitError("plait.reason was called inside a running event loop: "
                     "use `await plait.areason(...)`")


def reasoner(model: str | LLM | None = None, *, fork: ForkFormat | str | None = None,
             name: str = "reason", **options: Any) -> Tool:
    """A tool a plan can call like any other: `reason(question)` runs `plait.areason`
    on `model` with `fork` and returns the joined text. Its node is journaled with
    the plan's run, so a resumed plan replays it."""
    fork_format = _fork_of(fork)

    async def reason_tool(question: str) -> str:
        r = await areason(question, model=model, fork=fork_format, **options)
        return r.text

    reason_tool.__doc__ = (f"Think about `question` step by step, with parallel threads "
                           f"({fork_format.name} blocks); returns the reasoning.")
    return make_tool(reason_tool, name=name, policy=ToolPolicy(idempotent=True))
