"""`LLMPool`: the models of a run (or of many runs), opened once and shared.

Every LLM-call node asks the current pool for the model its request names, so
all calls to one model share one backend object, and with it its connections
and its limits (concurrent requests, requests and tokens per minute). `plait.run`
and `plait.ask` enter a pool of their own when none is current; a dataset job
enters ONE pool around its many small runs, so its rows share the limits too.

A model is opened lazily (on first use), by `plait.llm.get_llm(spec, **options)`,
and closed with the pool. An LLM object given by the caller (a test's fake, an
`OpenAILLM` built by hand) is held under its spec, never closed by the pool: its
owner closes it.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from plait.llm import LLM, LLMOptionError, get_llm

# The pool the LLM calls of this context use (entered by run/ask/map, or by hand).
_CURRENT: contextvars.ContextVar[LLMPool | None] = contextvars.ContextVar(
    "plait_llm_pool", default=None
)

DEFAULT_MODEL = "local"


def current_pool() -> LLMPool | None:
    """The pool entered in this context, if any."""
    return _CURRENT.get()


class LLMPool:
    """Model spec -> opened LLM, shared by every call that sees the pool.

    default: the model of a call that names none (else $PLAIT_MODEL, else "local").
    options: backend options per model spec, for models opened by this pool,
             e.g. {"openai:gpt-4o-mini": {"requests_per_minute": 500}}.
    """

    def __init__(self, default: str | None = None,
                 options: Mapping[str, Mapping[str, Any]] | None = None,
                 *, parent: LLMPool | None = None) -> None:
        self.default = default
        self._options = {k: dict(v) for k, v in (options or {}).items()}
        self._parent = parent
        # By the spec a caller gave and by the model's own spec (what a request
        # names): `local:threads=2` opens a model whose spec is `local`.
        self._given: dict[str, tuple[LLM, dict[str, Any]]] = {}  # with its options
        self._models: dict[str, LLM] = {}
        self._owned: list[LLM] = []
        self._closed = False
        # A spec asked for with no options -> its LLM, once resolved (every call asks):
        # cleared when the pool's models change; only in a root pool (a child's answer
        # could change with its parent's models).
        self._resolved: dict[str, LLM] = {}

    @property
    def default_model(self) -> str:
        if self.default is not None:
            return self.default
        if self._parent is not None:
            return self._parent.default_model
        return os.environ.get("PLAIT_MODEL") or DEFAULT_MODEL

    def llm(self, model: str | LLM | None = None, **options: Any) -> LLM:
        """The pool's LLM for `model` (a spec or an LLM object), opened if need be.

        Options go to `get_llm` when the model is opened here. The limits they set
        are shared by every call, so they are set once: asking for an open model
        with other options is an error naming both (no options: share it as it is)."""
        if self._closed:
            raise LLMOptionError("this LLM pool is closed")
        if not options and model.__class__ is str:
            known = self._resolved.get(model)
            if known is not None:
                return known
            llm = self._llm(model)
            if self._parent is None:
                self._resolved[model] = llm
            return llm
        return self._llm(model, **options)

    def _llm(self, model: str | LLM | None = None, **options: Any) -> LLM:
        if model is None:
            model = self.default_model
        if not isinstance(model, str):
            if options:
                raise LLMOptionError("options are only taken with a model spec, not an LLM object")
            return self._hold(model)
        options = {**self._options.get(model, {}), **options}
        found = self._find(model)
        if found is None:
            held = self._lookup_model(model)  # a model whose own spec this is
            if held is not None and not options:
                return held
            return self._open(model, options)
        llm, opened = found
        if options and options != opened:
            raise LLMOptionError(
                f"model {model!r} is already open in this pool with options "
                f"{_shown(opened)}; it cannot be opened again with {_shown(options)}: its "
                "limits are shared by every call, so give every use of it the same options")
        return llm

    def _open(self, model: str, options: dict[str, Any]) -> LLM:
        if self._parent is not None:  # the root opens (and closes) every model
            return self._parent._open(model, options)
        try:
            llm = get_llm(model, **options)
        except TypeError as exc:  # a constructor that takes no such option
            raise LLMOptionError(f"model {model!r} does not take the option(s) "
                                 f"{', '.join(sorted(options))}: {exc}") from None
        existing = self._lookup_model(spec_of(llm))
        if existing is not None:
            if options:
                raise LLMOptionError(
                    f"model {model!r} is the model {spec_of(llm)!r}, already open in this pool; "
                    f"it cannot be opened again with {_shown(options)}")
            llm = existing  # `local` after `local:threads=2`: the one already open
        else:
            self._owned.append(llm)
            self._models[spec_of(llm)] = llm
        self._given[model] = (llm, options)
        self._resolved.clear()
        return llm

    def get(self, spec: str) -> LLM:
        """The LLM a request names (by the model's own spec), opened if need be."""
        found = self._lookup_model(spec)
        return found if found is not None else self.llm(spec)

    def holding(self, llm: LLM) -> LLMPool:
        """A pool in which `llm` answers for its spec: this one, or, when this one
        holds another object under that spec, a child of it that holds `llm` and
        shares everything else (two questions with their own fakes in one job)."""
        existing = self._lookup_model(spec_of(llm))
        if existing is None or existing is llm:
            self._hold(llm)
            return self
        child = LLMPool(parent=self)
        child._models[spec_of(llm)] = llm
        return child

    def _hold(self, llm: LLM) -> LLM:
        spec = spec_of(llm)
        existing = self._lookup_model(spec)
        if existing is None:
            self._models[spec] = llm
            self._resolved.clear()
            return llm
        if existing is not llm:
            raise LLMOptionError(
                f"another LLM object already answers for model {spec!r} in this pool; "
                "pass that one, or run the second in a pool of its own")
        return llm

    def _lookup_model(self, spec: str) -> LLM | None:
        pool: LLMPool | None = self
        while pool is not None:
            if spec in pool._models:
                return pool._models[spec]
            pool = pool._parent
        return None

    def _find(self, given: str) -> tuple[LLM, dict[str, Any]] | None:
        pool: LLMPool | None = self
        while pool is not None:
            if given in pool._given:
                return pool._given[given]
            pool = pool._parent
        return None

    async def aclose(self) -> None:
        """Close every model this pool opened (not those it was given)."""
        self._closed = True
        owned, self._owned = self._owned, []
        errors = []
        for llm in owned:
            try:
                await llm.aclose()
            except Exception as exc:  # close the others; the first error is raised
                errors.append(exc)
        if errors:
            raise errors[0]

    async def __aenter__(self) -> LLMPool:
        self._token = _CURRENT.set(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        _CURRENT.reset(self._token)
        await self.aclose()

    def __repr__(self) -> str:
        return f"<LLMPool default={self.default_model!r} models={sorted(self._models)}>"


@asynccontextmanager
async def using_pool(llm: LLM | None = None) -> AsyncIterator[LLMPool]:
    """The current pool, or a fresh one (closed at the end) when none is; holding
    `llm` under its spec if given (see `LLMPool.holding`)."""
    pool, leave = enter_pool(llm)
    try:
        yield pool
    finally:
        await leave()


def enter_pool(llm: LLM | None = None) -> tuple[LLMPool, Callable[[], Awaitable[None]]]:
    """`using_pool` in two halves, for code that cannot indent its body under it:
    the pool now, and what to await at the end (in the same context)."""
    current = _CURRENT.get()
    pool = current if current is not None else LLMPool()
    used = pool.holding(llm) if llm is not None else pool
    token = _CURRENT.set(used) if used is not current else None

    async def leave() -> None:
        if token is not None:
            _CURRENT.reset(token)
        if current is None:
            await pool.aclose()

    return used, leave


def spec_of(llm: LLM) -> str:
    """The model's own spec (what a request names)."""
    return getattr(llm, "spec", "") or type(llm).__name__


def _shown(options: Mapping[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={options[k]!r}" for k in sorted(options)) + ")"
