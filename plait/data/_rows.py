"""The row runner: a workflow over a dataset, one small run per row, as a stream.

Each row runs the workflow as a run of its own (its own scheduler and values), so
one row's failure never touches another's, and a finished row leaves memory at
once: memory is bounded by the window, not by the dataset. Stages are never
barriers: row 1's last call runs while row 5,000's first one does.

The window is the backpressure: a row holds a slot from the moment it is read
from the source until its outcome is handed to the consumer (the sink, or the
`stream` caller). With every slot held, reading stops; so the source is never
read more than `window` rows ahead of what was consumed, and an ordered output
buffers at most `window` rows.

With a journal, every row of a job shares one run (one lease, one writer). A
row's node keys are scoped by its row key, and its outcome (done, dropped,
failed) is a row record written after its last result, so a resumed job skips a
finished row with one indexed look-up per chunk of rows, and reloads the records
of a row that was in flight at the crash, replaying what it had finished.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from plait.runtime import _events as ev
from plait.runtime._durable import Durable
from plait.runtime._engine import NodeError, Run
from plait._errors import PlaitError
from plait.runtime._identity import NotCanonicalError, canonical_json
from plait.data._source_base import Source, SourceRow
from plait.journal import JournalValueError, RowRecord, error_text

RowStatus = Literal["done", "dropped", "failed"]
OnRowError = Literal["record", "stop"]


class _Drop:
    """Returned by a row's workflow: the row is filtered out (no output, not an error)."""

    _instance: _Drop | None = None

    def __new__(cls) -> _Drop:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "plait.DROP"

    def __reduce__(self) -> str:
        return "DROP"


DROP = _Drop()


@dataclass(frozen=True, slots=True)
class Row:
    """How one row of a dataset job ended."""

    ordinal: int  # its position in the source, from 0
    key: str  # its identity in the journal: the key column's canonical JSON, or the position
    status: RowStatus
    value: Any = None  # what the workflow returned (done rows)
    error: str | None = None  # why it failed: "node $2 (judge): TypeName: message"
    tokens: int = 0
    elapsed: float = 0.0  # seconds from its admission to its end

    @property
    def ok(self) -> bool:
        return self.status != "failed"


class RowError(PlaitError):
    """A dataset job stopped because of its rows (`on_row_error="stop"`, or more
    failed rows than `max_failed_rows`). `.row` is the row that stopped it."""

    def __init__(self, message: str, row: Row):
        self.row = row
        super().__init__(message)


@dataclass(slots=True)
class Counts:
    """Live counters of a job (read by the progress view; written by the runner)."""

    read: int = 0  # rows taken from the source
    done: int = 0
    dropped: int = 0
    failed: int = 0
    skipped: int = 0  # finished by an earlier process: not run again
    in_flight: int = 0
    tokens: int = 0

    @property
    def finished(self) -> int:
        return self.done + self.dropped + self.failed + self.skipped


KeyFn = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one row's run ended, as a row runner reports it."""

    ok: bool
    value: Any
    error: BaseException | None
    tokens: int


# What runs one row: (the row, the job's run id, the row's journal side or None)
# -> its outcome. A workflow's (below), or a question's (`plait.asker`).
RowRunner = Callable[[dict[str, Any], str, "Durable | None"], Awaitable[Outcome]]


def workflow_runner(body: Callable[[dict[str, Any]], Coroutine[Any, Any, Any]],
                    entry: str) -> RowRunner:
    """Run a workflow on a row: one small run of its own."""

    async def run_row(data: dict[str, Any], run_id: str, durable: Durable | None) -> Outcome:
        run = Run(run_id=run_id, entry=entry, durable=durable)
        result = await run.execute(functools.partial(body, data))
        return Outcome(result.ok, result.value, result.error, result.tokens)

    return run_row
_SKIPPED = object()  # queue item: an ordinal finished before (resume), nothing to hand out


