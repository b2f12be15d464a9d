"""Journal records, errors, the value codec and the `Journal` protocol.

A journal holds, per run, an *intent* for every call before it starts and a
*result* after it ends. Values (arguments, results) are JSON data, never pickles:
loading a journal must never execute code. Values whose canonical JSON is longer
than `INLINE_LIMIT` bytes go to a content-addressed blob table (key: sha256 of the
canonical bytes), so a large value that many calls share is stored once.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from plait._errors import PlaitError
from plait.runtime._identity import NotCanonicalError, canonical_json

__all__ = [
    "INLINE_LIMIT",
    "ROW_STATUSES",
    "RUN_STATUSES",
    "Encoded",
    "Intent",
    "Journal",
    "JournalError",
    "JournalOrderError",
    "JournalState",
    "JournalTransientError",
    "JournalValueError",
    "Lease",
    "Result",
    "RunNotFoundError",
    "RowRecord",
    "RowStatus",
    "RunRecord",
    "RunStatus",
    "RunOwnedError",
    "StaleLeaseError",
    "decode_value",
    "encode_value",
    "error_text",
]

# Canonical JSON up to this many bytes is stored in the record's own row; longer
# values go to the blob table. 256 bytes keeps typical small results (numbers,
# short strings, flags) in one row read while anything document-sized is shared.
INLINE_LIMIT = 256

RunStatus = Literal["running", "done", "failed", "cancelled"]
RUN_STATUSES: frozenset[str] = frozenset({"running", "done", "failed", "cancelled"})
RowStatus = Literal["done", "dropped", "failed"]
ROW_STATUSES: frozenset[str] = frozenset({"done", "dropped", "failed"})


# --- errors ---------------------------------------------------------------------------


class JournalError(PlaitError):
    """The journal cannot be opened, read or written. The message says what and where."""


class JournalTransientError(JournalError):
    """A failure that may clear by itself: a dropped connection, a lock another
    process holds past the busy timeout, a full disk. The write it interrupted did
    not commit (or, for a dropped connection, may not have), so the caller may try
    the same write again within a bound; past the bound it is a plain failure."""


class JournalOrderError(JournalError):
    """A write out of order: a result without its intent, a second result for a
    node, an intent for a finished node or a closed run, a run marked done while a
    call is still in doubt."""


class JournalValueError(JournalError, TypeError):
    """A value that cannot be journaled (not JSON-able). Names the node and the type."""


class RunNotFoundError(JournalError):
    """No run with that id in this journal."""

    def __init__(self, run_id: str, location: str):
        self.run_id = run_id
        super().__init__(f"no run {run_id!r} in journal {location}")


class RunOwnedError(JournalError):
    """Another live process owns the run: its lease is fresh and its owner alive.
    `owner` is that lease; the message names its host, pid and since when."""

    def __init__(self, owner: Lease, location: str):
        self.owner = owner
        since = datetime.datetime.fromtimestamp(owner.acquired_at).strftime("%Y-%m-%d %H:%M:%S")
        super().__init__(
            f"run {owner.run_id!r} is already running: owned by pid {owner.pid} on host "
            f"{owner.host} since {since}, last heartbeat {owner.age:.1f}s ago (journal "
            f"{location}). Wait for it to end, or pass wait=SECONDS (CLI: --wait SECONDS) "
            "to wait for it"
        )


class StaleLeaseError(JournalError):
    """A write under a lease that is no longer the run's: another process took the
    run over (the lease expired) or it was released. The write is refused, never
    merged, and the old owner must stop."""

    def __init__(self, lease: Lease, location: str, now: Lease | None = None):
        self.lease = lease
        self.current = now
        if now is None:
            why = "its lease was released"
        else:
            why = (f"pid {now.pid} on host {now.host} took it over (epoch {now.epoch}) after "
                   f"this process's heartbeat stopped for longer than {lease.ttl:g}s")
        super().__init__(
            f"this process (pid {lease.pid}, epoch {lease.epoch}) no longer owns run "
            f"{lease.run_id!r}: {why}. Its write is refused, never merged (journal "
            f"{location}); see `plait runs` for the run's state"
        )


# --- records --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run: what was called (`entry`, `arguments`), its status and totals.

    `updated_at` defaults to `created_at`. `finished_at` is set when the status
    leaves "running".
    """

    run_id: str
    entry: str
    arguments: Any = None
    status: RunStatus = "running"
    code_version: str = ""
    created_at: float = field(default_factory=time.time)
    updated_at: float = 0.0
    finished_at: float | None = None
    tokens: int = 0
    error: str | None = None

    def __post_init__(self) -> None:
        if self.status not in RUN_STATUSES:
            raise ValueError(
                f"run status must be one of {sorted(RUN_STATUSES)}, got {self.status!r}"
            )
        if not self.updated_at:
            object.__setattr__(self, "updated_at", self.created_at)


