"""Group commit: the asyncio side of a journal.

Journal calls are blocking I/O; the engine runs on an event loop. A
`JournalWriter` owns one background thread that takes *everything* queued since
its last write and stores it with one `Journal.write` call, one transaction. When
64 nodes become ready in the same instant, their 64 intents (and any results
queued meanwhile) cost one commit, not 64.

    writer = JournalWriter(journal)
    await writer.intents([intent])   # returns once the intent is committed
    ...the call runs...
    writer.result(result)            # queued; committed with the next intents
    writer.row(record)               # a dataset row's outcome: queued, after its results
    await writer.flush()             # everything queued so far is committed
    await writer.aclose()            # flush, stop the thread (the journal stays open)

Invariants:
* An intent is durable before `intents()` returns (or the future `intent()`
  gives is done), so a call never starts without its intent on disk.
* Results and row records ride with the next transaction someone waits for
  (intents, a `flush`), or go alone `linger` seconds (20 ms) after they were
  queued, whichever is first: a job's calls then cost one commit per group of
  intents, not one more for the results that came in between, and a finished
  call's result is not left queued for longer than that.
* The intents one turn of an event loop queues are one group: the first schedules
  a callback (`_seal`) that marks the group complete when the turn ends, and the
  thread writes up to the last mark. So the rows of a dataset window that all
  wait on the journal share one transaction, instead of being cut into several
  wherever the thread happened to look at the queue.
* A row record is committed with (or after) every result queued before it, never
  before: batches are written in queue order, and one `write` stores its rows
  after its results in the same transaction. If a queued result or row record
  fails, nothing queued after it is written (the writer is failed), so a row is
  never marked done while a result it depends on is missing.
* Values are encoded on the caller's side, so a value that cannot be journaled
  raises `JournalValueError` from `intents()`/`result()`/`row()` at once.
* Errors are never swallowed. An `intents()` caller gets its own error. A queued
  result that could not be written leaves the writer *failed*: every later call
  (`intents`, `result`, `flush`, `aclose`) raises `JournalError` with the cause,
  because the run's journal is then missing a finished call.
* When a batch fails on an order or value error, its parts are retried one by one,
  so one bad record does not fail the callers that shared its transaction.
* A `JournalTransientError` (a busy lock, a full disk, a dropped connection) is
  retried with backoff for at most `retry_for` seconds, counted from the start of
  the first failing attempt and shared by every batch while the trouble lasts. Past
  the bound the writer is *failed* as above, whatever it was writing, and
  `on_failure` is called once (from the writer thread) so the run can stop at once
  instead of at its next journal call. A failed writer fails queued work without
  trying again, so closing it never waits out a second bound.
* A write retried after a transient error may already have committed (a
  connection dropped after COMMIT reached the server). Re-writing its intents is
  harmless (an intent without result is replaced); a result then meets itself
  ("already has a result"), so on that order error the stored results are read
  back and the ones identical to ours (same value, error and times) count as
  written. A different stored result stays an order error.
* A writer for one shard of a job whose rows other processes run too
  (`shared_rows=True`) meets another case: two rows of one key (twins in the
  user's data, which keys must not have) in two shards may run at once, and their
  calls have the same keys. A row's call that finds its node already finished
  under the same row is that node: the journal keeps the first result; neither
  our start nor our result of it is refused, so the job goes on, and the job
  refuses the twin once every shard is over (`plait/data/_twins.py`).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Self

from plait.journal._protocol import (
    Intent,
    Journal,
    JournalError,
    JournalOrderError,
    JournalTransientError,
    JournalValueError,
    Lease,
    Result,
    RowRecord,
    RunNotFoundError,
    encode_value,
    encoded_intent,
    encoded_result,
    encoded_row,
)
from plait.journal._retry import FIRST_DELAY, MAX_DELAY, retry_bound

__all__ = ["JournalWriter"]

# Errors that belong to particular records: isolate them by retrying parts alone.
_RECORD_ERRORS = (JournalOrderError, JournalValueError, RunNotFoundError)


class _Waiter:
    """Intents (none for a barrier) whose caller awaits `future`. Results and row
    records are queued as they are (no wrapper): nobody waits for them."""

    __slots__ = ("future", "intents", "loop")

    def __init__(
        self,
        intents: tuple[Intent, ...],
        future: asyncio.Future[None],
        loop: asyncio.AbstractEventLoop,
    ):
        self.intents = intents
        self.future = future
        self.loop = loop


_Item = _Waiter | Result | RowRecord
_SEAL: Any = object()  # in the queue: what came before it is a complete group

# The writer thread's state, as producers read it to decide whether to wake it.
_BUSY, _IDLE, _LINGERING = 0, 1, 2  # writing | waiting for anything | for a seal



LINGER = 0.02  # seconds a queued result may wait for intents to share their commit


def _parts(items: Sequence[_Item]) -> tuple[list[Intent], list[Result], list[RowRecord]]:
    """The intents, results and row records of `items`, each in queue order."""
    intents: list[Intent] = []
    results: list[Result] = []
    rows: list[RowRecord] = []
    for item in items:
        kind = type(item)
        if kind is Result:
            results.append(item)  # type: ignore[arg-type]
        elif kind is _Waiter:
            intents.extend(item.intents)  # type: ignore[union-attr]
        elif isinstance(item, RowRecord):
            rows.append(item)
        else:
            results.append(item)  # type: ignore[arg-type]
    return intents, results, rows


class JournalWriter:
    """Writes intents and results to `journal` from a background thread, in batches."""

    def __init__(
        self,
        journal: Journal,
        *,
        name: str = "plait-journal-writer",
        lease: Lease | None = None,
        retry_for: float | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
        linger: float = LINGER,
        shared_rows: bool = False,
    ):
        self.journal = journal
        self.shared_rows = shared_rows
        # A run's owner passes its lease: every write is fenced by it (Journal.write).
        self._fence: dict[str, Lease] = {"lease": lease} if lease is not None else {}
        self.retry_for = retry_bound() if retry_for is None else retry_for
        # Called once, from the writer thread, when the writer becomes failed.
        self.on_failure = on_failure
        self.linger = linger
        # A lock-free hand-over: the loop appends (atomic under the GIL) and wakes the
        # thread only when it sleeps, at most once per sleep (see `_put`, `_run`).
        self._queue: deque[_Item] = deque()
        self._wake = threading.Event()
        self._state = _BUSY
        self._sealing: set[asyncio.AbstractEventLoop] = set()  # loops with a seal to come
        self._closing = False
        self._failure: BaseException | None = None
        self._fail_lock = threading.Lock()
        self._failure_message = ""
        self._trouble_since: float | None = None  # first failing attempt, while retrying
        # Figures for benchmarks and tests: transactions and records written.
        self.batches = 0
        self.records = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def failed(self) -> bool:
        """The writer gave up (or lost a queued result): the journal failed the run."""
        return self._failure is not None

    # --- the event-loop side ----------------------------------------------------------

    async def intents(self, items: Iterable[Intent]) -> None:
        """Commit `items`; returns once they are durable. Raises the write's error."""
        encoded = tuple(map(encoded_intent, items))
        if not encoded:
            return
        await self._submit(encoded)

    def intent(self, item: Intent) -> asyncio.Future[None]:
        """Queue one intent; the future is done once it is durable (or has the write's
        error). For a caller on the event loop that awaits it at once: `intents`
        without a coroutine of its own."""
        return self._submit((encoded_intent(item),))

    def result(self, item: Result) -> None:
        """Queue a result; it is committed with the next intents (or `linger` seconds
        later). Thread-safe, no loop needed. Raises `JournalValueError` at once if the
        value cannot be journaled."""
        self._put(encoded_result(item))

    def row(self, record: RowRecord) -> None:
        """Queue a dataset row's outcome, like `result`: committed in the same
        transaction as (or after) every result queued before it. Queue the row's last
        result first. Raises `JournalValueError` at once if its value cannot be
        journaled."""
        self._put(encoded_row(record))

    async def flush(self) -> None:
        """Returns once everything queued before this call is committed."""
        await self._submit(())
        self._raise_failure()

    async def aclose(self) -> None:
        """Flush, then stop the writer thread. Does not close the journal. Idempotent."""
        try:
            if not self._closing:
                await self.flush()
        finally:
            self._stop()
            if self._thread.is_alive():
                await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._raise_failure()

    def close(self) -> None:
        """Blocking `aclose` for code without an event loop: writes what is queued."""
        self._stop()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._raise_failure()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _submit(self, intents: tuple[Intent, ...]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._put(_Waiter(intents, future, loop), loop)
        return future

    def _put(self, item: _Item, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Queue `item`; `loop` is the waiter's (results and row records have none)."""
        if self._failure is not None:
            self._raise_failure()
        if self._closing:
            raise JournalError(f"the journal writer for {self._where()} is closed")
        self._queue.append(item)
        if loop is not None:
            # The intents a turn of the loop queues are one group, sealed by one
            # callback when the turn ends, after every task it ran queued theirs: the
            # writer commits whole turns (see `_run`), with the results queued before.
            sealing = self._sealing
            if loop not in sealing:
                sealing.add(loop)
                loop.call_soon(self._seal, loop)
        # After the append: a thread that went to sleep before it is woken here; one
        # that goes to sleep after it sees the item first (`_run` checks the queue
        # after publishing its state). An idle thread starts the `linger` clock. The
        # waker marks it busy first, so the puts until it runs do not wake it again.
        if self._state == _IDLE:
            self._state = _BUSY
            self._wake.set()

    def _seal(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sealing.discard(loop)
        self._queue.append(_SEAL)
        if self._state:
            self._state = _BUSY
            self._wake.set()

    def _stop(self) -> None:
        self._closing = True
        self._wake.set()

    def _raise_failure(self) -> None:
        failure = self._failure
        if failure is not None:
            raise JournalError(self._failure_message) from failure

    def _fail(self, error: BaseException, what: str) -> None:
        """Make the writer failed (sticky) and tell `on_failure`, once."""
        with self._fail_lock:
            if self._failure is not None:
                return
            self._failure_message = f"the journal writer for {self._where()} {what}: {error}"
            self._failure = error  # after the message: _raise_failure reads them unlocked
        callback = self.on_failure
        if callback is not None:
            failed = JournalError(self._failure_message)
            failed.__cause__ = error
            try:
                callback(failed)
            except Exception:  # noqa: BLE001, S110 - the failure is raised to callers anyway
                pass

    def _where(self) -> str:
        return getattr(self.journal, "location", repr(self.journal))

    # --- the writer thread ------------------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        wake = self._wake
        staged: list[_Item] = []  # taken from the queue, not written yet
        sealed = 0  # staged[:sealed] ends with a complete group of waiters
        since = 0.0  # when the oldest staged item was taken
        left = 0.0
        while True:
            while queue:
                item = queue.popleft()
                if item is _SEAL:
                    sealed = len(staged)
                else:
                    staged.append(item)  # type: ignore[arg-type]
            if staged:
                now = time.monotonic()
                if not since:
                    since = now
                left = since + self.linger - now
                n = len(staged) if self._closing or left <= 0 else sealed
                if n:
                    batch, staged, sealed = staged[:n], staged[n:], 0
                    since = now if staged else 0.0
                    try:
                        errors = self._commit(batch)
                    except BaseException as exc:  # noqa: BLE001 - a bug must not strand waiters
                        errors = [exc] * len(batch)
                    self._settle(batch, errors)
                    continue
            elif self._closing:
                return  # everything queued is written
            # Sleep: clear, publish the state, look at the queue (and `_closing`, set
            # before `_stop` wakes us) once more, wait.
            wake.clear()
            self._state = _LINGERING if staged else _IDLE
            if not queue and not self._closing:
                wake.wait(left if staged else None)
            self._state = _BUSY

    def _commit(self, batch: list[_Item]) -> list[BaseException | None]:
        intents, results, rows = _parts(batch)
        try:
            if intents or results or rows:
                self._write(intents, results, rows)
                self.batches += 1
                self.records += len(intents) + len(results) + len(rows)
            return [None] * len(batch)
        except _RECORD_ERRORS as exc:
            if len(batch) == 1:
                return [exc]
        except BaseException as exc:  # noqa: BLE001 - handed to the callers
            return [exc] * len(batch)
        # The transaction was rolled back whole; write the parts alone, in order,
        # so only the offending submissions fail.
        errors: list[BaseException | None] = []
        for item in batch:
            try:
                intents, results, rows = _parts((item,))
                if intents or results or rows:
                    self._write(intents, results, rows)
                    self.batches += 1
                    self.records += len(intents) + len(results) + len(rows)
                errors.append(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the callers
                errors.append(exc)
                if type(item) is not _Waiter:
                    # A queued result or row is lost: fail now, so nothing queued after
                    # it (a row record that depends on it) is written.
                    self._fail_lost(exc, item)
        return errors

    def _write(
        self,
        intents: Sequence[Intent],
        results: Sequence[Result],
        rows: Sequence[RowRecord] = (),
    ) -> None:
        """`journal.write`, retrying transient failures within the writer's bound."""
        delay = FIRST_DELAY
        uncertain = False  # an earlier attempt may have committed
        while True:
            if self._failure is not None:  # fail fast: the run is ending
                raise JournalError(self._failure_message) from self._failure
            started = time.monotonic()
            try:
                if rows:
                    self.journal.write(intents, results, rows, **self._fence)
                else:  # journals without rows support (wrappers, older fakes) still work
                    self.journal.write(intents, results, **self._fence)
                self._trouble_since = None
                return
            except JournalTransientError as exc:
                if self._trouble_since is None:
                    self._trouble_since = started
                spent = time.monotonic() - self._trouble_since
                left = self.retry_for - spent
                if left <= 0:
                    self._fail(exc, f"gave up after {spent:.1f}s of retries")
                    raise JournalError(self._failure_message) from exc
                uncertain = True
                time.sleep(min(left, delay * random.uniform(0.5, 1.0)))
                delay = min(delay * 2, MAX_DELAY)
            except JournalOrderError:
                stored = self._already_stored(results) if uncertain and results else set()
                uncertain = False
                twins = self._finished_by_twin(intents, results) if self.shared_rows else set()
                if not stored and not twins:
                    raise
                # Our intents, and row records, are written again: both replace their
                # own. A twin's finished node takes neither our intent nor our result.
                intents = [i for i in intents if (i.run_id, i.key) not in twins]
                results = [r for r in results
                           if (r.run_id, r.key) not in stored and (r.run_id, r.key) not in twins]
                if not intents and not results and not rows:
                    self._trouble_since = None
                    return

    def _already_stored(self, results: Sequence[Result]) -> set[tuple[str, str]]:
        """Of `results`, those the journal holds exactly (a retried write's own commit).
        A row's results are read by their row, never by loading a dataset job whole."""
        same: set[tuple[str, str]] = set()
        groups: dict[tuple[str, str], list[Result]] = {}
        for r in results:
            groups.setdefault((r.run_id, r.row_key), []).append(r)
        for (run_id, row_key), group in groups.items():
            if row_key:
                _, held = self.journal.load_row(run_id, row_key)
            else:
                held = self.journal.load(run_id).results
            for r in group:
                old = held.get(r.key)
                if (
                    old is not None
                    and old.ok == r.ok
                    and old.error == r.error
                    and old.started_at == r.started_at
                    and old.finished_at == r.finished_at
                    and encode_value(old.value, "a stored result").text == r.value.text
                ):
                    same.add((run_id, r.key))
        return same

    def _finished_by_twin(
        self, intents: Sequence[Intent], results: Sequence[Result]
    ) -> set[tuple[str, str]]:
        """Of the row calls in `intents` and `results`, those whose node another
        process finished under the same row (`shared_rows`): read by their row."""
        rows: dict[tuple[str, str], set[str]] = {}
        for item in (*intents, *results):
            if item.row_key:
                rows.setdefault((item.run_id, item.row_key), set()).add(item.key)
        finished: set[tuple[str, str]] = set()
        for (run_id, row_key), keys in rows.items():
            _, held = self.journal.load_row(run_id, row_key)
            finished.update((run_id, k) for k in keys if k in held and held[k].ok)
        return finished

    def _fail_lost(self, error: BaseException, item: _Item) -> None:
        if isinstance(item, RowRecord):
            what = "a row's outcome, so the journal is missing a finished row"
        else:
            what = "a result, so the journal is missing a finished call"
        self._fail(error, f"failed to store {what}")

    def _settle(self, batch: list[_Item], errors: list[BaseException | None]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], Any]]] = {}
        for item, error in zip(batch, errors, strict=True):
            if type(item) is not _Waiter:
                if error is not None and self._failure is None:
                    self._fail_lost(error, item)  # sticky
                continue
            by_loop.setdefault(item.loop, []).append((item.future, error))  # type: ignore[union-attr]
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, pairs)
            except RuntimeError:  # the loop is closed; nobody is waiting any more
                pass


def _resolve(pairs: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, error in pairs:
        if future.done():  # the waiter was cancelled
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
