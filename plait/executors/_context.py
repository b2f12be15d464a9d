"""The node whose tool is executing in this context: what `plait.node_key()`,
`add_tokens()`, `add_record()` and `journal_as()` read.

It is a pair (holder, node id). The holder is the run on the controller; inside a
remote call it is a `RemoteNode` standing in for it (contextvars do not cross
processes), whose counts go back to the controller with the value. Both have the
same few members (`NodeHolder`), so those functions serve both without a branch.
"""

from __future__ import annotations

import contextvars
from typing import Any, Protocol


class NodeHolder(Protocol):
    """What the context functions read of a node's holder."""

    tokens: dict[int, int]
    extra: dict[int, dict[str, Any]]
    journal_forms: dict[int, Any]
    durable: Any  # None when nothing is journaled (journal_as then keeps nothing)

    def key_of(self, i: int) -> str: ...


current_node: contextvars.ContextVar[tuple[NodeHolder, int] | None] = contextvars.ContextVar(
    "plait_node", default=None
)


class RemoteNode:
    """The holder of one call run away from its run (a Ray task): node id 0, its key
    as the controller computed it; what the tool counts is read back after the call."""

    __slots__ = ("key", "durable", "tokens", "extra", "journal_forms")

    def __init__(self, key: str, durable: bool) -> None:
        self.key = key
        self.durable = True if durable else None
        self.tokens: dict[int, int] = {}
        self.extra: dict[int, dict[str, Any]] = {}
        self.journal_forms: dict[int, Any] = {}

    def key_of(self, i: int) -> str:
        return self.key
