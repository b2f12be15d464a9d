"""The controller of a sharded job: one process, the job's run owner, handing shards
to worker actors pull-style and holding the job's budgets.

It holds the run's lease (as a local job does) and is the only process that takes
shard leases: each assignment of a shard takes its lease anew, so the epoch rises
with every assignment and whatever an earlier holder writes afterwards is refused
(fencing). A free worker gets the next shard; a lost worker (its process or node
gone: `RayActorError`) has its shard put back first in line and re-assigned under a
new epoch, a new worker takes its place, and the budgets are split again over the
live workers. Rows never pass through here: a shard is a descriptor out and a
summary (counts) back, so the controller's cost is per shard, not per row.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from plait.data._ray._budget import Limits, check_budget, limits_of, shares
from plait.data._ray._cluster import (
    RayClusterError,
    connect,
    local_ips,
    node_ips,
    sqlite_refusal,
    start_worker,
)
from plait.data._ray._plan import Shard, default_shard_rows, shard_lease_id, split
from plait.data._ray._worker import ShardSummary, ShardTask
from plait.data._rows import Job, Row, RowError
from plait.journal import Journal, Lease
from plait.journal._retry import retrying

# Workers started in place of lost ones, at most, per worker asked for: past it the
# job fails instead of feeding workers to a cluster that keeps losing them.
_REPLACEMENTS_PER_WORKER = 3
# A shard lease is a fencing token, not a sign of life (the run's lease is that):
# held by no process (pid 0) and born expired, so the controller, which alone takes
# shard leases and only while it holds the run, takes one over at once wherever its
# last holder is (a write under an expired lease nobody took over is still accepted:
# only a takeover fences).
SHARD_TTL = 1e-3
# Shards each worker holds at once: while one drains (its last rows are the
# slowest), the next one already fills the worker's window.
_DEPTH = 2
# Forwarded to workers (where the model servers are); never a key or password.
_FORWARDED_ENV = ("OPENAI_BASE_URL",)


@dataclass(frozen=True, slots=True)
class Plan:
    """How a sharded job runs (what `plait.map(..., executor="ray")` was given)."""

    journal: str
    workers: int
    address: str | None
    shard_rows: int | None
    model: str | None
    max_failed_rows: int | None


@dataclass(slots=True)
class _Worker:
    handle: Any
    share: Limits = field(default_factory=dict)


class Controller:
    # For tests and benchmarks: called with (shard, worker handle) whenever a shard
    # is handed out, and once every first worker has started (its process is up).
    on_assign: Callable[[Shard, Any], None] | None = None
    on_ready: Callable[[], None] | None = None

    def __init__(self, job: Job, plan: Plan, runner: Any) -> None:
        self.job = job
        self.plan = plan
        self.runner = runner
        self.limits = limits_of(plan.model)
        self.leases: dict[int, Lease] = {}  # shard -> the lease of its current assignment
        self.lost_workers = 0  # workers lost mid-job (each had its shard re-assigned)
        self.assignments = 0
        self.summaries: list[ShardSummary] = []
        self._first: set[int] = set()  # shards assigned once (their skipped rows count)
        self.total = 0  # the source's rows, once split into shards

    # ------------------------------------------------------------ the job

    async def run(self) -> RowError | None:
        """Run every shard to its end; the rows' error that stopped the job, if any."""
        plan = self.plan
        if plan.workers < 1:
            raise ValueError(f"workers must be >= 1, got {plan.workers}")
        problem = check_budget(self.limits, plan.workers)
        if problem is not None:
            from plait.data._map import MapOptionError

            raise MapOptionError(problem)
        ray, started = await asyncio.to_thread(connect, plan.address)
        self.ray = ray
        try:
            self._check_journal_placement()
            shards = await asyncio.to_thread(self._shards)
            self.total = shards[-1].stop if shards else 0
            # Twins in two shards are found after: plait/data/_twins.py.
            return await self._run(shards)
        finally:
            if started:
                ray.shutdown()

    def _check_journal_placement(self) -> None:
        spec = self.plan.journal.strip().lower()
        if spec.startswith(("postgresql://", "postgres://")):
            return
        here = local_ips() | {self.ray.util.get_node_ip_address()}
        why = sqlite_refusal(node_ips(self.ray), here)
        if why is not None:
            from plait.data._map import MapOptionError

            raise MapOptionError(why)

    def _shards(self) -> list[Shard]:
        source = self.job.source
        fingerprint = source.fingerprint()
        total = source.count_rows()
        if fingerprint is None or total is None:
            from plait.data._map import MapOptionError

            raise MapOptionError(
                "a sharded job (executor='ray') needs a source every worker can reopen and "
                "read a row range of: a JSON Lines, CSV or Parquet file, or a saved "
                "dataset. An iterable lives in this process only: write it to a file first")
        rows = self.plan.shard_rows or default_shard_rows(total, self.plan.workers)
        return split(total, rows, fingerprint)

    async def _run(self, shards: list[Shard]) -> RowError | None:
        ray = self.ray
        pending: deque[Shard] = deque(shards)
        env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
        n = self.plan.workers
        idle: deque[_Worker] = deque()
        workers: list[_Worker] = []
        running: dict[asyncio.Task[ShardSummary], tuple[_Worker, Shard]] = {}
        spare = n * _REPLACEMENTS_PER_WORKER
        stop: RowError | None = None
        try:
            await asyncio.to_thread(self.fence_earlier)
            for share in shares(self.limits, n) or [{} for _ in range(n)]:
                w = _Worker(start_worker(ray, self.plan.model, share, env), share)
                workers.append(w)
                idle.extend([w] * _DEPTH)
            if self.on_ready is not None:
                ready = [_awaited(w.handle.where.remote()) for w in workers]
                await asyncio.gather(*ready, return_exceptions=True)
                self.on_ready()
            # A row that stops the job (on_row_error="stop", max_failed_rows) ends it at
            # once: the other shards' workers are ended below, their rows left in doubt
            # for a resume, as a local job's rows are when it stops.
            while stop is None and (pending or running):
                while pending and idle:
                    w = idle.popleft()
                    shard = pending.popleft()
                    task = await self._assign(w, shard)
                    running[task] = (w, shard)
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    w, shard = running.pop(task)
                    exc = task.exception()
                    if exc is None:
                        stop = self._finished(task.result()) or stop
                        idle.append(w)
                    elif _worker_lost(ray, exc):
                        # Its shards go first: their rows in flight are half done.
                        pending.appendleft(shard)
                        if w not in workers:
                            continue  # its other shard, already counted
                        self.lost_workers += 1
                        workers.remove(w)
                        while w in idle:
                            idle.remove(w)
                        self._kill(w)
                        if spare <= 0:
                            raise RayClusterError(
                                f"{self.lost_workers} workers were lost; the job stops "
                                f"rather than start more (last: {exc})")
                        spare -= 1
                        fresh = _Worker(start_worker(ray, self.plan.model, {}, env))
                        workers.append(fresh)
                        idle.extend([fresh] * _DEPTH)
                        await self._resplit(workers)
                    else:
                        raise _cause(exc)
            return stop
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            for w in workers:
                self._kill(w)

    async def _assign(self, w: _Worker, shard: Shard) -> asyncio.Task[ShardSummary]:
        """Hand `shard` to `w` under a new epoch of the shard's lease."""
        lease = await asyncio.to_thread(self._fence, shard)
        self.assignments += 1
        task = ShardTask(
            self.job.run_id, self.plan.journal, dict(self.job.source.description),
            self.job.key if isinstance(self.job.key, str) or self.job.key is None else None,
            shard, lease, self.job.window, self.job.on_row_error, self.job.retry_failed,
            self.runner)
        if self.on_assign is not None:
            self.on_assign(shard, w.handle)
        ref = w.handle.run_shard.remote(task)
        return asyncio.ensure_future(_awaited(ref))

    def _fence(self, shard: Shard) -> Lease:
        """A new epoch of the shard's lease: from now on, writes under any earlier
        one (a worker presumed dead, a dead controller's workers) are refused."""
        journal: Journal = self.job.durable.journal  # type: ignore[union-attr]
        lease_id = shard_lease_id(self.job.run_id, shard.index)
        lease = retrying(lambda: journal.acquire(lease_id, ttl=SHARD_TTL, pid=0))
        self.leases[shard.index] = lease
        return lease

    def fence_earlier(self) -> int:
        """Take over every shard lease an earlier controller of this job held (a
        resumed job; its shards may have been cut otherwise): whatever its workers
        still write is refused from now on. Shard leases are never given up but to
        be taken again, so they are numbered 0..K-1 without a gap. Returns K."""
        journal: Journal = self.job.durable.journal  # type: ignore[union-attr]
        index = 0
        while True:
            lease_id = shard_lease_id(self.job.run_id, index)
            if retrying(lambda: journal.get_lease(lease_id)) is None:
                return index
            self.leases[index] = retrying(lambda: journal.acquire(lease_id, ttl=SHARD_TTL, pid=0))
            index += 1

    def _finished(self, summary: ShardSummary) -> RowError | None:
        self.summaries.append(summary)
        c = self.job.counts
        c.done += summary.done
        c.dropped += summary.dropped
        c.failed += summary.failed
        c.tokens += summary.tokens
        if summary.index not in self._first:
            self._first.add(summary.index)
            c.skipped += summary.skipped
        if summary.error is not None and summary.stopped_by_row:
            return RowError(summary.error, self._last_failed())
        limit = self.plan.max_failed_rows
        if limit is not None:
            failed = self._stored_failed()
            if failed > limit:
                return RowError(f"{failed} rows failed, more than max_failed_rows={limit}",
                                self._last_failed())
        return None

    def _stored_failed(self) -> int:
        journal = self.job.durable.journal  # type: ignore[union-attr]
        return journal.count_rows(self.job.run_id).get("failed", 0)

    def _last_failed(self) -> Row:
        journal = self.job.durable.journal  # type: ignore[union-attr]
        found = journal.iter_rows(self.job.run_id, status="failed", limit=1)
        if not found:
            return Row(-1, "", "failed", error="failed")
        r = found[0]
        return Row(r.ordinal, r.row_key, "failed", error=r.error, tokens=r.tokens)

    async def _resplit(self, workers: list[_Worker]) -> None:
        """The budgets split again over the live workers (one came or went)."""
        if not self.limits:
            return
        new = shares(self.limits, len(workers))
        # Shrink shares before growing any, so the sum never exceeds the limit.
        order = sorted(range(len(workers)),
                       key=lambda i: new[i].get("max_concurrency", 0)
                       - workers[i].share.get("max_concurrency", 0))
        for i in order:
            w = workers[i]
            w.share = new[i]
            try:
                await _awaited(w.handle.set_limits.remote(new[i]))
            except Exception as exc:
                if not _worker_lost(self.ray, exc):
                    raise

    def _kill(self, w: _Worker) -> None:
        try:
            self.ray.kill(w.handle, no_restart=True)
        except Exception:  # already gone
            pass


async def _awaited(ref: Any) -> Any:
    return await ref


def _worker_lost(ray: Any, exc: BaseException) -> bool:
    """A worker's process or node is gone (not an error of the job's own; a worker
    that could not start, e.g. its model's settings missing there, is one)."""
    if getattr(exc, "actor_init_failed", False):
        return False
    e = ray.exceptions
    lost = tuple(t for t in (getattr(e, name, None) for name in (
        "RayActorError", "WorkerCrashedError", "NodeDiedError", "OwnerDiedError",
        "ObjectLostError", "LocalRayletDiedError")) if isinstance(t, type))
    return isinstance(exc, lost)


def _cause(exc: BaseException) -> BaseException:
    """A worker's own exception (Ray wraps it in a RayTaskError); a worker that
    cannot load the job's code, said as such."""
    missing = re.search(r"No module named '([^']+)'", str(exc))
    if missing is not None and type(exc).__name__ == "RaySystemError":
        from plait.data._map import MapOptionError

        return MapOptionError(
            f"the Ray workers cannot import module {missing.group(1)!r}, which the job's "
            "workflow needs: make it importable on every node (installed, or on their "
            "PYTHONPATH), or define the workflow in the script you run")
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return cause
    return exc

