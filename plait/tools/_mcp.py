"""MCP servers as tool sources, through the official `mcp` SDK (the `plait[mcp]` extra).

`mcp_tools("python server.py")` starts a server over stdio (the command split
with shlex, never a shell); `mcp_tools("http://127.0.0.1:8000/mcp")` connects
over streamable HTTP. Either way the result owns ONE client session, opened
once when it is made, and closed by `close()` / the end of its `with` block (or,
as a backstop, at interpreter exit).

The session lives on a loop of its own, in a thread the server object owns and
joins: a run's event loop (`plait.ask` and `plait.run` start one per call) comes
and goes, while a session is bound to the loop that opened it. A tool call hops
to that loop and its result hops back; cancelling the call (a timeout, a
cancelled run) cancels the request.

A stdio server is started in a session of its own (so a terminal's Ctrl-C reaches
plait, not the server); closing stops it (the SDK terminates, then kills it),
and it also exits when its stdin closes, which covers a plait killed outright.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shlex
import threading
import warnings
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from plait._errors import PlaitError
from plait.runtime._tools import Tool, ToolWarning
from plait.tools._schema import identifier

OPEN_TIMEOUT = 30.0  # seconds to start a server, initialize the session and list tools
CLOSE_TIMEOUT = 10.0  # seconds for the SDK to stop a server before we give up waiting


class McpToolError(PlaitError):
    """An MCP tool answered with `isError`, or its server is gone; a node error."""


def _sdk() -> Any:
    try:
        import mcp
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
        raise ModuleNotFoundError(
            "MCP tools need the mcp SDK: pip install 'plait[mcp]'", name=exc.name) from exc
    return mcp


class _Session:
    """The loop thread and the task holding the transport and the ClientSession.

    Kept apart from McpServer so a finalizer can close it without keeping the
    server object alive. Everything but `open` and `close` runs on `loop`.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name=f"plait-mcp {target[:40]}")
        self.session: Any = None
        self.stop: asyncio.Event | None = None  # ends the current `_serve`
        self.task: asyncio.Task[None] | None = None
        self.ended = ""  # why the last session ended
        self.closed = False
        self.starting: asyncio.Lock | None = None
        self.lock = threading.Lock()
        # A stdio server's stderr: kept off the terminal (plait's live view is
        # there) and quoted when the server fails to start or dies.
        self.errlog = _Tail()

    def open(self) -> list[Any]:
        """Start the server and the session; the server's tools (as the SDK lists them)."""
        self.thread.start()
        listed = asyncio.run_coroutine_threadsafe(self._start(), self.loop)
        try:
            return listed.result(timeout=OPEN_TIMEOUT)
        except TimeoutError:
            self.close()
            raise McpToolError(f"MCP server {self.target!r}: no answer within "
                               f"{OPEN_TIMEOUT:g}s") from None
        except BaseException:
            self.close()
            raise

    async def _start(self) -> list[Any]:
        """Open a session (the first, or a new one after the server died)."""
        if self.starting is None:
            self.starting = asyncio.Lock()
        async with self.starting:
            if self.closed:
                raise McpToolError(f"MCP server {self.target!r} is closed")
            ready: asyncio.Future[list[Any]] = self.loop.create_future()
            self.stop = asyncio.Event()
            self.task = self.loop.create_task(self._serve(ready, self.stop))
            return await ready

    async def _serve(self, ready: asyncio.Future[list[Any]], stop: asyncio.Event) -> None:
        mcp = _sdk()
        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(
                    _transport(self.target, self.errlog))
                session = await stack.enter_async_context(mcp.ClientSession(read, write))
                await session.initialize()
                tools: list[Any] = []
                cursor = None
                while True:  # the listing is paginated
                    params = mcp.types.PaginatedRequestParams(cursor=cursor) if cursor else None
                    page = await session.list_tools(params=params)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
                self.session = session
                ready.set_result(tools)
                await stop.wait()
        except BaseException as exc:  # noqa: BLE001 - reported to the opener or the next call
            self.ended = _why(exc)
            if not ready.done():
                ready.set_exception(McpToolError(
                    f"MCP server {self.target!r} could not be started: {self.ended}"
                    f"{self.stderr_tail()}"))
        finally:
            self.session = None

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """Call tool `name`; the SDK's CallToolResult.

        A server found gone (it exited, the connection dropped) is an error for
        this call, and the next call starts it again: a tool's retries, or the
        rest of the run, get a fresh server rather than the same broken pipe.
        """
        mcp = _sdk()
        session = self.session
        if session is None:
            await self._start()
            session = self.session
        try:
            return await session.call_tool(name, arguments)
        except (McpToolError, asyncio.CancelledError):
            raise
        except Exception as exc:
            if isinstance(exc, mcp.MCPError) and exc.code == mcp.types.CONNECTION_CLOSED:
                if self.session is session and self.stop is not None:
                    self.session = None
                    self.stop.set()  # the transport's exit reaps the dead process
                raise McpToolError(f"MCP server {self.target!r}: tool {name!r}: "
                                   f"{_why(exc)}{self.stderr_tail()}") from None
            raise McpToolError(f"MCP server {self.target!r}: tool {name!r}: "
                               f"{_why(exc)}") from None

    def stderr_tail(self, limit: int = 300) -> str:
        """`; its stderr ends: ...` (the server's last words), or ''."""
        text = " ".join(self.errlog.tail()[-limit:].split())
        return f"; its stderr ends: {text}" if text else ""

    async def _shutdown(self) -> None:
        self.closed = True
        task = self.task
        if task is None:
            return
        if self.session is None:
            task.cancel()  # still starting (a server that does not answer): give up on it
        elif self.stop is not None:
            self.stop.set()  # leave the transport's context: the SDK stops the server
        await asyncio.wait([task], timeout=CLOSE_TIMEOUT)

    def close(self) -> None:
        """Close the session and stop the server (bounded waits); idempotent."""
        with self.lock:
            if not self.thread.is_alive():
                return
            done = asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
            with contextlib.suppress(BaseException):
                done.result(timeout=CLOSE_TIMEOUT)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=CLOSE_TIMEOUT)
            if not self.thread.is_alive():
                self.loop.close()
                self.errlog.close()


