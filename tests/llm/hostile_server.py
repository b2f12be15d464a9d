"""A hostile OpenAI-compatible server on 127.0.0.1: raw asyncio, so it can send any
bytes at all. The first path segment names the shape of its reply:
`http://127.0.0.1:PORT/SHAPE/v1` is the base URL of a server that always
answers that way. Big bodies are generated as they are sent (the test stays cheap).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Writer = asyncio.StreamWriter


def sse(obj: Any) -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"


def chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> bytes:
    delta = {} if content is None else {"content": content}
    return sse({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})


USAGE = sse({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7}})
DONE = b"data: [DONE]\n\n"


def head(status: int = 200, kind: str = "text/event-stream", reason: str = "X") -> bytes:
    # No length: the body ends when the connection closes (HTTP/1.1 allows it).
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n"
            "Connection: close\r\n\r\n").encode()


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def joiner(self) -> bool:  # plait names a call's role in a header real servers ignore
        return self.headers.get("x-plait-role") == "joiner"

    @property
    def max_tokens(self) -> int | None:
        return self.body.get("max_tokens")


Shape = Callable[[Writer, Request], Awaitable[None]]


async def lots(w: Writer, total: int, piece: bytes) -> None:
    """`total` bytes of `piece` repeated, written as the client reads them."""
    block = piece * (65536 // len(piece))
    sent = 0
    while sent < total:
        w.write(block)
        sent += len(block)
        await w.drain()


def const(*parts: bytes) -> Shape:
    async def shape(w: Writer, r: Request) -> None:
        for part in parts:
            w.write(part)
        await w.drain()
    return shape


async def huge_error(w: Writer, r: Request) -> None:
    w.write(head(500, "text/plain", "Internal Server Error"))
    await lots(w, 300 << 20, b"boom ")


async def huge_line(w: Writer, r: Request) -> None:
    w.write(head() + b'data: {"choices": [{"delta": {"content": "')
    await lots(w, 200 << 20, b"a")


async def endless(w: Writer, r: Request) -> None:
    w.write(head())
    while True:  # a delta every 20 ms, never a finish
        w.write(chunk("la "))
        await w.drain()
        await asyncio.sleep(0.02)


async def stall(w: Writer, r: Request) -> None:
    w.write(head() + chunk("first"))
    await w.drain()
    await asyncio.sleep(30)


async def echo_401(w: Writer, r: Request) -> None:
    """A careless server that echoes the request's credentials in its error."""
    w.write(head(401, "application/json") + json.dumps(
        {"error": {"message": f"bad auth {r.headers.get('authorization')} for {r.path}"}}
    ).encode())


async def v1_only(w: Writer, r: Request) -> None:
    """A server whose API is under /v1, as most are: anything else is Not Found."""
    if r.path.endswith("/v1/chat/completions"):
        w.write(head() + chunk("fine") + chunk(None, "stop") + USAGE + DONE)
    else:
        w.write(head(404, "application/json", "Not Found") + b'{"detail": "Not Found"}')


def scripted(planner: bytes, joiner: Callable[[Request], bytes]) -> Shape:
    async def shape(w: Writer, r: Request) -> None:
        w.write(head() + (joiner(r) if r.joiner else planner) + USAGE + DONE)
    return shape


PLAN = chunk('1. search("K2")\n') + chunk("2. join()\n", "stop")
CUT_JOINER = chunk("Finish: Eight thousand six hun", "length")
WHOLE_JOINER = chunk("Finish: 8611 m", "stop")


def cut_then_whole() -> Callable[[Request], bytes]:
    """The joiner's first reply is cut; the one asked again, with twice the tokens, is whole."""
    asked: set[int | None] = set()

    def joiner(r: Request) -> bytes:
        if r.max_tokens is not None and r.max_tokens // 2 in asked:
            return WHOLE_JOINER
        asked.add(r.max_tokens)
        return CUT_JOINER
    return joiner


SHAPES: dict[str, Shape] = {
    "ok": const(head(), chunk("fine"), chunk(None, "stop"), USAGE, DONE),
    "length": const(head(), chunk("cut in the mid"), chunk(None, "length"), USAGE, DONE),
    "json_list": const(head(), sse(b"[1, 2, 3]"), DONE),
    "string_delta": const(head(), sse({"choices": [{"delta": "hello"}]}), DONE),
    "numeric_content": const(head(), sse({"choices": [{"delta": {"content": 42}}]}), DONE),
    "choices_object": const(head(), sse({"choices": {"delta": {"content": "x"}}}), DONE),
    "usage_string": const(head(), chunk("hi", "stop"), sse({"usage": "lots"}), DONE),
    "usage_negative": const(head(), chunk("hi", "stop"),
                            sse({"usage": {"prompt_tokens": -1, "completion_tokens": 2}}), DONE),
    "usage_missing": const(head(), chunk("hi", "stop"), sse({"usage": {"prompt_tokens": 3}}),
                           DONE),
    "not_json": const(head(), b"data: hello there\n\n", DONE),
    "error_event": const(head(), b'event: error\ndata: {"message": "overloaded"}\n\n'),
    "error_data": const(head(), sse({"error": {"message": "bad key", "code": 401}})),
    "html_502": const(head(502, "text/html", "Bad Gateway"),
                      b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body>"),
    "html_200": const(head(200, "text/html"), b"<html><title>Welcome</title>hi</html>"),
    "json_body": const(head(200, "application/json"), b"[1, 2, 3]"),
    "cut_mid_line": const(head(), chunk("part"), b'data: {"choices": [{"del'),
    "huge_error": huge_error,
    "huge_line": huge_line,
    "endless": endless,
    "stall": stall,
    "echo_401": echo_401,
    "v1_only": v1_only,
    "ask_cut": scripted(PLAN, lambda r: CUT_JOINER),
    "ask_cut_once": scripted(PLAN, cut_then_whole()),
    "react_cut": const(head(), chunk("Thought: I will think about this at gre", "length"),
                       USAGE, DONE),
}


@dataclass
class HostileServer:
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    def url(self, shape: str, userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}/{shape}/v1"

    def start(self) -> HostileServer:
        ready = threading.Event()

        def main() -> None:
            loop = self._loop = asyncio.new_event_loop()
            server = loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0, limit=1 << 20))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the hostile server did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def count(self, shape: str) -> int:
        return sum(1 for r in self.requests if r.path.startswith(f"/{shape}/"))

    async def _handle(self, reader: asyncio.StreamReader, w: Writer) -> None:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {k.strip().lower(): v.strip()
                       for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", 0)))
            request = Request(path, headers, json.loads(body or b"{}"))
            self.requests.append(request)
            await SHAPES[path.split("/")[1]](w, request)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up: what a bounded client does
        except asyncio.CancelledError:
            pass  # the server is stopping
        finally:
            w.close()
