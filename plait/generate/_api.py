"""`plait.generate` and `plait.llm_tool`: an LLM call as a node of the workflow.

    @plait.workflow
    async def brief(topic: str):
        facts = plait.generate(f"List three facts about {topic}.", model="sim")
        title = plait.generate(f"A title for an article on {topic}.", model="sim")
        return await facts, await title          # both calls ran at once

Inside a run a call returns a `Ref` at once and starts now, like a tool call.
Outside any run it is run to completion: in plain code `generate(...)` returns
the value; in async code `await generate(...)` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic

from plait.runtime._engine import NodeError, Run, current_run
from plait._errors import PlaitError
from plait.runtime._graph import Ref, Template
from plait.runtime._tools import Tool
from plait.generate._node import (
    DEFAULT_HOOKS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Call,
    CallHooks,
    _submit,
    llm_call_tool,
    llm_policy,
    request_of,
    run_calls,
    submit_call,
)
from plait.generate._pool import current_pool, spec_of
from plait.generate._schema import json_schema_of
from plait.llm import LLM, Message
from plait.llm._protocol import ROLES

DEFAULT_REPAIRS = 1


def generate(
    prompt_or_messages: Any,
    *,
    model: str | LLM | None = None,
    schema: type[pydantic.BaseModel] | None = None,
    temperature: float | None = 0.0,
    max_tokens: int | None = None,
    seed: int | None = None,
    stop: Sequence[str] | None = None,
    system: str | None = None,
    repairs: int = DEFAULT_REPAIRS,
    timeout: float | None = DEFAULT_TIMEOUT,
    name: str = "generate",
    prefill: str | None = None,
) -> Any:
    """One LLM call, as a node of the run: a `Ref` to its reply inside a workflow.

    prompt_or_messages  a prompt (one user message: a str, or a Ref / Template of
                        earlier nodes' values), or messages: dicts {"role", "content"},
                        `plait.llm.Message`s or (role, content) pairs
    model         a spec ("local", "openai:MODEL", "sim:...") or an LLM object; None:
                  the pool's default, else $PLAIT_MODEL, else "local"
    schema        a pydantic model class: its JSON schema goes to the server and the
                  value is a validated instance; a reply that does not validate is
                  sent back with the error up to `repairs` times (each repair a node
                  of its own), then the call fails with `SchemaError`
    temperature   0 (default): deterministic, so an identical call in the same run
                  is the same node, paid once; above 0 each call is a sample of its
                  own. Either way a resumed run replays finished calls from the journal.
    max_tokens, seed, stop, system   as a model takes them (`system` is prepended)
    timeout       seconds for the whole reply (LLMTimeout after; retried, as are
                  dropped streams and 429/5xx answers, twice)
    prefill       an assistant prefix the model continues: the value is only what
                  follows it (part of the call's identity; see docs/llm.md for the
                  servers that can, and the fallback where one cannot)
    name          the node's tool name: journals, events and views show it

    Outside a run the call runs at once to completion: `generate(...)` returns the
    text (or instance) in plain code, and `await generate(...)` in async code.
    """
    return _generate(prompt_or_messages, model=model, schema=schema, temperature=temperature,
                     max_tokens=max_tokens, seed=seed, stop=stop, system=system,
                     repairs=repairs, timeout=timeout, tool=llm_call_tool(name), options={},
                     prefill=prefill)


def _generate(prompt: Any, *, model: str | LLM | None, schema: type[pydantic.BaseModel] | None,
              temperature: float | None, max_tokens: int | None, seed: int | None,
              stop: Sequence[str] | None, system: str | None, repairs: int,
              timeout: float | None, tool: Tool, options: Mapping[str, Any],
              prefill: str | None = None) -> Any:
    _check(temperature=temperature, max_tokens=max_tokens, repairs=repairs, timeout=timeout)
    run = current_run()
    if run is None:
        return _outside(lambda: _generate(
            prompt, model=model, schema=schema, temperature=temperature,
            max_tokens=max_tokens, seed=seed, stop=stop, system=system, repairs=repairs,
            timeout=timeout, tool=tool, options=options, prefill=prefill))
    pool = current_pool()
    if pool is None:
        raise PlaitError("plait.generate needs the models of its run: run the workflow "
                         "with plait.run / plait.arun (or enter an LLMPool around it)")
    llm = pool.llm(model, **options)
    request = request_of(
        spec_of(llm), _messages(prompt, system), stop=[stop] if isinstance(stop, str) else stop,
        max_tokens=max_tokens, temperature=temperature, grammar=None, seed=seed,
        json_schema=json_schema_of(schema) if schema is not None else None, prefill=prefill,
    )
    if schema is None:
        hooks = DEFAULT_HOOKS if timeout == DEFAULT_TIMEOUT else CallHooks(timeout=timeout)
        return submit_call(run, tool, request, hooks).ref
    hooks = CallHooks(schema=schema, final=repairs == 0, timeout=timeout)

    def repaired(first: Call) -> Call:
        return _repair_chain(run, tool, request, first, schema, repairs, timeout)

    return submit_call(run, tool, request, hooks, shared_as=(schema, repairs),
                       then=repaired).ref


def _repair_chain(run: Run, tool: Tool, request: dict[str, Any], first: Call,
                  schema: type[pydantic.BaseModel], repairs: int,
                  timeout: float | None) -> Call:
    """The repair nodes after a schema call's first node, each taking the one
    before: a valid reply passes through unpaid; an invalid one is sent back to
    the model with its validation error. The last node's value is the instance."""
    calls = run_calls(run)
    call = first
    for k in range(1, repairs + 1):
        hooks = CallHooks(schema=schema, final=k == repairs, repairs=k, timeout=timeout)
        call = _submit(run, tool, {**request, "repair": call.ref}, hooks, calls)
    return call


def _messages(prompt: Any, system: str | None) -> list[list[Any]]:
    if isinstance(prompt, (str, Ref, Template)):
        pairs: list[list[Any]] = [["user", prompt]]
    elif isinstance(prompt, (list, tuple)) and prompt:
        pairs = [_pair(m, n) for n, m in enumerate(prompt)]
    else:
        raise TypeError("generate takes a prompt (a str, or a Ref or Template of earlier "
                        "calls) or a non-empty list of messages ({'role': ..., 'content': "
                        f"...}} dicts, Messages or (role, content) pairs), got {prompt!r}")
    return [["system", system], *pairs] if system is not None else pairs


def _pair(m: Any, n: int) -> list[Any]:
    if isinstance(m, Message):
        role, content = m.role, m.content
    elif isinstance(m, Mapping) and set(m) == {"role", "content"}:
        role, content = m["role"], m["content"]
    elif isinstance(m, (list, tuple)) and len(m) == 2:
        role, content = m
    else:
        raise TypeError(f"message {n} must be a {{'role': ..., 'content': ...}} dict, a "
                        f"Message or a (role, content) pair, got {m!r}")
    if role not in ROLES:
        raise ValueError(f"message {n}: role must be one of {sorted(ROLES)}, got {role!r}")
    return [role, content]


def _check(*, temperature: float | None, max_tokens: int | None, repairs: int,
           timeout: float | None) -> None:
    if temperature is not None and not (isinstance(temperature, (int, float))
                                        and temperature >= 0):
        raise ValueError(f"temperature must be a number >= 0 or None, got {temperature!r}")
    if max_tokens is not None and not (isinstance(max_tokens, int) and max_tokens >= 1):
        raise ValueError(f"max_tokens must be a whole number >= 1 or None, got {max_tokens!r}")
    if not (isinstance(repairs, int) and repairs >= 0):
        raise ValueError(f"repairs must be a whole number >= 0, got {repairs!r}")
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be a number > 0 or None, got {timeout!r}")


def _outside(call: Callable[[], Any]) -> Any:
    """A call made outside any run: run it as a run of its own. In plain code the
    value; under a running event loop a coroutine giving it (`await` it)."""
    from plait._api import arun, workflow  # the api layer sits above this one

    async def one() -> Any:
        return await call()

    async def main() -> Any:
        result = await arun(workflow(one), raise_on_error=False)
        if not result.ok:
            error = result.error
            if isinstance(error, NodeError) and error.__cause__ is not None:
                raise error.__cause__
            assert error is not None
            raise error
        return result.value

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    return main()


# ---------------------------------------------------------------- llm_tool

# generate's own options (an llm_tool's defaults); any other option goes to the model.
_CALL_OPTIONS = frozenset({"schema", "temperature", "max_tokens", "seed", "stop", "system",
                           "repairs", "timeout", "prefill"})


@dataclass(frozen=True)
class LLMTool:
    """A reusable LLM call: a model, defaults for its calls, and the model's limits.

    `tool(prompt, **overrides)` is `plait.generate(prompt, model=..., **defaults,
    **overrides)` under the tool's name. Build one with `plait.llm_tool`.
    """

    model: str | LLM | None
    name: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)  # for get_llm: limits etc.
    retries: int = DEFAULT_RETRIES
    _tool: Tool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tool", llm_call_tool(self.name, llm_policy(self.retries)))

    def __call__(self, prompt_or_messages: Any, **overrides: Any) -> Any:
        """One call: a Ref inside a run, the value outside (see `plait.generate`)."""
        unknown = sorted(set(overrides) - _CALL_OPTIONS)
        if unknown:
            raise TypeError(f"llm_tool {self.name!r}: unknown option(s) {', '.join(unknown)}; "
                            f"a call takes {', '.join(sorted(_CALL_OPTIONS))}")
        given = {**self.defaults, **overrides}
        return _generate(
            prompt_or_messages, model=self.model, schema=given.get("schema"),
            temperature=given.get("temperature", 0.0), max_tokens=given.get("max_tokens"),
            seed=given.get("seed"), stop=given.get("stop"), system=given.get("system"),
            repairs=given.get("repairs", DEFAULT_REPAIRS),
            timeout=given.get("timeout", DEFAULT_TIMEOUT), tool=self._tool,
            options=self.options, prefill=given.get("prefill"),
        )


