"""What a worker does with one shard: its rows through the row runner, journaled
under the shard's lease. Plain asyncio: the Ray actor (`_actor`) only hosts it.

A worker never sees more than a descriptor: it reopens the source itself, reads
its row range, calls the model servers itself and journals itself, and returns a
summary (counts), never rows. Its writes carry the shard's lease; once the
controller has re-assigned the shard (a new epoch), every write of this worker is
refused by the journal, so a worker presumed dead that comes back merges nothing.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from plait.runtime._durable import Durable
from plait.data._ray._plan import RangeSource, Shard
from plait.data._rows import Job, OnRowError, RowError
from plait.data._sources import reopen_source
from plait.journal import (
    Journal,
    JournalError,
    JournalWriter,
    Lease,
    StaleLeaseError,
    open_journal,
)
from plait.llm import LLM


@dataclass(frozen=True, slots=True)
class ShardTask:
    """One assignment: a shard, the lease (epoch) it runs under, and the job."""

    run_id: str
    journal: str  # a spec every worker can open: a PostgreSQL URL, or a SQLite path
    source: dict[str, Any]  # the source's description (reopen_source)
    key: str | None
    shard: Shard
    lease: Lease
    window: int
    on_row_error: OnRowError
    retry_failed: bool
    runner: Any  # the row runner (a workflow function or a `run_row` object)


@dataclass(frozen=True, slots=True)
class ShardSummary:
    """What a shard's run did (counts only: the rows are in the journal)."""

    index: int
    epoch: int
    done: int
    dropped: int
    failed: int
    skipped: int
    tokens: int
    error: str | None  # why the shard stopped (a row that stops the job), else None
    stopped_by_row: bool  # the error is a row's (on_row_error="stop"), not the journal's
    pid: int
    host: str
    elapsed: float


class ShardFencedError(JournalError):
    """A worker wrote under an old epoch of its shard's lease: the shard was
    re-assigned, and the journal refused the write."""


def _fenced(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, StaleLeaseError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class WorkerState:
    """What one worker process keeps between shards: its journal connection and
    its model client (whose limits are the worker's share of the job's budget)."""

    def __init__(self, model: str | None) -> None:
        self.journals: dict[str, Journal] = {}
        self.llm: LLM | None = None
        if model is not None:
            from plait.llm import get_llm

            self.llm = get_llm(model)

    def journal(self, spec: str) -> Journal:
        journal = self.journals.get(spec)
        if journal is None:
            journal = self.journals[spec] = open_journal(spec)
        return journal

    def set_limits(self, share: dict[str, Any]) -> None:
        """The worker's share of the job's budget (the controller re-splits it when
        workers come or go)."""
        limits = getattr(self.llm, "limits", None)
        if limits is not None and share:
            limits.resize(share.get("max_concurrency"), share.get("requests_per_minute"),
                          share.get("tokens_per_minute"))

    def close(self) -> None:
        for journal in self.journals.values():
            journal.close()
        self.journals.clear()


async def run_shard(task: ShardTask, state: WorkerState) -> ShardSummary:
    """Run every row of the shard not finished before; journal under its lease."""
    from plait.data._map import _job_pool, _runner

    started = time.perf_counter()
    journal = state.journal(task.journal)
    source = reopen_source(task.source)
    runner, _, _ = _runner(task.runner)
    # Other shards' rows run at once in other processes: a twin of one of ours there
    # may finish a call of the same key first (shared_rows; the twin is refused once
    # every shard is over: plait/data/_twins.py).
    writer = JournalWriter(journal, lease=task.lease, name=f"plait-shard-{task.shard.index}",
                           shared_rows=True)
    durable = Durable(journal, writer, task.run_id, None, allow_rerun=False)
    # Always look rows up: a re-assigned shard has rows an earlier worker finished
    # (fresh=False: a known key is such a row, not a duplicate).
    job = Job(runner, RangeSource(source, task.shard.start, task.shard.stop),
              run_id=task.run_id, key=task.key, window=task.window,
              on_row_error=task.on_row_error, durable=durable, look_up=True, fresh=False,
              retry_failed=task.retry_failed)
    error: str | None = None
    by_row = False
    try:
        try:
            async with _job_pool(state.llm):
                try:
                    async for _ in job.rows():
                        pass
                except RowError as exc:
                    error, by_row = str(exc), True
        finally:
            # Everything queued is committed (or refused: a fenced worker's error)
            # before the summary says the shard is over.
            await writer.aclose()
    except JournalError as exc:
        if _fenced(exc):
            raise ShardFencedError(
                f"shard {task.shard.index} of job {task.run_id!r} (rows {task.shard.start}.."
                f"{task.shard.stop - 1}) was handed to another worker after this one (pid "
                f"{os.getpid()}, epoch {task.lease.epoch}) was presumed lost: its writes are "
                "refused, never merged") from exc
        raise
    c = job.counts
    return ShardSummary(task.shard.index, task.lease.epoch, c.done, c.dropped, c.failed,
                        c.skipped, c.tokens, error, by_row, os.getpid(), socket.gethostname(),
                        time.perf_counter() - started)
