"""Any OpenAI-compatible chat server, streamed over server-sent events.

Retries: 429 and 5xx answers, refused connections, and streams that break
before their first delta are retried with exponential backoff and jitter,
honouring Retry-After. Once a delta has reached the caller a broken stream is
never retried here (the caller already holds part of the answer): it raises
`LLMConnectionError`, which is retryable by the caller. A read timeout is not
retried here either, so a server that never answers costs one `read_timeout`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from httpx_sse import SSEError, aconnect_sse

from plait.llm._protocol import (
    BaseLLM,
    LLMConnectionError,
    LLMError,
    LLMHTTPError,
    LLMOptionError,
    LLMTimeout,
    Meter,
    Request,
    approx_prompt_tokens,
)
from plait.llm._ratelimit import RateLimiter

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def _openai_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"response_format": {"type": "json_schema",
                                "json_schema": {"name": "output", "schema": dict(schema)}}}


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one server family takes structured-output constraints."""

    grammar_field: str | None  # body field carrying a GBNF string; None = not supported
    schema_body: Callable[[Mapping[str, Any]], dict[str, Any]]


DIALECTS: dict[str, Dialect] = {
    # OpenAI, Ollama: JSON schema only.
    "openai": Dialect(None, _openai_schema),
    # llama.cpp's server (C++ llama-server and llama-cpp-python's server).
    "llama.cpp": Dialect("grammar", lambda s: {"response_format": {"type": "json_object",
                                                                   "schema": dict(s)}}),
    # vLLM's guided decoding extras.
    "vllm": Dialect("guided_grammar", lambda s: {"guided_json": dict(s)}),
    # SGLang: `ebnf` takes a GBNF-style grammar.
    "sglang": Dialect("ebnf", _openai_schema),
}


def default_dialect(base_url: str) -> str:
    """OpenAI's own API gets "openai"; any other server "llama.cpp"."""
    env = os.environ.get("PLAIT_OPENAI_DIALECT")
    if env:
        return env
    return "openai" if urlsplit(base_url).hostname == "api.openai.com" else "llama.cpp"