@dataclass(frozen=True, slots=True)
class Lease:
    """Who runs a run: one owner at a time.

    `owner` is a random token of one process's hold on one run; `epoch` counts
    owners (+1 at every takeover), so a write under an old epoch is refused
    (fencing). The owner heartbeats every `ttl`/3 seconds; a lease whose last
    heartbeat is older than `ttl` (the owner's own ttl, stored with it) has
    expired and may be taken over. `age` is seconds since the last heartbeat,
    by the journal's clock, as of reading the lease.
    """

    run_id: str
    owner: str
    host: str
    pid: int
    epoch: int
    ttl: float
    acquired_at: float
    heartbeat_at: float
    age: float = 0.0

    @property
    def expired(self) -> bool:
        return self.age > self.ttl

    def alive(self) -> bool:
        """Fresh, and (when its owner is on this host) its process still exists.
        A kill -9'd owner on this host is seen at once, without waiting out the ttl,
        and so is a hold this process gave up without managing to release it."""
        if self.expired or self.owner in ABANDONED:
            return False
        return not (self.host == HOST and not pid_alive(self.pid))


HOST = socket.gethostname()

# Owner tokens this process gave up on but could not release (the journal failed
# at the run's end). Nobody holds them any more, so this process may take their
# runs over at once instead of waiting out the ttl of its own dead hold.
ABANDONED: set[str] = set()


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (signal 0 checks without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def new_owner() -> str:
    """A fresh owner token: one process's hold on one run."""
    return os.urandom(8).hex()


@dataclass(frozen=True, slots=True)
class Intent:
    """Written (and committed) before a call starts. `attempt` counts from 1.

    `row_key` is set for a call of one row of a dataset job (the row's key, see
    `RowRecord`) and "" for a plain run's call: the intent is where the journal
    keeps which row a call belongs to."""

    run_id: str
    key: str
    tool: str
    arguments: Any = field(default_factory=dict)
    attempt: int = 1
    started_at: float = field(default_factory=time.time)
    row_key: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    """Written after a call ends, successfully (`ok`, `value`) or not (`error`).

    `error` is text, "TypeName: message" (see `error_text`). `tool` and `row_key`
    are not stored (the intent holds them): reads fill them in. Set `tool` when
    writing for better error messages; a `row_key` given when writing must be the
    intent's (else `JournalOrderError`).
    """

    run_id: str
    key: str
    ok: bool
    value: Any = None
    error: str | None = None
    started_at: float = 0.0
    finished_at: float = field(default_factory=time.time)
    tokens: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
    tool: str = ""
    row_key: str = ""


@dataclass(frozen=True, slots=True)
class RowRecord:
    """The outcome of one row of a dataset job, written in the transaction of the
    row's last result. A record for a row that has one replaces it (a failed row
    retried later becomes done), but a failed row never replaces a done one of
    another `ordinal` (twins that ran in two shards: `ROW_UPSERT` in `_batch`).

    `row_key` is the canonical text of the row's key (the caller's); `ordinal` its
    0-based position in the source. `status`: "done" (`value` is the row's output,
    JSON data, large values go to the blob table), "dropped" (filtered out) or
    "failed" (`error` says which node and why, in the caller's words).
    """

    run_id: str
    row_key: str
    ordinal: int
    status: RowStatus
    value: Any = None
    error: str | None = None
    tokens: int = 0
    finished_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.status not in ROW_STATUSES:
            raise ValueError(
                f"row status must be one of {sorted(ROW_STATUSES)}, got {self.status!r}"
            )
        why = bad_row_key(self.row_key)
        if why:
            raise ValueError(f"row key {self.row_key!r} cannot be journaled: {why}")
        if type(self.ordinal) is not int or self.ordinal < 0:
            raise ValueError(f"a row's ordinal must be an int >= 0, got {self.ordinal!r}")


def bad_row_key(key: object) -> str | None:
    """Why `key` cannot be a row key, or None. Row keys are stored as text by every
    backend, and PostgreSQL's text holds neither NUL nor lone surrogates."""
    if type(key) is not str or not key:
        return "a row key is non-empty text"
    if "\x00" in key:
        return "it contains a NUL character"
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid Unicode (a lone surrogate)"
    return None


@dataclass(frozen=True, slots=True)
class JournalState:
    """Everything journaled for one run, as `load` returns it."""

    run: RunRecord
    intents: dict[str, Intent]
    results: dict[str, Result]

    @property
    def in_doubt(self) -> list[str]:
        """Keys of calls that started (intent) but never finished (no result),
        oldest first. Their tools' policies decide whether they may run again."""
        doubt = [i for k, i in self.intents.items() if k not in self.results]
        doubt.sort(key=lambda i: (i.started_at, i.key))
        return [i.key for i in doubt]


def error_text(exc: BaseException) -> str:
    """How an exception is journaled: "TypeName: message"."""
    message = str(exc)
    name = type(exc).__qualname__
    return f"{name}: {message}" if message else name


# --- values ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Encoded:
    """A value already in canonical JSON. `hash` is set when it goes to the blob
    table (its text is longer than `INLINE_LIMIT`)."""

    text: str
    hash: str | None


def encode_value(value: Any, what: str | Callable[[], str]) -> Encoded:
    """Canonical JSON of `value`, with its blob hash if it is too large to inline.

    `what` names the value in errors, e.g. "the result of node 3f.. (tool search)"
    (or makes that name: a hot caller does not build it for every value).
    """
    if type(value) is Encoded:
        return value
    try:
        text = canonical_json(value)
    except (NotCanonicalError, ValueError, RecursionError) as exc:  # or a circular value
        name = what if isinstance(what, str) else what()
        raise JournalValueError(f"cannot journal {name}: {exc}") from None
    if len(text) <= INLINE_LIMIT:
        return Encoded(text, None)
    return Encoded(text, hashlib.sha256(text.encode("ascii")).hexdigest())


def decode_value(text: str | bytes) -> Any:
    """The value of canonical JSON text. Data only: never executes code.

    Only canonical JSON is ever written, so anything else means the journal was
    damaged or edited: a `JournalError`, never a decoder's own exception. (Its
    message cannot name the journal; the caller that knows it adds it.)
    """
    try:
        if type(text) is not str:
            if not isinstance(text, (bytes, bytearray, memoryview)):
                raise ValueError(f"a {type(text).__name__} where JSON text belongs")
            text = bytes(text).decode("utf-8")
        if text == "{}":  # the usual `extra` and argument-less intents
            return {}
        return _DECODE(text)
    except (ValueError, RecursionError) as exc:
        message = f"a stored value is not valid JSON ({exc}): damaged, or edited by hand"
        raise JournalError(message) from None


_DECODE = json.JSONDecoder().decode


def encoded_intent(intent: Intent) -> Intent:
    """The intent with its arguments already encoded (raises `JournalValueError` now)."""
    i = intent
    if type(i.arguments) is Encoded:  # the engine's: encoded once, with its key
        return i
    args = encode_value(i.arguments, f"the arguments of {node_name(i.key, i.tool)}")
    return Intent(i.run_id, i.key, i.tool, args, i.attempt, i.started_at, i.row_key)


def encoded_result(result: Result) -> Result:
    """The result with its value and extra already encoded (raises `JournalValueError` now)."""
    value, extra = result.value, result.extra
    if type(value) is Encoded and type(extra) is Encoded:
        return result
    where = node_name(result.key, result.tool)
    value = encode_value(value, f"the result of {where}")
    if type(extra) is not Encoded:
        extra = encode_value(dict(extra), f"the extra data of {where}")
    r = result
    return Result(
        r.run_id, r.key, r.ok, value, r.error, r.started_at, r.finished_at, r.tokens, extra,
        r.tool, r.row_key,
    )


def encoded_row(row: RowRecord) -> RowRecord:
    """The row record with its value already encoded (raises `JournalValueError` now)."""
    if type(row.value) is Encoded:
        return row
    value = encode_value(row.value, row_value_name(row))
    return RowRecord(
        row.run_id, row.row_key, row.ordinal, row.status, value, row.error, row.tokens,
        row.finished_at,
    )


def node_name(key: str, tool: str) -> str:
    return f"node {key} (tool {tool!r})" if tool else f"node {key}"


def row_value_name(row: RowRecord) -> str:
    return f"the value of row {row.row_key!r} (#{row.ordinal}) of run {row.run_id!r}"


def run_from_row(row: Sequence[Any]) -> RunRecord:
    """A RunRecord from (run_id, entry, arguments, status, code_version, created_at,
    updated_at, finished_at, tokens, error)."""
    return RunRecord(
        run_id=row[0],
        entry=row[1],
        arguments=decode_value(row[2]),
        status=row[3],
        code_version=row[4],
        created_at=row[5],
        updated_at=row[6],
        finished_at=row[7],
        tokens=row[8],
        error=row[9],
    )


def run_row(run: RunRecord) -> tuple:
    args = encode_value(run.arguments, f"the arguments of run {run.run_id!r}").text
    return (
        run.run_id,
        run.entry,
        args,
        run.status,
        run.code_version,
        float(run.created_at),
        float(run.updated_at),
        run.finished_at,
        int(run.tokens),
        run.error,
    )


def check_status(status: str | None) -> None:
    if status is not None and status not in RUN_STATUSES:
        raise ValueError(f"run status must be one of {sorted(RUN_STATUSES)}, got {status!r}")


# --- shared by the backends ----------------------------------------------------------


def build_state(
    run: RunRecord, intent_rows: Sequence[Sequence], result_rows: Sequence[Sequence], location: str
) -> JournalState:
    """A JournalState from rows of the two load queries (values as JSON text)."""
    intents, results = build_calls(run.run_id, intent_rows, result_rows, location)
    return JournalState(run, intents, results)


# Columns of the load queries, in the order `build_calls` reads them.
INTENT_COLUMNS = "i.key, i.tool, i.attempt, i.started_at, coalesce(i.arguments, b.data), i.row_key"
RESULT_COLUMNS = (
    "r.key, r.ok, coalesce(r.value, b.data), r.error, r.started_at, r.finished_at, r.tokens, "
    "r.extra"
)


def build_calls(
    run_id: str, intent_rows: Sequence[Sequence], result_rows: Sequence[Sequence], location: str
) -> tuple[dict[str, Intent], dict[str, Result]]:
    """Intents and results by key from rows in INTENT_COLUMNS / RESULT_COLUMNS order."""
    intents: dict[str, Intent] = {}
    for key, tool, attempt, started_at, args, row_key in intent_rows:
        if args is None:
            raise _missing_blob(location, run_id, key, "arguments")
        intents[key] = Intent(
            run_id, key, tool, decode_value(args), attempt, started_at, row_key or ""
        )
    results: dict[str, Result] = {}
    for key, ok, value, error, started_at, finished_at, tokens, extra in result_rows:
        if value is None:
            raise _missing_blob(location, run_id, key, "result")
        intent = intents.get(key)
        results[key] = Result(
            run_id,
            key,
            bool(ok),
            decode_value(value),
            error,
            started_at,
            finished_at,
            tokens,
            decode_value(extra),
            intent.tool if intent is not None else "",
            intent.row_key if intent is not None else "",
        )
    return intents, results


def _missing_blob(location: str, run_id: str, key: str, what: str) -> JournalError:
    return JournalError(
        f"journal {location} is damaged: the {what} of node {key} in run {run_id!r} "
        "refers to a blob that is missing"
    )


def refuse_done(run_id: str, dangling: list[str], location: str) -> None:
    if dangling:
        shown = ", ".join(dangling[:5]) + (", ..." if len(dangling) > 5 else "")
        raise JournalOrderError(
            f"run {run_id!r} cannot be marked done: calls started and never finished "
            f"(intent without result: {shown}) in journal {location}"
        )


def updated_run(
    old: RunRecord,
    status: str | None,
    tokens: int | None,
    error: str | None,
    finished_at: float | None,
) -> RunRecord:
    now = time.time()
    new_status = old.status if status is None else status
    new_error = old.error if error is None else error
    if new_status == "running":
        # Resuming: the run is no longer finished; an old error no longer applies.
        finished = None
        if status == "running" and error is None:
            new_error = None
    elif finished_at is not None:
        finished = finished_at
    elif old.status == "running" or old.finished_at is None:
        finished = now
    else:
        finished = old.finished_at
    return RunRecord(
        run_id=old.run_id,
        entry=old.entry,
        arguments=old.arguments,
        status=new_status,  # type: ignore[arg-type]
        code_version=old.code_version,
        created_at=old.created_at,
        updated_at=now,
        finished_at=finished,
        tokens=old.tokens if tokens is None else int(tokens),
        error=new_error,
    )


# --- leases: shared by the backends ---------------------------------------------------

LEASE_COLUMNS = "run_id, owner, host, pid, epoch, ttl, acquired_at, heartbeat_at"


def lease_from_row(row: Sequence[Any], now: float) -> Lease:
    """A Lease from a row in LEASE_COLUMNS order; `now` by the journal's clock."""
    return Lease(
        row[0], row[1], row[2], int(row[3]), int(row[4]), float(row[5]), float(row[6]),
        float(row[7]), max(0.0, now - float(row[7])),
    )


def next_epoch(stored: Lease | None, owner: str, location: str) -> int:
    """The epoch of a new lease over the `stored` row (an owner "" is a released
    lease), or `RunOwnedError` while another owner holds it alive."""
    if stored is None:
        return 1
    if stored.owner == owner:
        return stored.epoch  # the same hold, taken again
    if stored.owner and stored.alive():
        raise RunOwnedError(stored, location)
    return stored.epoch + 1


def check_lease(lease: Lease, stored: Lease | None, location: str) -> None:
    """Fencing: refuse a write unless `lease` is still the run's (same owner, same
    epoch). An expired lease nobody took over still holds: only a takeover fences."""
    if stored is None or stored.owner != lease.owner or stored.epoch != lease.epoch:
        current = stored if stored is not None and stored.owner else None
        raise StaleLeaseError(lease, location, current)


def check_ttl(ttl: float) -> float:
    ttl = float(ttl)
    if not ttl > 0:
        raise ValueError(f"a lease ttl must be > 0 seconds, got {ttl!r}")
    return ttl


# --- the protocol ---------------------------------------------------------------------


@runtime_checkable
class Journal(Protocol):
    """Where runs, intents, results, rows and blobs are kept. Blocking, thread-safe.

    Implementations: `SQLiteJournal` (default), `PostgresJournal`. Use
    `open_journal(spec)` to get one, and `JournalWriter` to call it from asyncio.
    """

    location: str
    """Where the journal is, for messages (a path, or a DSN without password)."""

    def create_run(self, run: RunRecord) -> None:
        """Store a new run. A run id that exists already is a `JournalError`."""
        ...

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run, or None."""
        ...

    def list_runs(self, limit: int = 50, status: RunStatus | None = None) -> list[RunRecord]:
        """Newest first (by `created_at`, then run id)."""
        ...

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus | None = None,
        tokens: int | None = None,
        error: str | None = None,
        finished_at: float | None = None,
        lease: Lease | None = None,
    ) -> RunRecord:
        """Change a run; returns it as stored. Marking it "done" while a call has an
        intent and no result is a `JournalOrderError`, unless the call belongs to a
        dataset row that has its record (a failed row's cancelled calls). Leaving "running" sets
        `finished_at` (now, unless given). Missing run: `RunNotFoundError`.
        With `lease`: refused (`StaleLeaseError`) unless it is still the run's."""
        ...

    def write(
        self,
        intents: Sequence[Intent] = (),
        results: Sequence[Result] = (),
        rows: Sequence[RowRecord] = (),
        *,
        lease: Lease | None = None,
    ) -> None:
        """Store intents, then results, then row records, in ONE transaction: all or
        nothing, durable when this returns. Order is enforced (`JournalOrderError`):
        a result needs its intent (earlier or in this call), is written once, and
        names no other row than its intent's; an intent for a node that has a
        result, or for a run that is not running, is refused. Writing a second
        intent for a node without a result replaces the first (a retry or a
        resumed in-doubt call); so does a second record for a row (a failed row
        retried). With `lease` (the owner's writes): refused whole
        (`StaleLeaseError`) unless the lease of `lease.run_id` is still this one,
        checked in the same transaction."""
        ...

    def row_status(self, run_id: str, row_keys: Sequence[str]) -> dict[str, str]:
        """Where each of `row_keys` stands, by one indexed query: "done", "dropped"
        or "failed" (its row record), "started" (no record, but a call of the row
        has an intent), absent from the dict: never started. Meant for chunks
        (thousands of keys), so a resumed job never loads the whole run."""
        ...

    def load_row(self, run_id: str, row_key: str) -> tuple[dict[str, Intent], dict[str, Result]]:
        """The intents and results (values decoded) of one row's calls, by key."""
        ...

    def iter_rows(
        self, run_id: str, *, status: RowStatus | None = None, after: int = -1, limit: int = 1000
    ) -> list[RowRecord]:
        """One page of row records (values decoded): ordinal > `after`, by ordinal,
        at most `limit`, only `status` when given. The next page starts after the
        last ordinal of this one (ordinals are positions: one row each)."""
        ...

    def count_rows(self, run_id: str) -> dict[str, int]:
        """{"done": n, "dropped": n, "failed": n}: the run's row records by status."""
        ...

    def acquire(
        self,
        run_id: str,
        *,
        ttl: float,
        owner: str | None = None,
        host: str | None = None,
        pid: int | None = None,
    ) -> Lease:
        """Take ownership of `run_id` (the run need not exist yet), atomically: when
        nobody holds it, it was released, its heartbeat is older than its ttl, or
        its owner is on this host and its process is gone. A takeover bumps the
        epoch. Otherwise `RunOwnedError` naming the owner. `owner` defaults to a
        fresh token; `host`/`pid` to this process's."""
        ...

    def get_lease(self, run_id: str) -> Lease | None:
        """The run's lease, or None when nobody holds it (never taken, or released)."""
        ...

    def heartbeat(self, lease: Lease) -> Lease:
        """Refresh the lease; `StaleLeaseError` if it is no longer the run's."""
        ...

    def release(self, lease: Lease) -> bool:
        """Give the run up (the epoch is kept). False when `lease` was no longer
        the run's: nothing is changed then."""
        ...

    def load(self, run_id: str) -> JournalState:
        """The run and all its intents and results, values decoded."""
        ...

    def get_blob(self, hash: str) -> bytes:
        """The canonical JSON bytes stored under `hash`. Missing: `JournalError`."""
        ...

    def close(self) -> None:
        """Release the connection. Idempotent."""
        ...