class _Tail:
    """Where a stdio server writes its stderr: a pipe whose last KEEP bytes are kept.

    A file would grow for as long as a chatty server lives; only the end is ever
    quoted. A daemon thread drains the pipe so the server never blocks on a full
    one, and `tail()` drains what is pending first, so a server's last words,
    written before it died, are in the tail when its death is reported.
    """

    KEEP = 4096

    def __init__(self) -> None:
        read, write = os.pipe()
        os.set_blocking(read, False)
        self.fd = read
        self.writer = os.fdopen(write, "w")  # handed to the SDK: it passes fileno() on
        self.kept = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self._drain, daemon=True, name="plait-mcp stderr").start()

    def fileno(self) -> int:
        return self.writer.fileno()

    def write(self, text: str) -> int:  # the SDK may write its own notes here
        return self.writer.write(text)

    def flush(self) -> None:
        self.writer.flush()

    def _read(self) -> bool:
        """Take what is pending (caller holds the lock); False at end of file."""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not chunk:
                return False
            self.kept += chunk
            del self.kept[:-self.KEEP]

    def _drain(self) -> None:
        while True:
            try:
                select.select([self.fd], [], [])
            except (OSError, ValueError):
                return
            with self.lock:
                if not self._read():
                    os.close(self.fd)
                    self.fd = -1
                    return

    def tail(self) -> str:
        with self.lock:
            if self.fd >= 0:
                with contextlib.suppress(OSError, ValueError):
                    self.writer.flush()
                self._read()
            return self.kept.decode("utf-8", "replace")

    def close(self) -> None:
        """Close our write end: the drain ends once the server's copy is closed too."""
        with contextlib.suppress(OSError, ValueError):
            self.writer.close()