class _Window:
    """What a job's reader, row tasks and consumer share: the outcomes not yet
    taken (a queue), the free slots of the window, and the row tasks.

    One waiter each at most (the consumer for an outcome, the reader for a slot),
    woken once however many outcomes or slots came meanwhile: the reader then
    fills every free slot in one step, instead of one wake-up per row.
    """

    __slots__ = ("items", "free", "tasks", "_taker", "_reader")

    def __init__(self, window: int) -> None:
        self.items: deque[Any] = deque()
        self.free = window
        self.tasks: dict[int, asyncio.Task[None]] = {}  # row tasks by ordinal, until they end
        self._taker: asyncio.Future[None] | None = None
        self._reader: asyncio.Future[None] | None = None

    def put(self, item: Any) -> None:
        self.items.append(item)
        taker = self._taker
        if taker is not None:
            self._taker = None
            if not taker.done():
                taker.set_result(None)

    async def wait_item(self) -> None:
        while not self.items:
            self._taker = asyncio.get_running_loop().create_future()
            await self._taker

    def release(self) -> None:
        self.free += 1
        reader = self._reader
        if reader is not None:
            self._reader = None
            if not reader.done():
                reader.set_result(None)

    async def acquire(self) -> None:
        while self.free <= 0:
            self._reader = asyncio.get_running_loop().create_future()
            await self._reader
        self.free -= 1


