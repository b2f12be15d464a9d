"""Journaling for one run: node keys, intents before calls, results after, replay.

The engine calls three hooks: `add` when a node joins the graph (its key is
computed from content, parents by their keys), `begin` before a call (replays a
journaled result, or refuses an in-doubt call, or commits an intent and lets the
call run), and `end` after it (queues the result; it is committed with the next
group of intents, at most the writer's `linger` (20 ms) later, or at the end of
the run).

Why an intent is committed before the call: a crash between the call's effect
and its result record would otherwise repeat the effect silently on resume. With
the intent first, such a call is found "in doubt" (intent, no result) and its
tool's policy decides: re-run if idempotent, else stop and say so.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from plait._errors import InDoubtError
from plait.runtime._graph import Node
from plait.runtime._identity import (
    NotCanonicalError,
    Occurrences,
    canonical_arguments,
    key_of,
    row_key_of,
)
from plait.runtime._ownership import DEFAULT_LEASE_TTL, Keeper, release, take
from plait.runtime._tools import Tool
from plait.journal import (
    INLINE_LIMIT,
    Encoded,
    Intent,
    Journal,
    JournalError,
    JournalState,
    JournalTransientError,
    JournalValueError,
    JournalWriter,
    Lease,
    Result,
    RunRecord,
    encode_value,
    error_text,
    open_journal,
)
from plait.journal._retry import retrying

MISS = None  # what `begin`'s awaitable gives when there is nothing to replay
_T = TypeVar("_T")

class Durable:
    """The journal side of one run."""

    def __init__(
        self,
        journal: Journal,
        writer: JournalWriter,
        run_id: str,
        state: JournalState | None,
        allow_rerun: bool,
        finished_at: float | None = None,
        keeper: Keeper | None = None,
        row_key: str = "",
    ) -> None:
        self.journal = journal
        self.writer = writer
        self.run_id = run_id
        # The run's lease, heartbeaten by `keeper`; every write of the run carries it.
        self.keeper = keeper
        self.allow_rerun = allow_rerun
        self.results = {k: r for k, r in state.results.items() if r.ok} if state else {}
        self.in_doubt = set(state.in_doubt) if state else set()
        self.previous = state.intents if state else {}
        # A dataset row's nodes: their keys are scoped by the row's key (two rows with
        # the same prompt are two calls), and their records carry it, so a resumed job
        # loads one row's records by an indexed look-up, never the whole run.
        self.row_key = row_key
        self.keys: list[str] = []
        self.canonical: list[str] = []
        self.occurrences = Occurrences()
        self.replayed = 0
        self.ran = 0  # calls that ran (not replayed) in this process
        # When the run was done before: a replay to the same end keeps this finish time.
        self.finished_at = finished_at
        # Journal times are wall-clock; the engine's are perf_counter.
        self.clock_offset = time.time() - time.perf_counter()

    def for_row(
        self, row_key: str, intents: Mapping[str, Intent], results: Mapping[str, Result]
    ) -> Durable:
        """The journal side of one row of a dataset job: this run's journal, writer
        and lease, the row's own keys and earlier records (`load_row`)."""
        row = Durable(self.journal, self.writer, self.run_id, None, self.allow_rerun,
                      keeper=self.keeper, row_key=row_key)
        if intents:  # a row started before (most rows of a job are new)
            row.results = {k: r for k, r in results.items() if r.ok}
            row.in_doubt = {k for k in intents if k not in results}
            row.previous = dict(intents)
        row.clock_offset = self.clock_offset
        return row

    def watch(self, on_failure: Callable[[BaseException], None]) -> None:
        """Call `on_failure` (from the writer's thread) when the writer gives up.
        A row's run shares its job's writer, which the job watches: not the row."""
        if not self.row_key:
            self.writer.on_failure = on_failure

    @property
    def lease(self) -> Lease | None:
        return self.keeper.lease if self.keeper is not None else None

    def disown(self) -> None:
        """Stop heartbeating and give the run up (blocking; at the run's end)."""
        if self.keeper is not None:
            # A journal that failed the run is not waited on once more at its end.
            release(self.journal, self.keeper, attempt=not self.writer.failed)

    def lost(self) -> BaseException | None:
        """The lease lost to another process, if so (the run stopped for it)."""
        return self.keeper.lost if self.keeper is not None else None

    def add(self, node: Node) -> None:
        try:
            canonical = canonical_arguments(node.arguments, self.keys.__getitem__)
        except NotCanonicalError as exc:
            raise JournalValueError(
                f"cannot journal the arguments of node ${node.id} (tool {node.tool!r}): {exc}"
            ) from None
        n = self.occurrences.next(node.tool, canonical)
        if self.row_key:
            self.keys.append(row_key_of(self.row_key, node.tool, canonical, n))
        else:
            self.keys.append(key_of(node.tool, canonical, n))
        self.canonical.append(canonical)

    def has_result(self, tool: str, canonical: str) -> bool:
        """The journal holds a result for the first call of `tool` with these
        canonical arguments (a speculative guess of it is not worth making)."""
        if not self.results:
            return False
        key = (row_key_of(self.row_key, tool, canonical) if self.row_key
               else key_of(tool, canonical))
        return key in self.results

    def begin(self, i: int, tool: Tool, attempt: int) -> Awaitable[Result | None]:
        """Before node `i` runs: an awaitable of its journaled result, or of MISS once
        its intent is durable. Not a coroutine: the writer's own future is awaited,
        so a call's start costs no coroutine frames of ours (their resumption either)."""
        key = self.keys[i]
        done = self.results.get(key)
        if done is not None:
            self.replayed += 1
            replay: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
            replay.set_result(done)
            return replay
        if key in self.in_doubt and attempt == 1:
            if not (tool.policy.idempotent or self.allow_rerun):
                raise InDoubtError(self._doubt_message(i, tool))
            self.in_doubt.discard(key)
        self.ran += 1
        return self.writer.intent(
            Intent(self.run_id, key, tool.name, _encoded(self.canonical[i]), attempt,
                   time.time(), self.row_key)
        )

    def end(
        self, i: int, tool: str, value: Any, error: BaseException | None, started: float,
        finished: float, tokens: int = 0, fields: Mapping[str, Any] | None = None,
    ) -> None:
        """After node `i` ran: queue its result. Raises JournalValueError for a value
        that cannot be journaled (the node then fails with that error)."""
        key = self.keys[i]
        off = self.clock_offset
        # Which of the run's processes ran the call (the lease's epoch: 1, +1 per
        # resume), so `plait show` can tell a replayed call from one run again.
        keeper = self.keeper
        epoch = keeper.lease.epoch if keeper is not None else None
        if fields:  # what the tool added to its record (add_record)
            extra: Mapping[str, Any] | Encoded = (
                {**fields, "session": epoch} if epoch is not None else dict(fields))
        else:
            extra = _session_extra(epoch)
        if error is None:
            encoded = encode_value(value, lambda: f"the result of node ${i} (tool {tool!r})")
            self.writer.result(
                Result(self.run_id, key, True, encoded, None, started + off, finished + off,
                       tokens, extra, tool=tool, row_key=self.row_key)
            )
        else:
            self.writer.result(
                Result(self.run_id, key, False, None, error_text(error), started + off,
                       finished + off, tokens, extra, tool=tool, row_key=self.row_key)
            )

    def _doubt_message(self, i: int, tool: Tool) -> str:
        others = sorted(
            f"{self.previous[k].tool} ({k[:12]})" for k in self.in_doubt if k in self.previous
        )
        return (
            f"node ${i} (tool {tool.name!r}, key {self.keys[i][:12]}) started before the "
            "crash and has no result: it may have run. It is not marked idempotent, so it "
            "is not run again. Calls in doubt in this run: " + ", ".join(others) + ". "
            "Resume with allow_rerun=True (CLI: --allow-rerun) if running them twice is safe."
        )