class _Secret:
    """Holds an API key; never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


def _public_url(url: str) -> str:
    """The URL without any user:password part."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: the delta-seconds form or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAILLM(BaseLLM):
    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        dialect: str | None = None,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not model:
            raise LLMOptionError("openai: needs a model name, e.g. openai:gpt-4o-mini")
        self.model = model
        self.spec = f"openai:{model}"
        url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self._url = _Secret(url)  # may hold user:password
        self.base_url = _public_url(url)
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._key = _Secret(key) if key else None
        name = dialect or default_dialect(url)
        if name not in DIALECTS:
            raise LLMOptionError(f"unknown dialect {name!r}; known: {sorted(DIALECTS)}")
        self.dialect_name = name
        self.dialect = DIALECTS[name]
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout,
                                      write=connect_timeout, pool=connect_timeout)
        self._limiter = (RateLimiter(requests_per_minute, tokens_per_minute)
                         if requests_per_minute or tokens_per_minute else None)
        self._transport = transport
        # One client per event loop: a pooled connection cannot move between loops.
        self._clients: dict[int, tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}

    def __repr__(self) -> str:
        return f"<OpenAILLM {self.spec!r} at {self.base_url} dialect={self.dialect_name}>"

    # ------------------------------------------------------------ plumbing

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        entry = self._clients.get(id(loop))
        if entry is None or entry[0] is not loop:
            for other, client in list(self._clients.values()):
                if other.is_closed():
                    self._clients.pop(id(other), None)
            headers = {"Authorization": f"Bearer {self._key.reveal()}"} if self._key else {}
            client = httpx.AsyncClient(timeout=self._timeout, headers=headers,
                                       transport=self._transport)
            entry = self._clients[id(loop)] = (loop, client)
        return entry[1]

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        entry = self._clients.pop(id(loop), None)
        if entry is not None:
            await entry[1].aclose()

    def _scrub(self, text: str) -> str:
        if self._key and self._key.reveal():
            text = text.replace(self._key.reveal(), "<secret>")
        return text

    def _check(self, request: Request) -> None:
        if request.grammar is not None and self.dialect.grammar_field is None:
            raise LLMOptionError(
                f"dialect {self.dialect_name!r} takes no GBNF grammar; use json_schema, or "
                f"dialect='llama.cpp' | 'vllm' | 'sglang' for a server that does")

    def body(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.grammar is not None:
            assert self.dialect.grammar_field is not None  # _check
            body[self.dialect.grammar_field] = request.grammar
        if request.json_schema is not None:
            body.update(self.dialect.schema_body(request.json_schema))
        return body

    def _delay(self, attempt: int, error: LLMError) -> float | None:
        """Seconds to wait before retry `attempt` (1-based), or None: give up."""
        if not error.retryable or attempt > self.max_retries:
            return None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return retry_after if retry_after <= self.max_backoff_s else None
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    # ------------------------------------------------------------ the call

    async def _produce(self, request: Request, meter: Meter) -> AsyncIterator[str]:
        body = self.body(request)
        estimate = approx_prompt_tokens(request.messages) + (request.max_tokens or 256)
        attempt = 0
        while True:
            if self._limiter is not None:
                await self._limiter.acquire(estimate)
            sent = 0
            try:
                async for delta in self._attempt(body, meter):
                    sent += 1
                    yield delta
                break
            except LLMError as error:
                if isinstance(error, LLMTimeout):
                    raise
                attempt += 1
                delay = None if sent else self._delay(attempt, error)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
        if self._limiter is not None and meter.prompt_tokens is not None:
            self._limiter.settle(estimate, meter.prompt_tokens + (meter.completion_tokens or 0))

    async def _attempt(self, body: dict[str, Any], meter: Meter) -> AsyncIterator[str]:
        url = f"{self._url.reveal()}/chat/completions"
        where = f"{self.base_url}/chat/completions"
        done = False
        finish: str | None = None
        try:
            async with aconnect_sse(self._client(), "POST", url, json=body) as source:
                response = source.response
                if response.status_code >= 400:
                    await response.aread()
                    raise LLMHTTPError(
                        response.status_code,
                        self._scrub(response.text[:500]) or response.reason_phrase,
                        retry_after=parse_retry_after(response.headers.get("retry-after")))
                async for event in source.aiter_sse():
                    if event.data.strip() == "[DONE]":
                        done = True
                        break
                    chunk = json.loads(event.data)
                    if "error" in chunk:
                        err = chunk["error"]
                        msg = err.get("message", str(err)) if isinstance(err, dict) else str(err)
                        code = err.get("code") if isinstance(err, dict) else None
                        raise LLMHTTPError(code if isinstance(code, int) else 500,
                                           self._scrub(str(msg)))
                    usage = chunk.get("usage")
                    if usage:
                        meter.prompt_tokens = usage.get("prompt_tokens")
                        meter.completion_tokens = usage.get("completion_tokens")
                    for choice in chunk.get("choices") or ():
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            yield content
                        finish = choice.get("finish_reason") or finish
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
            raise LLMConnectionError(f"cannot connect to {where}: {type(e).__name__}") from None
        except httpx.TimeoutException as e:
            raise LLMTimeout(f"{where}: no data within the timeout ({type(e).__name__})") from None
        except SSEError as e:
            raise LLMError(f"{where}: not an event stream: {e}") from None
        except (httpx.TransportError, json.JSONDecodeError) as e:
            raise LLMConnectionError(
                f"{where}: stream broken before the answer was complete ({type(e).__name__})"
            ) from None
        if not done and finish is None:
            # A stream that just ends, with neither [DONE] nor a finish_reason, was cut.
            raise LLMConnectionError(f"{where}: stream ended before the answer was complete")
        # If the server sent no usage (llama-cpp-python's server does not), the
        # stream falls back to approximate counts: ~4 characters per token.
