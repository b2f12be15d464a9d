"""A speculative call: a read-only tool call started before anyone asked for it.

The engine runs it in a free slot (see the scheduler's invariants) and never
journals it; a node with the same content key may adopt it (`Run.submit(...,
adopt=)`), and then the call's value becomes that node's, journaled as the node's
own (its intent when it is adopted, its result when it ends). A call that is not
adopted is cancelled and forgotten: being read-only, it changed nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from plait.runtime._tools import Tool

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


@dataclass(slots=True, eq=False)
class Speculative:
    """One speculative call and how it ended (`state`); mutable, owned by its run."""

    call: int  # the run's speculative call id (not a node id)
    tool: Tool
    arguments: Mapping[str, Any]  # checked, no refs
    canonical: str  # canonical JSON of `arguments`: with the tool, its content
    started_at: float  # perf_counter
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    state: str = RUNNING
    value: Any = field(default=None, repr=False)
    error: BaseException | None = field(default=None, repr=False)
    finished_at: float | None = None
    node: int | None = None  # the node that adopted it

    @property
    def adoptable(self) -> bool:
        """Running or done, and no node has it yet. A failed or cancelled call never
        becomes a node: the node runs the tool itself, as without speculation."""
        return self.node is None and self.state in (RUNNING, DONE)

    @property
    def seconds(self) -> float:
        """How long it ran (so far)."""
        end = self.finished_at if self.finished_at is not None else time.perf_counter()
        return end - self.started_at
