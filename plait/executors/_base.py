"""The executor seam: where a node's tool call runs.

The engine (the controller) validates a call's arguments, computes its identity,
journals its intent and result, applies its policy (timeout, retries, concurrency)
and schedules it; then it hands the call itself to an executor and awaits what
`submit` returns. The executor only runs `tool.fn(**arguments)` somewhere: in this
event loop or a thread (`LocalExecutor`), as a Ray task (`RayExecutor`).

The contract (tests/executors checks it for every executor):

- `submit` is called in the node's context: `plait.node_key()`, `add_tokens()`,
  `add_record()` and `journal_as()` work inside the call and count for its node,
  wherever the call runs.
- The awaitable gives the call's value, or raises the exception the tool raised,
  as itself (its type and text, not wrapped), so a retry policy and a NodeError
  read the same on every executor.
- Cancelling the await stops the call where the executor can (an asyncio task is
  cancelled, a Ray task is `ray.cancel`led); a function running in a local
  thread cannot be stopped, only abandoned (`stops_threads` is False).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from plait.runtime._tools import Tool


@runtime_checkable
class Executor(Protocol):
    """Runs tool calls for the engine; one method."""

    # Whether cancelling the await stops a sync tool's call too (not just abandons it).
    stops_threads: bool

    def submit(self, tool: Tool, arguments: Mapping[str, Any]) -> Awaitable[Any]:
        """Start `tool.fn(**arguments)`; the awaitable gives its value (see the module doc)."""
        ...


F = TypeVar("F", bound=Callable[..., Any])

# Tool functions that need the run they belong to, not just their node's key and
# counts (an LLM call streams through the run's pool of opened models): their calls
# run in the controller whatever the run's executor.
IN_CONTROLLER: set[Callable[..., Any]] = set()


def in_controller(fn: F) -> F:
    """Mark a tool function whose calls always run in the controller (see IN_CONTROLLER)."""
    IN_CONTROLLER.add(fn)
    return fn
