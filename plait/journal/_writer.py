"""Group commit: the asyncio side of a journal.

Journal calls are blocking I/O; the engine runs on an event loop. A
`JournalWriter` owns one background thread that takes *everything* queued since
its last write and stores it with one `Journal.write` call, one transaction. When
64 nodes become ready in the same instant, their 64 intents (and any results
queued meanwhile) cost one commit, not 64.

    writer = JournalWriter(journal)
    await writer.intents([intent])   # returns once the intent is committed
    ...the call runs...
    writer.result(result)            # queued; committed with the next batch
    await writer.flush()             # everything queued so far is committed
    await writer.aclose()            # flush, stop the thread (the journal stays open)

Invariants:
* An intent is durable before `intents()` returns, so a call never starts
  without its intent on disk.
* Values are encoded on the caller's side, so a value that cannot be journaled
  raises `JournalValueError` from `intents()`/`result()` at once, naming the node.
* Errors are never swallowed. An `intents()` caller gets its own error. A queued
  result that could not be written leaves the writer *failed*: every later call
  (`intents`, `result`, `flush`, `aclose`) raises `JournalError` with the cause,
  because the run's journal is then missing a finished call.
* When a batch fails on an order or value error, its parts are retried one by one,
  so one bad record does not fail the callers that shared its transaction.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any, Self

from plait.journal._protocol import (
    Intent,
    Journal,
    JournalError,
    JournalOrderError,
    JournalValueError,
    Lease,
    Result,
    RunNotFoundError,
    encoded_intent,
    encoded_result,
)

__all__ = ["JournalWriter"]

# Errors that belong to particular records: isolate them by retrying parts alone.
_RECORD_ERRORS = (JournalOrderError, JournalValueError, RunNotFoundError)


class _Unit:
    """One submission: a batch of intents (with a waiter), one result, or a barrier."""

    __slots__ = ("future", "intents", "loop", "results")

    def __init__(
        self,
        intents: tuple[Intent, ...],
        results: tuple[Result, ...],
        future: asyncio.Future[None] | None,
        loop: asyncio.AbstractEventLoop | None,
    ):
        self.intents = intents
        self.results = results
        self.future = future
        self.loop = loop


class JournalWriter:
    """Writes intents and results to `journal` from a background thread, in batches."""

    def __init__(
        self, journal: Journal, *, name: str = "plait-journal-writer", lease: Lease | None = None
    ):
        self.journal = journal
        # A run's owner passes its lease: every write is fenced by it (Journal.write).
        self._fence: dict[str, Lease] = {"lease": lease} if lease is not None else {}
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Unit] = []
        self._closing = False
        self._failure: BaseException | None = None
        # Figures for benchmarks and tests: transactions and records written.
        self.batches = 0
        self.records = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- the event-loop side ----------------------------------------------------------

    async def intents(self, items: Iterable[Intent]) -> None:
        """Commit `items`; returns once they are durable. Raises the write's error."""
        encoded = tuple(encoded_intent(i) for i in items)
        if not encoded:
            return
        await self._submit(encoded, ())

    def result(self, item: Result) -> None:
        """Queue a result; it is committed with the next batch. Thread-safe, no loop
        needed. Raises `JournalValueError` at once if the value cannot be journaled."""
        unit = _Unit((), (encoded_result(item),), None, None)
        self._put(unit)

    async def flush(self) -> None:
        """Returns once everything queued before this call is committed."""
        await self._submit((), ())
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

    async def _submit(self, intents: tuple[Intent, ...], results: tuple[Result, ...]) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._put(_Unit(intents, results, future, loop))
        await future

    def _put(self, unit: _Unit) -> None:
        with self._cond:
            self._raise_failure()
            if self._closing:
                raise JournalError(f"the journal writer for {self._where()} is closed")
            self._queue.append(unit)
            self._cond.notify()

    def _stop(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()

    def _raise_failure(self) -> None:
        failure = self._failure
        if failure is not None:
            raise JournalError(
                f"the journal writer for {self._where()} failed to store a result, so "
                f"the journal is missing a finished call: {failure}"
            ) from failure

    def _where(self) -> str:
        return getattr(self.journal, "location", repr(self.journal))

    # --- the writer thread ------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return  # closing, and everything queued is written
                batch, self._queue = self._queue, []
            try:
                errors = self._commit(batch)
            except BaseException as exc:  # noqa: BLE001 - a bug must not strand the waiters
                errors = [exc] * len(batch)
            self._settle(batch, errors)

    def _commit(self, batch: list[_Unit]) -> list[BaseException | None]:
        intents = [i for u in batch for i in u.intents]
        results = [r for u in batch for r in u.results]
        try:
            if intents or results:
                self.journal.write(intents, results, **self._fence)
                self.batches += 1
                self.records += len(intents) + len(results)
            return [None] * len(batch)
        except _RECORD_ERRORS as exc:
            if len(batch) == 1:
                return [exc]
        except BaseException as exc:  # noqa: BLE001 - handed to the callers
            return [exc] * len(batch)
        # The transaction was rolled back whole; write the parts alone, in order,
        # so only the offending submissions fail.
        errors: list[BaseException | None] = []
        for unit in batch:
            try:
                if unit.intents or unit.results:
                    self.journal.write(unit.intents, unit.results, **self._fence)
                    self.batches += 1
                    self.records += len(unit.intents) + len(unit.results)
                errors.append(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the callers
                errors.append(exc)
        return errors

    def _settle(self, batch: list[_Unit], errors: list[BaseException | None]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], Any]]] = {}
        for unit, error in zip(batch, errors, strict=True):
            if unit.future is None:
                if error is not None and self._failure is None:
                    self._failure = error  # a queued result was lost: sticky
                continue
            assert unit.loop is not None
            by_loop.setdefault(unit.loop, []).append((unit.future, error))
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
