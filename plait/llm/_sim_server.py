"""The simulated model as an OpenAI-compatible HTTP server (`plait sim-server`).

Endpoints: `POST /v1/chat/completions` (streamed or not: `"stream": false`
answers one `chat.completion` with its usage), `GET /v1/models`, and
`GET /stats` (the counters of `SimStats` and the options, as JSON).
Timing and script are those of `plait.llm._sim`; the clock starts when the
request arrives (or, with `slots`, when it gets one). Capacity (`slots`,
`capacity`, `lengths`, `seed`, `rate_limit`) is that of `plait.llm._capacity`,
the same as in-process. Faults from the script (`"fault": {...}` in a rule):

- ``{"status": 429, "retry_after": 2}``: that status, with a Retry-After header.
- ``{"drop_after": K}``: K content chunks, then the connection is dropped.
- ``{"stall_after": K}``: K content chunks, then silence (connection kept).
- ``{"hang": true}``: no answer at all.

A rule's "tool_calls" are streamed as the OpenAI API streams them: a call's
first chunk holds its index, id, type and name, the next ones pieces of its
arguments' JSON text under the same index; the last chunk's finish_reason is
`tool_calls`. Messages may carry tool calls and tool answers (`tool_call_id`).

A rule's "role" is matched against the request's `X-Plait-Role` header, which
plait's OpenAI client sends with every call that has a role (planner, joiner, react).

starlette and uvicorn are imported lazily (extra `plait[sim]`).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Self

from plait.llm._capacity import DEFAULT_TPS, DEFAULT_TTFT, Capacity, SimCall, SimStats
from plait.llm._protocol import (
    ROLE_HEADER,
    LLMError,
    LLMHTTPError,
    MissingExtraError,
    build_request,
)
from plait.llm._sim import Plan, SimScript, forever


def require_sim_extra() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MissingExtraError("the simulated model server (starlette, uvicorn)", "sim") from None


class _Drop(Exception):
    """Raised inside a streaming response to cut the connection."""


class _QuietDrops(logging.Filter):
    """Keep uvicorn from logging our deliberate drops as application errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        seen: list[BaseException] = [exc] if exc else []
        while seen:
            e = seen.pop()
            if isinstance(e, _Drop):
                return False
            seen.extend(getattr(e, "exceptions", ()))
            if e.__cause__ or e.__context__:
                seen.append(e.__cause__ or e.__context__)  # type: ignore[arg-type]
        return True


def _content(value: Any) -> str:
    """OpenAI content: a string or a list of {"type": "text", "text": ...} parts."""
    if isinstance(value, list):
        return "".join(p.get("text", "") for p in value if isinstance(p, dict))
    return "" if value is None else str(value)


def _prefill(body: dict[str, Any], messages: list[dict[str, Any]]) -> str | None:
    """The assistant prefix to continue, taken off `messages`: a trailing assistant
    message is continued, as llama.cpp's server does by default, and as vLLM and
    SGLang do with `continue_final_message` (which, when false, asks for a new turn)."""
    if not messages or messages[-1]["role"] != "assistant" or messages[-1]["tool_calls"]:
        return None
    if body.get("continue_final_message") is False or body.get("add_generation_prompt"):
        return None
    return messages.pop()["content"]


