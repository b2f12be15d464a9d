"""The default executor: async tools in the run's event loop, sync tools in a thread pool."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait.runtime._tools import Tool


class LocalExecutor:
    """Async tools run as the node's own coroutine (no task, no hop: the engine
    awaits it in the node's task); sync tools in a pool of at most `max_threads`
    threads, made when the first sync call comes. A run makes its own and closes it
    when it ends (`close`)."""

    __slots__ = ("_max_threads", "_pool")

    stops_threads = False  # a thread cannot be killed: a cancelled sync call is abandoned

    def __init__(self, max_threads: int = 32) -> None:
        self._max_threads = max_threads
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, tool: Tool, arguments: Mapping[str, Any]) -> Awaitable[Any]:
        if tool.is_async:
            return tool.fn(**arguments)  # type: ignore[no-any-return]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._max_threads, thread_name_prefix="plait-tool")
        # The thread runs in a copy of this task's context, so `plait.node_key()` works.
        call = functools.partial(contextvars.copy_context().run, tool.fn, **arguments)
        return asyncio.get_running_loop().run_in_executor(self._pool, call)

    def close(self) -> None:
        """Let go of the threads: calls still running are abandoned, queued ones dropped."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
