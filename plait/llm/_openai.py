"""Any OpenAI-compatible chat server, streamed over server-sent events (or,
with `stream=False`, one JSON answer per call: far less work per call for
both ends, for high-rate pipelines).

Retries: 429 and 5xx answers, refused connections, and streams that break
before their first delta are retried with exponential backoff and jitter,
honouring Retry-After. Once a delta has reached the caller a broken stream is
never retried here (the caller already holds part of the answer): it raises
`LLMConnectionError`, which is retryable by the caller. A read timeout is not
retried here either, so a server that never answers costs one `read_timeout`.

Limits (`plait.llm._limits`): at most `max_concurrency` calls in flight, cut
by half on each round of 429/503 answers and grown back by successes (AIMD);
a Retry-After pauses every call of the instance; `requests_per_minute` and
`tokens_per_minute` pace the calls.

Hostile servers: every chunk is validated (pydantic, strict), and anything off
the protocol (a non-JSON event, a list, a number where text belongs, a bad
`usage`, a non-stream body, an `error` event) is an `LLMError` naming the server
(without credentials) with a short sample of what it sent. Nothing is read
unbounded: an error body at most `max_error_bytes`, a stream line or event at
most `max_event_bytes`. The reason a stream ended (`finish_reason`) is kept in
its `usage`, so a reply cut at `max_tokens` is never taken for a whole one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import json
import os
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict, NonNegativeInt, ValidationError

from plait.llm import _sse as sse
from plait.llm._protocol import (
    BaseLLM,
    LLMConnectionError,
    LLMError,
    LLMHTTPError,
    LLMOptionError,
    LLMProtocolError,
    LLMTimeout,
    ROLE_HEADER,
    Message,
    Meter,
    Request,
    ToolCall,
    approx_prompt_tokens,
)
from plait.llm._limits import Limits, Retry, limited

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def _openai_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"response_format": {"type": "json_schema",
                                "json_schema": {"name": "output", "schema": dict(schema)}}}


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one server family takes structured-output constraints."""

    grammar_field: str | None  # body field carrying a GBNF string; None = not supported
    schema_body: Callable[[Mapping[str, Any]], dict[str, Any]]
    # What asks the server to continue a trailing assistant message (a prefill)
    # rather than start a new turn after it; None: the API has no way to.
    prefill_body: Mapping[str, Any] | None = None


# vLLM (vllm-project/vllm#8942), SGLang (sgl-project/sglang#4226), TGI.
_CONTINUE = {"continue_final_message": True, "add_generation_prompt": False}

DIALECTS: dict[str, Dialect] = {
    # OpenAI, Ollama: JSON schema only; OpenAI's chat API cannot continue a message.
    "openai": Dialect(None, _openai_schema),
    # llama.cpp's server (C++ llama-server and llama-cpp-python's server). llama-server
    # continues a trailing assistant message by default (ggml-org/llama.cpp#13174).
    "llama.cpp": Dialect("grammar", lambda s: {"response_format": {"type": "json_object",
                                                                   "schema": dict(s)}}, {}),
    # vLLM's guided decoding extras.
    "vllm": Dialect("guided_grammar", lambda s: {"guided_json": dict(s)}, _CONTINUE),
    # SGLang: `ebnf` takes a GBNF-style grammar.
    "sglang": Dialect("ebnf", _openai_schema, _CONTINUE),
}

# Where a server cannot continue an assistant prefix, what a caller does instead.
PREFILL_FALLBACK = ("re-prompt with the prefix quoted in a user message instead (what "
                    "plait.reason does on such a server)")


def default_dialect(base_url: str) -> str:
    """OpenAI's own API gets "openai"; any other server "llama.cpp"."""
    env = os.environ.get("PLAIT_OPENAI_DIALECT")
    if env:
        return env
    return "openai" if urlsplit(base_url).hostname == "api.openai.com" else "llama.cpp"