def create_app(script: SimScript | Any = None, *, ttft: float = DEFAULT_TTFT,
               tps: float = DEFAULT_TPS, model: str = "sim",
               capacity: Capacity | None = None) -> Any:
    """The app. `capacity`, if given, carries the timing (its ttft and tps win)."""
    require_sim_extra()
    from starlette.applications import Starlette
    from starlette.requests import Request as HTTPRequest
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    cap = capacity if capacity is not None else Capacity(ttft=ttft, tps=tps)
    if script is None and cap.lengths is not None:
        script = ""  # every reply drawn from `lengths`
    script = script if isinstance(script, SimScript) else SimScript(script)

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse({"error": {"message": message, "type": "sim", "code": status}},
                            status_code=status, headers=headers)

    def chunk(cid: str, delta: dict[str, Any], finish: str | None = None) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body)}\n\n"

    def usage(plan: Plan) -> dict[str, int]:
        n = plan.tokens
        return {"prompt_tokens": plan.prompt_tokens, "completion_tokens": n,
                "total_tokens": plan.prompt_tokens + n}

    async def events(call: SimCall, plan: Plan, include_usage: bool) -> AsyncIterator[str]:
        try:
            cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
            fault = plan.fault
            limit = None if fault is None else (
                fault.drop_after if fault.drop_after is not None else fault.stall_after)
            units = plan.units if limit is None else plan.units[:limit]
            yield chunk(cid, {"role": "assistant", "content": ""})
            await call.admit()  # queue time is part of the client's ttft
            begun = -1  # the last tool call whose first chunk went out
            async for i in call.pieces(len(units)):
                k, piece = units[i]
                if k < 0:
                    yield chunk(cid, {"content": piece})
                elif k > begun:
                    begun = k
                    c = plan.tool_calls[k]
                    yield chunk(cid, {"tool_calls": [{
                        "index": k, "id": c.id, "type": "function",
                        "function": {"name": piece, "arguments": ""}}]})
                else:
                    yield chunk(cid, {"tool_calls": [{
                        "index": k, "function": {"arguments": piece}}]})
            if fault is not None and fault.drop_after is not None:
                raise _Drop()
            if fault is not None and fault.stall_after is not None:
                await forever()
            if not units:
                await call.finish(0)
            yield chunk(cid, {}, plan.finish_reason)
            if include_usage:
                body = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                        "model": model, "choices": [], "usage": usage(plan)}
                yield f"data: {json.dumps(body)}\n\n"
            yield "data: [DONE]\n\n"
            call.served(plan.tokens)
        finally:
            call.close()

    async def whole(call: SimCall, plan: Plan) -> Response:
        try:
            fault = plan.fault
            await call.admit()
            if fault is not None:  # drop or stall: nothing useful ever arrives
                if fault.drop_after is not None:
                    raise _Drop()
                await forever()
            await call.finish(plan.tokens)
            call.served(plan.tokens)
        finally:
            call.close()
        message: dict[str, Any] = {"role": "assistant", "content": "".join(plan.pieces)}
        if plan.tool_calls:
            message["tool_calls"] = [c.as_openai() for c in plan.tool_calls]
            message["content"] = message["content"] or None
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": plan.finish_reason,
                         "message": message}],
            "usage": usage(plan)})

    async def chat(request: HTTPRequest) -> Response:
        arrived = time.monotonic()
        try:
            body = await request.json()
            messages = [{"role": m["role"], "content": _content(m.get("content")),
                         "tool_calls": m.get("tool_calls"), "tool_call_id": m.get("tool_call_id")}
                        for m in body["messages"]]
            prefill = _prefill(body, messages)
            req = build_request(messages, stop=body.get("stop"), prefill=prefill,
                                max_tokens=body.get("max_tokens") or body.get(
                                    "max_completion_tokens"),
                                temperature=body.get("temperature"),
                                role=request.headers.get(ROLE_HEADER),
                                tools=body.get("tools"), tool_choice=body.get("tool_choice"),
                                parallel_tool_calls=body.get("parallel_tool_calls"))
        except (ValueError, KeyError, TypeError, LLMError) as e:
            return error(400, f"bad request: {e}")
        try:
            call = cap.open(arrived)
        except LLMHTTPError as e:  # over rate_limit
            return error(e.status, str(e),
                         {"Retry-After": f"{max(0.001, e.retry_after or 0):.3f}"})
        try:
            plan = script.plan(req, cap.filler, cap.tokens)
        except LLMError as e:
            call.close()
            return error(400, f"bad request: {e}")
        fault = plan.fault
        if fault is not None and fault.status is not None:
            call.close()
            headers = ({"Retry-After": f"{fault.retry_after:g}"}
                       if fault.retry_after is not None else None)
            return error(fault.status, "simulated fault", headers)
        if fault is not None and fault.hang:
            try:
                await forever()
            finally:
                call.close()
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(events(call, plan, include_usage),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return await whole(call, plan)

    async def models(request: HTTPRequest) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": "plait"}]})

    async def stats(request: HTTPRequest) -> Response:
        return JSONResponse({**cap.stats.as_dict(), "options": cap.options()})

    app = Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
    ])
    app.state.capacity = cap
    return app


def _config(app: Any, host: str, port: int, log_level: str) -> Any:
    import uvicorn

    log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in log.filters):
        log.addFilter(_QuietDrops())
    # No access log: a line per call costs more than the call at thousands of calls/s.
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          timeout_graceful_shutdown=1, lifespan="off")


def serve(script: Any = None, *, ttft: float = DEFAULT_TTFT, tps: float = DEFAULT_TPS,
          host: str = "127.0.0.1", port: int = 8765, model: str = "sim",
          log_level: str = "info", **capacity: Any) -> None:
    """Run the server in the foreground until interrupted. An address it cannot
    listen on (a port taken, a host not this machine's) raises OSError first.
    `capacity`: slots=, capacity=, lengths=, seed=, rate_limit= (see `Capacity`)."""
    app = create_app(script, model=model,  # checks the extra
                     capacity=Capacity(ttft=ttft, tps=tps, **capacity))
    import uvicorn

    # Bound here, not by uvicorn, which would log the failure and exit the process.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    uvicorn.Server(_config(app, host, port, log_level)).run(sockets=[sock])


class SimServer:
    """The server in a background thread, for tests and benchmarks.

    >>> with SimServer(["hi"], ttft=0.1, tps=100) as server:
    ...     llm = OpenAILLM("sim", base_url=server.base_url)

    Capacity options (slots=, capacity=, lengths=, seed=, rate_limit=) as for
    `SimLLM`; `stats` counts the calls it saw, `ceiling()` is its rows/s bound.
    """

    def __init__(self, script: Any = None, *, ttft: float = DEFAULT_TTFT,
                 tps: float = DEFAULT_TPS, host: str = "127.0.0.1", port: int = 0,
                 model: str = "sim", **capacity: Any) -> None:
        self.capacity = Capacity(ttft=ttft, tps=tps, **capacity)
        self._app = create_app(script, model=model, capacity=self.capacity)  # checks the extra
        import uvicorn

        self._server = uvicorn.Server(_config(self._app, host, port, "warning"))
        self._thread = threading.Thread(target=self._server.run, name="plait-sim-server",
                                        daemon=True)
        self.host = host
        self.port = port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def stats(self) -> SimStats:
        return self.capacity.stats

    def ceiling(self, calls_per_row: float = 1, mean_tokens: float | None = None) -> float:
        """Rows/s this server can serve at most (see `plait.llm._capacity`)."""
        return self.capacity.ceiling(calls_per_row, mean_tokens)

    def start(self, timeout: float = 10.0) -> Self:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the sim server did not start")
            time.sleep(0.01)
        if self.port == 0:
            sockets = [s for server in self._server.servers for s in server.sockets]
            self.port = sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