@functools.lru_cache(maxsize=16)
def _session_extra(epoch: int | None) -> Encoded:
    """A result's usual extra data, encoded once per session, not once per call."""
    return encode_value({"session": epoch} if epoch is not None else {}, "extra data")


def _encoded(canonical: str) -> Encoded:
    if len(canonical) <= INLINE_LIMIT:
        return Encoded(canonical, None)
    return Encoded(canonical, hashlib.sha256(canonical.encode("ascii")).hexdigest())


def code_version(fn: Any) -> str:
    """A short hash of the entry point's source file, to tell code changes apart."""
    try:
        source = inspect.getsource(inspect.getmodule(fn))  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""
    return hashlib.sha256(source.encode()).hexdigest()[:12]


async def open_durable(
    spec: str | Journal,
    *,
    run_id: str,
    entry: str,
    arguments: Mapping[str, Any],
    version: str,
    allow_rerun: bool,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    wait: float = 0.0,
    load: bool = True,
) -> Durable:
    """Open the journal and the run in it: a new run, or the state of an earlier one.

    The run's lease is taken first, before the run is read or created: of two
    processes starting (or resuming) one run id, exactly one gets it; the other
    gets `RunOwnedError` (after waiting up to `wait` seconds for the owner).

    `load=False`: an earlier run's records are not loaded (a dataset job loads
    them row by row, as rows are admitted)."""
    if isinstance(spec, str):
        journal = await _retrying(lambda: open_journal(spec))
    else:
        journal = spec
    keeper = None
    try:
        lease = await take(journal, run_id, ttl=lease_ttl, wait=wait)
        keeper = Keeper(journal, lease, _stopper(asyncio.get_running_loop()))
        record = await _retrying(lambda: journal.get_run(run_id))
        state = None
        if record is None:
            rec = RunRecord(run_id, entry, dict(arguments), "running", version)
            await _retrying(lambda: _create(journal, rec))
        else:
            given = _identity(encode_roundtrip(arguments))
            if record.entry != entry or _identity(record.arguments) != given:
                raise JournalError(
                    f"run {run_id!r} in the journal is "
                    f"{record.entry}{_show(_identity(record.arguments))}; "
                    f"it cannot be resumed as {entry}{_show(given)}"
                )
            if load:
                state = await _retrying(lambda: journal.load(run_id))
            await _retrying(
                lambda: journal.update_run(run_id, status="running", lease=lease)
            )
    except BaseException:
        try:
            if keeper is not None:
                await asyncio.to_thread(release, journal, keeper)
        finally:
            if isinstance(spec, str):
                journal.close()
        raise
    done_at = record.finished_at if record is not None and record.status == "done" else None
    writer = JournalWriter(journal, lease=lease)
    return Durable(journal, writer, run_id, state, allow_rerun, done_at, keeper)