def _why(exc: BaseException) -> str:
    """An exception (maybe an anyio ExceptionGroup) as one line."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:300]


def _transport(target: str, errlog: Any) -> Any:
    mcp = _sdk()
    if target.startswith(("http://", "https://")):
        from mcp.client.streamable_http import streamable_http_client

        return streamable_http_client(target)
    argv = shlex.split(target)
    if not argv:
        raise ValueError("an MCP server needs a command line or an http(s) URL")
    return mcp.stdio_client(mcp.StdioServerParameters(command=argv[0], args=argv[1:]),
                            errlog=errlog)


class McpServer:
    """The tools of one MCP server and the session they share; iterate it for them.

    Use it as a context manager (`with plait.mcp_tools(cmd) as server:`) so the
    session is closed and the server stopped when the work is done.
    """

    def __init__(self, target: str, **policy: Any) -> None:
        _sdk()  # a missing extra says so here, not as a server that "could not start"
        self.target = target
        self._session = _Session(target)
        self._finalize = weakref.finalize(self, self._session.close)
        listed = self._session.open()
        tools: dict[str, Tool] = {}
        try:
            for spec in listed:
                try:
                    made = self._tool(spec, policy)
                except ValueError as exc:
                    # One tool whose schema plait cannot offer a planner does not
                    # make the server's other tools unusable: leave it out, say so.
                    warnings.warn(f"MCP server {target!r}: left out tool {spec.name!r}: {exc}",
                                  ToolWarning, stacklevel=3)
                    continue
                if made.name in tools:
                    raise ValueError(f"MCP server {target!r}: two tools are named "
                                     f"{made.name!r} as plait tools")
                tools[made.name] = made
        except BaseException:
            self.close()
            raise
        self.tools: tuple[Tool, ...] = tuple(tools.values())

    def _tool(self, spec: Any, policy: Mapping[str, Any]) -> Tool:
        hints = spec.annotations
        keywords = dict(policy)
        # A read-only or idempotent tool may run again on resume (the journal's
        # in-doubt rule); the user's explicit `idempotent=` wins over the hint.
        if "idempotent" not in keywords and hints is not None:
            keywords["idempotent"] = bool(hints.read_only_hint or hints.idempotent_hint)
        # Not so `speculate`: readOnlyHint is the server's claim, not a promise (the
        # MCP spec says clients must not rely on it from an untrusted server), and a
        # wrong guess run on a tool that is not read-only is a real side effect. Off
        # unless the caller says `speculate=True` for the server's tools.
        session, name, target = self._session, spec.name, self.target
        output = spec.output_schema or {}
        wrapped = set((output.get("properties") or {})) == {"result"}

        async def call(**arguments: Any) -> Any:
            if session.closed or session.loop.is_closed():
                raise McpToolError(f"MCP server {target!r} is closed: call its tools inside "
                                   "its `with` block")
            future = asyncio.run_coroutine_threadsafe(session.call(name, arguments), session.loop)
            result = await asyncio.wrap_future(future)
            return _value(target, name, result, wrapped)

        description = spec.description or (hints.title if hints and hints.title else "") or ""
        return Tool.from_schema(identifier(name), description, spec.input_schema, call,
                                **keywords)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self.tools)

    def __len__(self) -> int:
        return len(self.tools)

    def __repr__(self) -> str:
        return f"McpServer({self.target!r}, tools={[t.name for t in self.tools]})"

    def close(self) -> None:
        """Close the session; a stdio server is stopped. Calls after it are node errors."""
        self._finalize()

    def __enter__(self) -> McpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> McpServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)


def _value(target: str, tool: str, result: Any, wrapped: bool) -> Any:
    """An MCP tool result as a plait value: its structured content when it has one
    (unwrapped from the SDK's `{"result": ...}`), else its text, else its blocks."""
    if getattr(result, "is_error", False):
        text = " ".join(c.text for c in result.content if getattr(c, "type", "") == "text")
        raise McpToolError(f"MCP tool {tool!r} failed: {text or 'no message'}")
    structured = getattr(result, "structured_content", None)
    if structured is not None:
        if wrapped and isinstance(structured, dict) and set(structured) == {"result"}:
            return structured["result"]
        return structured
    blocks = list(getattr(result, "content", None) or ())
    if all(getattr(c, "type", "") == "text" for c in blocks):
        texts = [c.text for c in blocks]
        return texts[0] if len(texts) == 1 else texts
    return [c.text if getattr(c, "type", "") == "text"
            else c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in blocks]


def mcp_tools(target: str, **policy: Any) -> McpServer:
    """Start (stdio: a command line) or reach (an http(s) URL: streamable HTTP) an
    MCP server; its tools, sharing one session. `policy`: `@plait.tool`'s keywords,
    for every tool (`idempotent` defaults to the tool's readOnly/idempotent hint;
    `speculate` stays off unless given: readOnlyHint is a hint, not a promise).

        with plait.mcp_tools("python server.py") as server:
            plait.ask("...", tools=[*server, my_tool])
    """
    return McpServer(target, **policy)
