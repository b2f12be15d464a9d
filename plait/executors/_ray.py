"""Tool calls as Ray tasks (extra `plait[ray]`; docs/ray.md).

What crosses to the worker is the tool's function (exported to the cluster once per
tool, as a Ray remote function), the call's key and its checked arguments; what comes
back is the value with what the call counted (tokens, record fields, journal form),
since contextvars do not cross processes. Everything else stays in the controller:
validation, identity, the journal (intents and results are written by the process
that owns the run), retries (Ray's own are off: a retry is the tool policy's, so it is
journaled like any other attempt), concurrency limits and timeouts.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from plait._errors import NotRetryable, PlaitError
from plait.executors._context import RemoteNode, current_node

if TYPE_CHECKING:
    from plait.runtime._tools import Tool

# How long connecting to a cluster's address may take before it counts as unreachable.
CONNECT_TIMEOUT = 5.0
# Seconds a cancelled task has to stop on its own before its worker is ended.
STOP_GRACE = 1.0


class ExecutorError(PlaitError, NotRetryable):
    """An executor cannot run a call at all: Ray cannot be reached, or no node of
    the cluster can ever have the resources a tool asks for. Retrying would not help."""


class RayClusterError(ExecutorError, ConnectionError):
    """The Ray cluster cannot be reached or used (the message names the address,
    without credentials)."""


def import_ray(what: str = "running tool calls on Ray (ray)") -> Any:
    """The `ray` module, or an error naming the extra to install."""
    try:
        import ray
    except ImportError:
        from plait.llm._protocol import MissingExtraError  # the one error for every extra

        raise MissingExtraError(what, "ray") from None
    return ray


class RayExecutor:
    """Runs each tool call as a Ray task; cancelling the call cancels the task.

    address: the cluster to connect to when this process is not connected yet
    (`ray.init(address=...)`); None reads RAY_ADDRESS, and without it Ray starts a
    local one for this process. A Ray this process is already connected to is used
    as it is, and never shut down by plait.
    resources: what every call asks for unless its tool says (`{"CPU": 1}` is Ray's
    default); a tool's `resources=` adds to it.
    wait_for_resources: seconds a call whose resources no node of the cluster has
    waits for one to join (an autoscaler's) before it fails, naming what is missing.
    """

    stops_threads = True  # a cancelled task is interrupted in its worker

    def __init__(
        self,
        address: str | None = None,
        *,
        resources: Mapping[str, float] | None = None,
        wait_for_resources: float = 30.0,
    ) -> None:
        import_ray()  # no Ray: say which extra to install now, not at the first call
        self.address = address
        self.resources = dict(resources or {})
        self.wait_for_resources = wait_for_resources
        self._remote: dict[Tool, Any] = {}  # a tool -> its Ray remote function

    def submit(self, tool: Tool, arguments: Mapping[str, Any]) -> Awaitable[Any]:
        return self._call(tool, arguments)

    async def _call(self, tool: Tool, arguments: Mapping[str, Any]) -> Any:
        remote = self._remote.get(tool)
        if remote is None:
            remote = await self._prepare(tool)
        holder, i = current_node.get() or (RemoteNode("", False), 0)
        # One argument, one value back: Ray serializes each argument on its own. A
        # list, not a tuple: Ray packs lists of plain values with msgpack, and
        # pickles a tuple (~15 us more per call).
        ref = remote.remote([holder.key_of(i), holder.durable is not None, arguments])
        try:
            value = await ref
        except asyncio.CancelledError:
            await self._stop(ref)
            raise
        except Exception as exc:
            raise _as_raised(exc) from None
        if type(value) is Counted:
            if value.tokens:
                holder.tokens[i] = holder.tokens.get(i, 0) + value.tokens
            if value.extra:
                holder.extra.setdefault(i, {}).update(value.extra)
            if value.forms:
                holder.journal_forms[i] = value.forms[0]
            value = value.value
        return value

    async def _stop(self, ref: Any) -> None:
        """The node was cancelled (or timed out): stop its task, not just stop waiting.

        First as Ray does by default: KeyboardInterrupt in the task (its `finally`
        runs; a queued task is dropped). A task deep in a blocking call sees that
        only when the call returns, so one still running `STOP_GRACE` seconds later
        is stopped for sure: its worker process is ended (Ray starts another).
        """
        ray = self._ray()
        ray.cancel(ref)
        ended = asyncio.wrap_future(ref.future())
        try:
            await asyncio.wait([ended], timeout=STOP_GRACE)
        finally:  # also when cancelled again while waiting: stop it now
            if not ended.done():
                ended.cancel()
                ray.cancel(ref, force=True)

    def _ray(self) -> Any:
        ray = import_ray()
        if not ray.is_initialized():
            connect(self.address)  # never disconnected by plait: other runs may use it
        return ray

    async def _prepare(self, tool: Tool) -> Any:
        """The tool's remote function, once a node can run it."""
        ray = self._ray()
        needs = {**self.resources, **(tool.policy.resources or {})}
        await wait_for_node(ray, tool.name, needs, self.wait_for_resources)
        options: dict[str, Any] = {"max_retries": 0, "retry_exceptions": False}
        custom = dict(needs)
        if "CPU" in custom:
            options["num_cpus"] = custom.pop("CPU")
        if "GPU" in custom:
            options["num_gpus"] = custom.pop("GPU")
        if custom:
            options["resources"] = custom
        remote = self._remote[tool] = ray.remote(**options)(
            _task(tool.fn, tool.is_async, tool.name)
        )
        return remote


def connect(address: str | None, *, log_to_driver: bool = True) -> tuple[Any, bool]:
    """Ray, connected to the cluster at `address`, or to the one this process already
    is connected to; with neither, RAY_ADDRESS, else a new local Ray of this
    process's own (never a cluster some other process on this machine happens to
    run, which `ray.init()` would join). Returns (ray, started): whether this call
    connected (and so may disconnect). An address nothing answers at fails at once,
    naming it: Ray itself keeps retrying an unreachable cluster for minutes."""
    ray = import_ray()
    if ray.is_initialized():
        here = ray.get_runtime_context().gcs_address
        if address not in (None, "auto", "local", here) and _host_port(address) != _host_port(here):
            raise RayClusterError(f"this process is connected to the Ray cluster at {here}; "
                                  f"it cannot use the one at {_shown(address)} as well")
        return ray, False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    probe(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=log_to_driver,
                 configure_logging=log_to_driver)
    except Exception as exc:  # ConnectionError, a timeout, a bad address: Ray's words
        shown = _shown(address)
        text = str(exc).replace(address, shown)
        raise RayClusterError(f"cannot reach the Ray cluster at {shown}: "
                              f"{type(exc).__name__}: {text}") from None
    return ray, True


def probe(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail at once, naming the address, where nothing listens (`auto` and `local`
    are Ray's to resolve)."""
    if address in ("auto", "local"):
        return
    shown = _shown(address)
    where = _host_port(address)
    if where is None:
        raise RayClusterError(f"bad Ray address {shown!r}: use host:port (the head node's "
                              "GCS port, 6379 by default), ray://host:port or auto")
    try:
        socket.create_connection(where, timeout=timeout).close()
    except OSError as exc:
        raise RayClusterError(
            f"cannot reach the Ray cluster at {shown}: {exc.strerror or exc}; start one "
            "(ray start --head) or give its address (address= or RAY_ADDRESS)") from None


def _shown(address: str) -> str:
    """The address without credentials (ray://user:password@host)."""
    return re.sub(r"//[^/@]*@", "//", address)


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of `host:port` or `ray://[user@]host:port`, else None."""
    text = address.split("://", 1)[-1].rsplit("@", 1)[-1].rstrip("/")
    match = re.fullmatch(r"\[?([^\]/@]+?)\]?:(\d+)", text)
    return (match.group(1), int(match.group(2))) if match else None


async def wait_for_node(ray: Any, tool: str, needs: Mapping[str, float], wait: float) -> None:
    """Return once some alive node has all of `needs`; after `wait` seconds without
    one, fail naming what is missing (Ray itself would keep the task queued forever)."""
    wanted = {"CPU": 1.0, **needs}  # Ray's default for a task is one CPU
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if any(all(r.get(k, 0) >= v for k, v in wanted.items()) for r in nodes):
            return
        if loop.time() >= deadline:
            largest = {k: max((r.get(k, 0) for r in nodes), default=0) for k in wanted}
            raise ExecutorError(
                f"tool {tool!r} asks for {_amounts(wanted)} in one task, but no node of the "
                f"Ray cluster has that (the most any node has: {_amounts(largest)}; "
                f"{len(nodes)} nodes alive; waited {wait:g} s for one to join)"
            )
        await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))


def _amounts(resources: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in resources.items())


def _as_raised(exc: Exception) -> BaseException:
    """The exception the tool raised in its task, as itself (Ray wraps it in a
    RayTaskError whose text holds the remote traceback); that traceback becomes a
    note, so a NodeError reads the same as on the local executor."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, Exception):
        trace = getattr(exc, "traceback_str", "")
        if trace:
            cause.add_note(f"raised in a Ray task:\n{trace.rstrip()}")
        return cause
    return exc


class Counted:
    """A remote call's value with what the call counted for its node (most calls
    count nothing and send back their bare value)."""

    __slots__ = ("value", "tokens", "extra", "forms")

    def __init__(self, value: Any, tokens: int, extra: dict[str, Any] | None,
                 forms: list[Any] | None) -> None:
        self.value, self.tokens, self.extra, self.forms = value, tokens, extra, forms

    def __reduce__(self) -> tuple[Any, ...]:
        return Counted, (self.value, self.tokens, self.extra, self.forms)


def _task(fn: Callable[..., Any], is_async: bool, name: str) -> Callable[..., Any]:
    """The function a Ray task runs for one tool: named as the tool (so Ray's own
    views show it), holding the function, not the Tool object."""

    def task(call: list[Any]) -> Any:  # [key, durable, arguments]
        return run_call(fn, is_async, *call)

    task.__name__ = task.__qualname__ = name
    return task


def run_call(fn: Callable[..., Any], is_async: bool, key: str, durable: bool,
             arguments: Mapping[str, Any]) -> Any:
    """In the worker: run one call in a context where node_key()/add_tokens() work;
    its value, as a `Counted` when it counted something for the controller."""
    node = RemoteNode(key, durable)
    token = current_node.set((node, 0))
    try:
        value = asyncio.run(fn(**arguments)) if is_async else fn(**arguments)
    finally:
        current_node.reset(token)
    if node.tokens or node.extra or node.journal_forms:
        forms = [node.journal_forms[0]] if node.journal_forms else None
        return Counted(value, node.tokens.get(0, 0), node.extra.get(0), forms)
    return value
