"""What a timeline holds: frozen records built from a run's journal.

Times are seconds after the timeline's origin, the start of the run's first
call (wall-clock seconds since the epoch: `Timeline.origin`). Text meant for a
person (arguments, values, errors) is already redacted and cut to size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["llm", "tool"]
State = Literal["done", "failed", "running", "in doubt"]


@dataclass(frozen=True, slots=True)
class TimelineNode:
    """One journaled call.

    `n` numbers calls from 1 in the order they (last) started, as `plait show`
    does. `end` is None for a call with no result: `running` while its run's
    owner is alive, else `in doubt` (it started before a crash); it is drawn up
    to `until`. `parents` are the calls whose values it took (by `n`).
    `replayed`: a later session took its result from the journal instead of
    calling again (it was paid once, in `session`).
    """

    n: int
    key: str
    tool: str
    kind: Kind
    start: float
    end: float | None
    until: float
    state: State
    session: int | None
    attempts: int
    replayed: bool
    tokens: int
    parents: tuple[int, ...]
    row: str  # the dataset row's key; "" outside a dataset job
    arguments: str
    value: str | None
    error: str | None
    stats: Mapping[str, Any] = field(default_factory=dict)  # the call's record (an LLM
    # call's token split, ttft, elapsed, finish reason, line times)
    cost: float | None = 0.0  # priced by `plait.cost`; None: unknown (no price)


@dataclass(frozen=True, slots=True)
class PlanMark:
    """A line of a streamed LLM reply (a plan), at the moment it was complete and
    handed to the plan parser: a task line is when its call was dispatched."""

    node: int  # the LLM call (its `n`)
    t: float
    text: str
    task: bool  # a numbered task line ("2. search(...)"), not a thought or join()


@dataclass(frozen=True, slots=True)
class Session:
    """One process's part of the run (its lease epoch: 1, +1 per resume)."""

    session: int
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Gap:
    """Time between two sessions when no process ran the run: a crash (or a stop)
    and the resume that followed."""

    start: float
    end: float
    after: int  # the session before it
    before: int  # the session after it


@dataclass(frozen=True, slots=True)
class CriticalPath:
    """The longest chain of waits that ends at the call that ended last.

    Each call's predecessor is the input (a call whose value it took) that ended
    last; a call with no inputs waited for the plan that dispatched it (it started
    while that LLM call was writing its lines) or else for the call that ended last
    before it started (in its row). `inferred` counts the links of the second kind.
    `length` is the chain's span less any crash gap in it.
    """

    nodes: tuple[int, ...]
    length: float
    inferred: int
    known: bool  # False: no call has ended, there is no path to draw


@dataclass(frozen=True, slots=True)
class RowSummary:
    """A dataset job's row: its record and its calls."""

    key: str
    ordinal: int | None  # None: the row has calls but no record yet (running, crashed)
    status: str  # done | dropped | failed | started
    error: str | None
    tokens: int
    nodes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Timeline:
    """Everything drawn for one run."""

    run_id: str
    what: str  # the question, or the workflow's name
    entry: str
    status: str  # running | done | failed | cancelled | crashed
    origin: float
    created_at: float  # when the run was created, by the same clock as `origin`
    finished_at: float | None
    tokens: int
    error: str | None
    nodes: tuple[TimelineNode, ...]
    marks: tuple[PlanMark, ...]
    sessions: tuple[Session, ...]
    gaps: tuple[Gap, ...]
    critical: CriticalPath
    rows: tuple[RowSummary, ...]  # a dataset job's rows; () otherwise
    end: float  # where the drawing ends (the last call's end, or now for a live run)
    cost: Mapping[str, Any] = field(default_factory=dict)  # `plait.cost.RunCost.fields()`