async def _retrying(call: Callable[[], _T]) -> _T:
    """A journal call at the run's start or end, off the event loop, its transient
    failures retried within the journal's bound (as the writer's are)."""
    return await asyncio.to_thread(retrying, call)


def _create(journal: Journal, run: RunRecord) -> None:
    """Create the run. We hold its lease and found no run, so if it exists now it is
    ours: a try whose commit landed before its connection was lost."""
    try:
        journal.create_run(run)
    except JournalTransientError:
        raise
    except JournalError:
        if journal.get_run(run.run_id) is None:
            raise


def _stopper(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """What the keeper calls when the lease is lost: cancel the task running the run
    (from the keeper's thread), so it stops promptly instead of running on
    unjournaled; `close_durable` then raises the `StaleLeaseError`."""
    task = asyncio.current_task()

    def stop() -> None:
        if task is not None and not task.done():
            task.cancel()

    def from_thread() -> None:
        try:
            loop.call_soon_threadsafe(stop)
        except RuntimeError:  # the loop is closed: the run is over anyway
            pass

    return from_thread


async def close_durable(
    durable: Durable, status: str, error: BaseException | None, own: bool,
    tokens: int | None = None,
) -> None:
    """Flush every queued result, then mark the run; close the journal if we opened it.

    A done run replayed to the same end, no call run again, keeps its finish
    time: asking it again is not more work for it."""
    try:
        try:
            await durable.writer.aclose()
            replay = status == "done" and not durable.ran
            await _retrying(
                lambda: durable.journal.update_run(
                    durable.run_id,
                    status=status,
                    tokens=tokens,
                    error=error_text(error) if error is not None else None,
                    finished_at=durable.finished_at if replay else None,
                    lease=durable.lease,
                )
            )
        finally:
            await asyncio.to_thread(durable.disown)
    except BaseException:
        lost = durable.lost()
        if lost is None:
            raise
        # The run was stopped (cancelled) because another process took it over: that
        # is the error, not the cancellation it caused.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            task.uncancel()
        raise lost from None
    finally:
        if own:
            durable.journal.close()


def encode_roundtrip(value: Any) -> Any:
    """`value` as the journal gives it back (tuples become lists)."""
    from plait.journal import decode_value

    return decode_value(encode_value(value, "the run's arguments").text)


def _identity(arguments: Any) -> Any:
    """A run's arguments less its "options" (how it is run: concurrency, timeouts,
    where its tools came from): kept for a resume, which may change them, they do
    not make it another run."""
    if isinstance(arguments, dict):
        return {k: v for k, v in arguments.items() if k != "options"}
    return arguments


def _show(arguments: Any) -> str:
    text = repr(arguments)
    return f"({text[:80]}...)" if len(text) > 80 else f"({text})"