class _Secret:
    """Holds an API key or a password; never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


_VERSIONED = re.compile(r"/v\d+[a-z]*(/|$)")

_URL_HELP = ("write it as scheme://host[:port]/path, with ':', '/', '@', '?' and '#' in "
             "credentials percent-encoded")


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without user:password, (user, password) or None).

    The URL is never shown when it does not parse: the text where the host
    should be may be part of a password."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise LLMOptionError(f"the OpenAI base URL is not a valid URL; {_URL_HELP}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LLMOptionError(f"the OpenAI base URL needs http(s)://host; {_URL_HELP}")
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is not None:
        netloc += f":{port}"
    public = urlunsplit((parts.scheme, netloc, parts.path, "", ""))  # a query may hold a key
    if parts.username is None and parts.password is None:
        return public, None
    return public, (unquote(parts.username or ""), unquote(parts.password or ""))


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


# ---------------------------------------------------------------- the wire


class _Wire(BaseModel):
    # Strict: a number where text belongs is the server's bug, not something to coerce.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class _FunctionDelta(_Wire):
    name: str | None = None
    arguments: str | None = None


class _ToolCallDelta(_Wire):
    """A fragment of one tool call: OpenAI sends the id and name in its first
    fragment, then the arguments' JSON text in pieces, all under one `index`."""

    index: NonNegativeInt = 0
    id: str | None = None
    function: _FunctionDelta | None = None


class _Delta(_Wire):
    content: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _Choice(_Wire):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Usage(_Wire):
    prompt_tokens: NonNegativeInt
    completion_tokens: NonNegativeInt


class _Chunk(_Wire):
    choices: list[_Choice] | None = None
    usage: _Usage | None = None


class _Function(_Wire):
    name: str
    arguments: str


class _ToolCall(_Wire):
    id: str
    function: _Function


class _Message(_Wire):
    content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _WholeChoice(_Wire):
    message: _Message
    finish_reason: str | None = None


class _Whole(_Wire):
    """A non-streamed answer (`chat.completion`)."""

    choices: list[_WholeChoice]
    usage: _Usage | None = None


_SURROGATE = re.compile("[\ud800-\udfff]")  # a JSON escape may leave a lone one: unprintable


def snippet(text: str | bytes, limit: int = 200) -> str:
    """A short, one-line sample of what a server sent, for an error message."""
    if isinstance(text, bytes):
        text = text[: limit * 4].decode("utf-8", "replace")
    title = re.search(r"<title>(.*?)</title>", text[:4096], re.I | re.S)
    if title:  # an HTML error page: its title says it
        text = f"HTML page: {title.group(1)}"
    text = " ".join(_SURROGATE.sub("\ufffd", text).split())
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def wire_message(m: Message) -> dict[str, Any]:
    """A message as the chat API takes it."""
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [c.as_openai() for c in m.tool_calls]
        if not m.content:
            out["content"] = None  # what the API itself sends back with tool calls
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


class _Calls:
    """Tool calls put together from streamed fragments, by index."""

    __slots__ = ("ids", "names", "args")

    def __init__(self) -> None:
        self.ids: dict[int, str] = {}
        self.names: dict[int, str] = {}
        self.args: dict[int, list[str]] = {}

    def add(self, d: _ToolCallDelta) -> None:
        if d.id:
            self.ids[d.index] = d.id
        self.args.setdefault(d.index, [])
        fn = d.function
        if fn is not None:
            if fn.name:  # sent whole, once; some servers repeat it: the last wins
                self.names[d.index] = fn.name
            if fn.arguments:
                self.args[d.index].append(fn.arguments)

    def calls(self) -> list[ToolCall]:
        return [ToolCall(self.ids.get(i) or f"call_{i}", self.names.get(i, ""),
                         "".join(self.args[i]) or "{}") for i in sorted(self.args)]