def llm_tool(
    model: str | LLM | None = None,
    *,
    name: str = "generate",
    concurrency: int | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
    retries: int = DEFAULT_RETRIES,
    **defaults: Any,
) -> LLMTool:
    """A reusable LLM call on `model`: `summarize = plait.llm_tool("openai:gpt-4o-mini",
    name="summarize", system="Summarize in one line.", max_tokens=60)`.

    defaults     generate's options for every call (schema, temperature, max_tokens,
                 seed, stop, system, repairs, timeout); a call may override them
    name         the nodes' tool name (their role): journals and views show it
    concurrency, rpm, tpm   the model's limits: most requests in flight, requests
                 and tokens per minute, shared by every call to that model in the
                 run's pool (or a dataset job's); set where the model is opened
    retries      more tries of a call that failed retryably (a dropped stream, a
                 timeout, 429/5xx)
    Other options go to the model's backend (`get_llm(model, **options)`, e.g.
    `base_url=`), which refuses what it does not know.
    """
    options = {k: v for k, v in defaults.items() if k not in _CALL_OPTIONS}
    calls = {k: v for k, v in defaults.items() if k in _CALL_OPTIONS}
    for key, value in (("max_concurrency", concurrency), ("requests_per_minute", rpm),
                       ("tokens_per_minute", tpm)):
        if value is not None:
            options[key] = value
    if options and model is not None and not isinstance(model, str):
        raise TypeError("llm_tool: backend options and limits are taken with a model spec, "
                        "not an LLM object (set them where the object is built)")
    _check(temperature=calls.get("temperature", 0.0), max_tokens=calls.get("max_tokens"),
           repairs=calls.get("repairs", DEFAULT_REPAIRS),
           timeout=calls.get("timeout", DEFAULT_TIMEOUT))
    if calls.get("schema") is not None:
        json_schema_of(calls["schema"])  # a bad schema is refused here, not at a call
    return LLMTool(model, name, calls, options, retries)