class Job:
    """One pass of a workflow over a source. `rows()` is the whole of its work."""

    def __init__(
        self,
        runner: RowRunner,
        source: Source,
        *,
        run_id: str,
        key: str | KeyFn | None = None,
        window: int = 256,
        ordered: bool = False,
        on_row_error: OnRowError = "record",
        max_failed_rows: int | None = None,
        durable: Durable | None = None,
        look_up: bool = False,
        fresh: bool = True,
        retry_failed: bool = False,
        chunk: int = 1000,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if on_row_error not in ("record", "stop"):
            raise ValueError(f'on_row_error must be "record" or "stop", got {on_row_error!r}')
        if max_failed_rows is not None and max_failed_rows < 0:
            raise ValueError(f"max_failed_rows must be >= 0 or None, got {max_failed_rows}")
        self.runner = runner
        self.source = source
        self.run_id = run_id
        self.key = key
        self.window = window
        self.ordered = ordered
        self.on_row_error = on_row_error
        self.max_failed_rows = max_failed_rows
        self.durable = durable
        # Ask the journal about rows before running them: on a resume (to skip
        # finished rows), or always where a key column could repeat a finished key.
        self.look_up = look_up and durable is not None
        self.fresh = fresh  # a new run: a key the journal knows is a duplicate in the source
        self.retry_failed = retry_failed
        self.chunk = max(1, min(chunk, window))
        self.counts = Counts()
        self.stopped: RowError | None = None
        # Keys of rows that ended lately: their records may not be committed yet, so
        # the journal's look-up would not see a twin of theirs.
        self._recent: dict[str, None] = {}
        self._recent_max = 4 * window

    # ------------------------------------------------------------ keys

    def row_key(self, row: SourceRow) -> str:
        """The row's identity: its key column (canonical JSON) or its position."""
        if self.key is None:
            return str(row.ordinal)
        assert row.data is not None
        if callable(self.key):
            value = self.key(row.data)
        else:
            if self.key not in row.data:
                raise KeyError(f"row {row.ordinal} has no key column {self.key!r}")
            value = row.data[self.key]
        try:
            return canonical_json(value, root=f"the key of row {row.ordinal}")
        except NotCanonicalError as exc:
            raise KeyError(str(exc)) from None

    # ------------------------------------------------------------ the stream

    async def rows(self) -> AsyncIterator[Row]:
        """Every row's outcome, as rows end (or in source order when `ordered`).

        Rows finished by an earlier process are counted (`counts.skipped`), not
        handed out. Raises `RowError` when the rows stop the job, `JournalError`
        when the journal fails; either way no row task outlives the stream."""
        queue = _Window(self.window)
        items = queue.items
        reader = asyncio.create_task(self._read(queue))
        waiting: dict[int, Any] = {}  # ordered: outcomes that came early
        next_ordinal = 0
        ended = False
        try:
            while True:
                if not items:
                    await queue.wait_item()
                item = items.popleft()
                if item is None:  # the reader is done and every row has ended
                    break
                if isinstance(item, BaseException):
                    raise item
                ordinal, outcome = item
                if self.ordered:
                    waiting[ordinal] = outcome
                    while next_ordinal in waiting:
                        out = waiting.pop(next_ordinal)
                        next_ordinal += 1
                        queue.release()
                        if out is not _SKIPPED:
                            yield out
                else:
                    queue.release()
                    if outcome is not _SKIPPED:
                        yield outcome
            ended = True
        finally:
            if not ended or not reader.done():
                reader.cancel()
            tasks = list(queue.tasks.values())
            for t in tasks:
                t.cancel()
            await asyncio.gather(reader, *tasks, return_exceptions=True)

    async def _read(self, queue: _Window) -> None:
        """Read the source into the window; start each row; end the queue."""
        batch: list[tuple[SourceRow, str]] = []
        # Keys of rows read and not ended: no twin may start while one runs.
        in_flight: set[str] = set()
        try:
            async for srow in self.source.aiter_rows():
                if self.stopped is not None:
                    break
                if batch and queue.free <= 0:
                    await self._admit(batch, queue, in_flight)
                    batch = []
                if queue.free > 0:
                    queue.free -= 1
                else:
                    await queue.acquire()
                self.counts.read += 1
                key, problem = self._key_or_error(srow)
                if problem is not None:
                    self._refuse(queue, srow.ordinal, key, problem)
                    continue
                if self.key is not None:  # positions are unique; key columns may not be
                    if key in in_flight or key in self._recent:
                        self._refuse(queue, srow.ordinal, f"#{srow.ordinal}",
                                     f"row {srow.ordinal} has the key {key} of another "
                                     "row: keys must be unique")
                        continue
                    in_flight.add(key)
                if not self.look_up:  # nothing to ask the journal: start it now
                    self._begin(srow, key, None, queue, in_flight)
                    continue
                batch.append((srow, key))
                if len(batch) >= self.chunk:
                    await self._admit(batch, queue, in_flight)
                    batch = []
            if batch and self.stopped is None:
                await self._admit(batch, queue, in_flight)
            tasks = queue.tasks
            while tasks:
                pending = list(tasks.items())
                await asyncio.gather(*(t for _, t in pending), return_exceptions=True)
                for ordinal, t in pending:
                    # A row task cancelled before its first step never ran its `finally`.
                    if tasks.get(ordinal) is t:
                        del tasks[ordinal]
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                queue.put(exc)
            raise
        if self.stopped is not None:
            queue.put(self.stopped)
        else:
            queue.put(None)

    def _key_or_error(self, srow: SourceRow) -> tuple[str, str | None]:
        # A row without a key of its own is recorded under "#ordinal", which no
        # canonical JSON key can equal.
        if srow.data is None:
            return f"#{srow.ordinal}", srow.error or f"row {srow.ordinal} could not be read"
        try:
            return self.row_key(srow), None
        except KeyError as exc:
            return f"#{srow.ordinal}", str(exc.args[0] if exc.args else exc)

    def _refuse(self, queue: _Window, ordinal: int, key: str, error: str) -> None:
        """A row that cannot run (unreadable, no key, a duplicate key): it fails, and
        is recorded as failed, without running anything."""
        row = Row(ordinal, key, "failed", error=error)
        if self.durable is not None:
            self.durable.writer.row(RowRecord(self.run_id, key, ordinal, "failed", None, error))
        self._hand_out(queue, row)

    async def _admit(
        self, batch: list[tuple[SourceRow, str]], queue: _Window, in_flight: set[str]
    ) -> None:
        """Start the rows of `batch`, but those an earlier process finished."""
        status: dict[str, str] = {}
        if self.look_up:
            assert self.durable is not None
            journal, run_id = self.durable.journal, self.run_id
            keys = [k for _, k in batch]
            status = await asyncio.to_thread(journal.row_status, run_id, keys)
        for srow, key in batch:
            before = status.get(key)
            if before is not None and self.fresh:
                in_flight.discard(key)
                self._refuse(queue, srow.ordinal, f"#{srow.ordinal}",
                             f"row {srow.ordinal} has the key {key} of an earlier row: "
                             "keys must be unique")
                continue
            if before in ("done", "dropped") or (before == "failed" and not self.retry_failed):
                in_flight.discard(key)
                self.counts.skipped += 1
                queue.put((srow.ordinal, _SKIPPED))
                continue
            self._begin(srow, key, before, queue, in_flight)

    def _begin(self, srow: SourceRow, key: str, before: str | None, queue: _Window,
               in_flight: set[str]) -> None:
        """Start the task running row `srow`."""
        self.counts.in_flight += 1
        queue.tasks[srow.ordinal] = asyncio.create_task(
            self._row(srow, key, before, queue, in_flight))

    def _hand_out(self, queue: _Window, row: Row) -> None:
        counts = self.counts
        if row.status == "done":
            counts.done += 1
        elif row.status == "dropped":
            counts.dropped += 1
        else:
            counts.failed += 1
            self._check_failures(row)
        counts.tokens += row.tokens
        queue.put((row.ordinal, row))
        if self.stopped is not None and row.status == "failed":
            # At once: the stream raises it and cancels the rows still running.
            queue.put(self.stopped)

    def _check_failures(self, row: Row) -> None:
        if self.stopped is not None:
            return
        if self.on_row_error == "stop":
            self.stopped = RowError(f"row {row.ordinal} (key {row.key}) failed: {row.error}", row)
        elif self.max_failed_rows is not None and self.counts.failed > self.max_failed_rows:
            self.stopped = RowError(
                f"{self.counts.failed} rows failed, more than max_failed_rows="
                f"{self.max_failed_rows}; the last: row {row.ordinal} (key {row.key}): "
                f"{row.error}", row)

    async def _row(
        self, srow: SourceRow, key: str, before: str | None, queue: _Window,
        in_flight: set[str],
    ) -> None:
        """Run one row to its end and hand its outcome out (errors become the outcome;
        only a journal failure, which ends the whole job, escapes)."""
        try:
            started = time.perf_counter()
            durable = None
            if self.durable is not None:
                intents: dict[str, Any] = {}
                results: dict[str, Any] = {}
                if before is not None:  # in flight at a crash, or failed and retried
                    intents, results = await asyncio.to_thread(
                        self.durable.journal.load_row, self.run_id, key)
                durable = self.durable.for_row(key, intents, results)
            assert srow.data is not None
            ev.current_row.set((srow.ordinal, key))  # this row's task only: for observers
            result = await self.runner(srow.data, self.run_id, durable)
            elapsed = time.perf_counter() - started
            tokens = result.tokens
            if result.ok:
                value = result.value
                if value is DROP:
                    row = Row(srow.ordinal, key, "dropped", tokens=tokens, elapsed=elapsed)
                else:
                    row = Row(srow.ordinal, key, "done", value, tokens=tokens, elapsed=elapsed)
            else:
                row = Row(srow.ordinal, key, "failed", error=_row_error(result.error),
                          tokens=tokens, elapsed=elapsed)
            if durable is not None:
                row = self._record(durable, row)
        except Exception as exc:  # the journal failed (or a fault of plait's): the job ends
            queue.put(exc)
            raise
        finally:
            # The task ends in this step (nothing below awaits): it leaves the window's
            # tasks itself, which a done-callback would do a loop turn later.
            queue.tasks.pop(srow.ordinal, None)
            in_flight.discard(key)
            self.counts.in_flight -= 1
            if self.key is not None:
                recent = self._recent
                recent[key] = None
                if len(recent) > self._recent_max:
                    del recent[next(iter(recent))]
        self._hand_out(queue, row)

    def _record(self, durable: Durable, row: Row) -> Row:
        """Queue the row's record, after its results (the writer keeps the order). A
        value the journal cannot hold fails the row, saying why."""
        try:
            durable.writer.row(RowRecord(self.run_id, row.key, row.ordinal, row.status,
                                         row.value, row.error, row.tokens))
        except JournalValueError as exc:
            row = Row(row.ordinal, row.key, "failed", error=str(exc), tokens=row.tokens,
                      elapsed=row.elapsed)
            durable.writer.row(RowRecord(self.run_id, row.key, row.ordinal, row.status,
                                         None, row.error, row.tokens))
        return row


def _row_error(error: BaseException | None) -> str:
    """A failed row's error, as its record and its output show it."""
    if error is None:
        return "failed"
    if isinstance(error, NodeError):
        return str(error)
    return error_text(error)