def _json_or_text(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data


# ---------------------------------------------------------------- shared clients

# Connections per server and event loop by default; a call waits for a free one.
MAX_CONNECTIONS = 256

_ssl_context: ssl.SSLContext | None = None


def _ssl() -> ssl.SSLContext:
    # Building a context loads the CA bundle, ~25 ms of blocked event loop: once per
    # process, the one httpx would build (certifi, or SSL_CERT_FILE / SSL_CERT_DIR).
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context()
    return _ssl_context


# httpcore's pool (1.0) walks every connection on each request and response, and
# counts the idle ones for each: work quadratic in its connections. Measured here:
# 1.7 ms of client CPU per non-streamed call with 8 connections busy, 5.4 ms with 32,
# 2.0 ms with the 32 split over four pools. So a server's connections are split over
# pools of at most this many, a call taking the least busy pool.
POOL_CONNECTIONS = 8


@dataclass(slots=True)
class _Shared:
    loop: asyncio.AbstractEventLoop
    clients: list[httpx.AsyncClient]  # [0] is made first and is the only one at low load
    busy: list[int]  # calls using each client now
    users: set[int]  # id() of each OpenAILLM using it and not closed yet
    max_connections: int
    transport: httpx.AsyncBaseTransport | None

    def add(self) -> None:
        # Keep every connection alive (for keepalive_expiry, 5 s): a new TLS handshake
        # per call costs more than an idle socket.
        size = self.max_connections if self.transport is not None else min(
            POOL_CONNECTIONS, self.max_connections - POOL_CONNECTIONS * len(self.clients))
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self.clients.append(httpx.AsyncClient(verify=_ssl(), limits=limits,
                                              transport=self.transport))
        self.busy.append(0)

    def pick(self) -> int:
        """The client for the next call: the least busy, or a new one when all are full."""
        busy = self.busy
        i = min(range(len(busy)), key=busy.__getitem__) if len(busy) > 1 else 0
        # One transport object cannot be shared by clients that each close it.
        if (busy[i] >= POOL_CONNECTIONS and self.transport is None
                and POOL_CONNECTIONS * len(busy) < self.max_connections):
            self.add()
            i = len(busy) - 1
        return i

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[httpx.AsyncClient]:
        i = self.pick()
        self.busy[i] += 1
        try:
            yield self.clients[i]
        finally:
            self.busy[i] -= 1


# One set of clients per (event loop, server): a pooled connection cannot move between
# loops, and every OpenAILLM of a server on a loop shares its connections. The last
# user's aclose() closes them; clients of loops closed without that are dropped at the
# next new client, so they cannot pile up.
_CLIENTS: dict[tuple[int, str], _Shared] = {}


def shared_clients(key: str, user: object, max_connections: int,
                   transport: httpx.AsyncBaseTransport | None) -> _Shared:
    loop = asyncio.get_running_loop()
    entry = _CLIENTS.get((id(loop), key))
    if entry is None or entry.loop is not loop or entry.clients[0].is_closed:
        for k, other in list(_CLIENTS.items()):
            if other.loop.is_closed():
                del _CLIENTS[k]
        entry = _CLIENTS[(id(loop), key)] = _Shared(loop, [], [], set(), max_connections,
                                                    transport)
        entry.add()
    entry.users.add(id(user))
    return entry


async def release_client(key: str, user: object) -> None:
    loop = asyncio.get_running_loop()
    entry = _CLIENTS.get((id(loop), key))
    if entry is None or entry.loop is not loop:
        return
    entry.users.discard(id(user))
    if not entry.users:
        del _CLIENTS[(id(loop), key)]
        for client in entry.clients:
            await client.aclose()


# ---------------------------------------------------------------- the backend


class OpenAILLM(BaseLLM):
    """An API key is sent as a Bearer token. Credentials in the base URL
    (`https://user:password@host/v1`) are sent as HTTP Basic auth instead (as
    httpx does with them), and never shown: not in `spec`, `base_url`, reprs or
    errors, and whatever a server echoes of them is blanked out."""

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
        max_event_bytes: int = 1 << 20,
        max_error_bytes: int = 64 << 10,
        max_connections: int = MAX_CONNECTIONS,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        max_concurrency: int | None = None,
        stream: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not model:
            raise LLMOptionError("openai: needs a model name, e.g. openai:gpt-4o-mini")
        self.model = model
        self.spec = f"openai:{model}"
        env_url = os.environ.get("OPENAI_BASE_URL")
        # Where the URL came from, for errors that say what to change.
        self._url_from = "base_url=" if base_url else "OPENAI_BASE_URL" if env_url else None
        url = (base_url or env_url or DEFAULT_BASE_URL).rstrip("/")
        self.base_url, credentials = split_credentials(url)
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if self._url_from is None and not key and transport is None:
            # OpenAI's own API refuses every call without a key: say so before one is made.
            raise LLMOptionError(
                f"openai:{model}: neither OPENAI_API_KEY nor OPENAI_BASE_URL is set. For "
                f"OpenAI's API ({DEFAULT_BASE_URL}) set OPENAI_API_KEY; for another "
                "OpenAI-compatible server set OPENAI_BASE_URL, e.g. "
                "OPENAI_BASE_URL=http://127.0.0.1:8080/v1")
        self._key = _Secret(key) if key else None
        self._basic: tuple[_Secret, _Secret] | None = None
        secrets = [key] if key else []
        if credentials is not None:  # as httpx itself did with them: Basic auth, before a key
            user, password = credentials
            self._basic = (_Secret(user), _Secret(password))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            secrets += [f"{user}:{password}", password, token]
        self._secrets = tuple(_Secret(s) for s in secrets if len(s) >= 4)
        name = dialect or default_dialect(self.base_url)
        if name not in DIALECTS:
            raise LLMOptionError(f"unknown dialect {name!r}; known: {sorted(DIALECTS)}")
        self.dialect_name = name
        self.dialect = DIALECTS[name]
        self.retry = Retry(max_retries, backoff_s, max_backoff_s)
        self.stream_replies = bool(stream)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout,
                                      write=connect_timeout, pool=read_timeout)
        if max_event_bytes < 1024 or max_error_bytes < 1:
            raise LLMOptionError("max_event_bytes must be >= 1024 and max_error_bytes >= 1")
        self.max_event_bytes = max_event_bytes
        self.max_error_bytes = max_error_bytes
        # Shared by every call of this instance: one instance per model and pipeline.
        self.limits = Limits(max_concurrency, requests_per_minute, tokens_per_minute)
        if max_connections < 1:
            raise LLMOptionError(f"max_connections must be >= 1, got {max_connections}")
        self.max_connections = max_connections
        self._transport = transport
        # OpenAILLMs share a client when they agree on everything it holds.
        self._client_key = f"{self.base_url} {max_connections} {id(transport or 0)}"

    def __repr__(self) -> str:
        return f"<OpenAILLM {self.spec!r} at {self.base_url} dialect={self.dialect_name}>"

    # ------------------------------------------------------------ plumbing

    def _client(self) -> httpx.AsyncClient:
        return self._clients().clients[0]

    def _clients(self) -> _Shared:
        return shared_clients(self._client_key, self, self.max_connections, self._transport)

    async def aclose(self) -> None:
        await release_client(self._client_key, self)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret.reveal(), "<secret>")
        return text

    def _authorization(self) -> dict[str, str]:
        # Built per request, so no attribute holds a header with the secret in it.
        if self._basic is not None:
            user, password = (s.reveal() for s in self._basic)
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
        return {"Authorization": f"Bearer {self._key.reveal()}"} if self._key else {}

    def _sample(self, data: str | bytes) -> str:
        if isinstance(data, bytes):
            data = data[:800].decode("utf-8", "replace")
        return snippet(self._scrub(data))

    def _from(self) -> str:
        """Where the base URL came from, as a hint's ending."""
        return f" (the base URL is from {self._url_from})" if self._url_from else ""

    def _hint(self, status: int) -> str:
        """How to fix the usual causes of a 401 or 404 answer (never showing a secret)."""
        if status == 401:
            if self._basic is not None:
                return "; the user and password in the base URL were refused"
            if self._key is None:
                return "; the server wants an API key: set OPENAI_API_KEY"
            return "; the API key (OPENAI_API_KEY or api_key=) was refused: check it"
        if status == 404 and not _VERSIONED.search(urlsplit(self.base_url).path):
            # A server's root URL (http://host:8000) instead of its API's (.../v1); a
            # versioned one (/v1, /v1beta, /api/v2) that answers 404 lacks something else.
            setting = "base_url=" if self._url_from == "base_url=" else "OPENAI_BASE_URL="
            return (f"; OpenAI-compatible servers serve the API under /v1: add /v1 to the "
                    f"base URL, {setting}{self.base_url}/v1")
        return ""

    def _check(self, request: Request) -> None:
        if request.grammar is not None and self.dialect.grammar_field is None:
            raise LLMOptionError(
                f"dialect {self.dialect_name!r} takes no GBNF grammar; use json_schema, or "
                f"dialect='llama.cpp' | 'vllm' | 'sglang' for a server that does")
        if request.prefill is not None and self.dialect.prefill_body is None:
            raise LLMOptionError(
                f"dialect {self.dialect_name!r} cannot continue an assistant prefix "
                f"(prefill=): {PREFILL_FALLBACK}; or dialect='llama.cpp' | 'vllm' | "
                "'sglang' for a server that can")

    def body(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [wire_message(m) for m in request.messages],
            "stream": self.stream_replies,
        }
        if request.prefill is not None:
            assert self.dialect.prefill_body is not None  # _check
            body["messages"].append({"role": "assistant", "content": request.prefill})
            body.update(self.dialect.prefill_body)
        if self.stream_replies:
            body["stream_options"] = {"include_usage": True}
        if request.stop:
            body["stop"] = list(request.stop)
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if getattr(request, "seed", None) is not None:
            body["seed"] = request.seed  # type: ignore[attr-defined]
        if request.grammar is not None:
            assert self.dialect.grammar_field is not None  # _check
            body[self.dialect.grammar_field] = request.grammar
        if request.json_schema is not None:
            body.update(self.dialect.schema_body(request.json_schema))
        if request.tools:
            body["tools"] = [dict(t) for t in request.tools]
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
            if request.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        return body

    # ------------------------------------------------------------ the call

    async def _produce(self, request: Request, meter: Meter) -> AsyncIterator[str]:
        body = self.body(request)
        # The role is no part of the body: a real server would refuse an unknown field.
        extra = {ROLE_HEADER: request.role} if request.role else {}
        estimate = (approx_prompt_tokens(request.messages, request.prefill)
                    + (request.max_tokens or 256))
        attempt = self._attempt if self.stream_replies else self._attempt_whole
        async for delta in limited(lambda: attempt(body, extra, meter), meter,
                                   limits=self.limits, retry=self.retry, estimate=estimate):
            yield delta

    async def _head(self, response: httpx.Response) -> bytes:
        """At most `max_error_bytes` of a body that is not the stream (an error page)."""
        head = bytearray()
        async for chunk in response.aiter_bytes():
            head += chunk
            if len(head) >= self.max_error_bytes:
                break
        return bytes(head[: self.max_error_bytes])

    def _error_event(self, err: Any, where: str) -> LLMError:
        """The server's own error, sent inside the stream: retryable unless it says
        it is the caller's fault (a 4xx code)."""
        err = err.get("error", err) if isinstance(err, dict) else err
        message = err.get("message", err) if isinstance(err, dict) else err
        code = err.get("code") if isinstance(err, dict) else None
        status = code if isinstance(code, int) and 400 <= code < 600 else 500
        return LLMHTTPError(status, f"error event from {where}: {self._sample(str(message))}")

    def _chunk(self, data: str, where: str) -> _Chunk:
        try:
            raw = json.loads(data)
        except ValueError:
            raise LLMProtocolError(
                f"{where} sent an event that is not JSON: {self._sample(data)}") from None
        if isinstance(raw, dict) and raw.get("error") is not None:
            raise self._error_event(raw, where)
        try:
            return _Chunk.model_validate(raw)
        except ValidationError as e:
            first = e.errors()[0]
            at = ".".join(str(p) for p in first["loc"]) or "the chunk"
            raise LLMProtocolError(
                f"{where} sent a malformed chunk ({at}: {first['msg']}): {self._sample(data)}"
            ) from None

    async def _refuse(self, response: httpx.Response, where: str) -> None:
        """Raise the server's error status as `LLMHTTPError` (reading only the head)."""
        if response.status_code >= 400:
            head = await self._head(response)
            said = self._sample(head) if head else response.reason_phrase
            raise LLMHTTPError(
                response.status_code,
                f"{where}: {said}{self._hint(response.status_code)}",
                retry_after=parse_retry_after(response.headers.get("retry-after")))

    @contextlib.contextmanager
    def _wire_errors(self, where: str) -> Iterator[None]:
        """httpx's errors as plait's, each saying what to change."""
        try:
            yield
        except sse.TooLong as e:
            raise LLMProtocolError(
                f"{where} sent {e.what} of its event stream longer than {e.limit} bytes "
                f"(max_event_bytes; raise it if the server's events are that large); it "
                f"begins {self._sample(e.head)}") from None
        except httpx.ConnectTimeout:
            raise LLMConnectionError(
                f"cannot connect to {where} within connect_timeout={self.connect_timeout} s"
            ) from None
        except httpx.PoolTimeout:
            raise LLMConnectionError(
                f"no free connection to {where} within {self.read_timeout} s (at most "
                f"max_connections={self.max_connections} per server)") from None
        except httpx.ConnectError as e:
            raise LLMConnectionError(
                f"cannot connect to {where}: {type(e).__name__}; is the server running at "
                f"{self.base_url}?{self._from()}") from None
        except httpx.TimeoutException as e:
            raise LLMTimeout(
                f"{where} sent no data for read_timeout={self.read_timeout} s "
                f"({type(e).__name__}); pass read_timeout= to wait longer") from None
        except httpx.TransportError as e:
            raise LLMConnectionError(
                f"{where}: stream broken before the answer was complete ({type(e).__name__})"
            ) from None

    async def _attempt_whole(self, body: dict[str, Any], headers: dict[str, str], meter: Meter
                             ) -> AsyncIterator[str]:
        """One non-streamed call: the answer is one JSON body, read up to
        `max_event_bytes` (it is one event), yielded as one delta."""
        where = f"{self.base_url}/chat/completions"
        with self._wire_errors(where):
            async with self._clients().use() as client, client.stream(
                "POST", where, json=body, headers={**headers, **self._authorization()},
                timeout=self._timeout,
            ) as response:
                await self._refuse(response, where)
                data = bytearray()
                async for part in response.aiter_bytes():
                    data += part
                    if len(data) > self.max_event_bytes:
                        raise LLMProtocolError(
                            f"{where} sent an answer longer than {self.max_event_bytes} bytes "
                            f"(max_event_bytes; raise it if its answers are that large); it "
                            f"begins {self._sample(bytes(data))}")
        try:
            raw = json.loads(data)
        except ValueError:
            raise LLMProtocolError(
                f"{where} answered {response.status_code} with something that is not JSON: "
                f"{self._sample(bytes(data))}") from None
        if isinstance(raw, dict) and raw.get("error") is not None:
            raise self._error_event(raw, where)
        try:
            whole = _Whole.model_validate(raw)
        except ValidationError as e:
            first = e.errors()[0]
            at = ".".join(str(p) for p in first["loc"]) or "the answer"
            raise LLMProtocolError(
                f"{where} sent a malformed answer ({at}: {first['msg']}): "
                f"{self._sample(bytes(data))}") from None
        if not whole.choices:
            raise LLMProtocolError(f"{where} sent an answer with no choices: "
                                   f"{self._sample(bytes(data))}")
        if whole.usage is not None:
            meter.prompt_tokens = whole.usage.prompt_tokens
            meter.completion_tokens = whole.usage.completion_tokens
        meter.finish_reason = whole.choices[0].finish_reason
        message = whole.choices[0].message
        meter.tool_calls = [ToolCall(c.id, c.function.name, c.function.arguments)
                            for c in message.tool_calls or ()]
        if message.content:
            yield _SURROGATE.sub("\ufffd", message.content)
        elif meter.tool_calls:
            yield ""  # the reply began (and ended) here

    async def _attempt(self, body: dict[str, Any], headers: dict[str, str], meter: Meter
                       ) -> AsyncIterator[str]:
        where = f"{self.base_url}/chat/completions"
        done = False
        finish: str | None = None
        calls = _Calls()
        with self._wire_errors(where):
            async with self._clients().use() as client, client.stream(
                "POST", where, json=body, headers={**headers, **self._authorization()},
                timeout=self._timeout,
            ) as response:
                await self._refuse(response, where)
                kind = response.headers.get("content-type", "").lower()
                if not kind.startswith("text/event-stream"):
                    head = await self._head(response)
                    raise LLMProtocolError(
                        f"{where} answered {response.status_code} with {kind or 'no content type'}"
                        f", not an event stream: {self._sample(head)}")
                async for event in sse.events(response.aiter_bytes(),
                                              max_line=self.max_event_bytes,
                                              max_event=self.max_event_bytes):
                    if event.event == "error":
                        raise self._error_event(_json_or_text(event.data), where)
                    if event.data.strip() == "[DONE]":
                        done = True
                        break
                    chunk = self._chunk(event.data, where)
                    if chunk.usage is not None:
                        meter.prompt_tokens = chunk.usage.prompt_tokens
                        meter.completion_tokens = chunk.usage.completion_tokens
                    for choice in chunk.choices or ():
                        delta = choice.delta
                        content = delta.content if delta is not None else None
                        if content:
                            yield _SURROGATE.sub("\ufffd", content)
                        if delta is not None and delta.tool_calls:
                            for fragment in delta.tool_calls:
                                calls.add(fragment)
                            meter.tool_calls = calls.calls()
                            yield ""  # for the stream's ttft
                        finish = choice.finish_reason or finish
                        meter.finish_reason = finish
        if not done and finish is None:
            # A stream that just ends, with neither [DONE] nor a finish_reason, was cut.
            raise LLMConnectionError(f"{where}: stream ended before the answer was complete")
        # If the server sent no usage (llama-cpp-python's server does not), the
        # stream falls back to approximate counts: ~4 characters per token.
