"""One bounded connection pool per PostgreSQL server and schema, shared by every
`PostgresJournal` of the process.

A question opens its journal by DSN and closes it when it ends, so a process
answering 1,000 questions at once holds 1,000 journals of one DSN. They share
one `psycopg_pool.ConnectionPool` of at most ``pool_max`` connections (default
10): the server's ``max_connections`` (100 by default) is never the limit.
The pool is made, and the schema migrated, by the first journal of its key; it
is closed when the last one closes, and at interpreter exit.

Waiting for a connection is bounded: ``pool_timeout`` (default 30 s) when every
connection is busy; about a second after a failed connect when the server cannot
be reached (the pool connects in its own threads; a failed connect is noted here
so a waiting caller learns of it and reports the server's own message).

Callers queue for one of ``pool_max`` tickets first, first come first served,
and only a ticket holder asks the pool: the pool's own queue is left by a
caller that looks for a failed connect (every second), and rejoining at its end
starved callers past ``pool_timeout`` with 1,000 questions at once.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plait.journal._protocol import JournalError, JournalTransientError

__all__ = ["POOL_MAX_ENV", "POOL_TIMEOUT_ENV", "PoolKey", "SharedPool", "acquire", "pool_options"]

POOL_MAX_ENV = "PLAIT_PG_POOL_MAX"
POOL_TIMEOUT_ENV = "PLAIT_PG_POOL_TIMEOUT"
DEFAULT_POOL_MAX = 10
DEFAULT_POOL_TIMEOUT = 30.0
# How often a waiting caller looks whether the pool's connect attempts fail. A
# re-wait goes to the back of the pool's queue, so it must be rare: a second.
_FAILURE_POLL = 1.0

# The pool logs every failed connect and discarded connection as a warning, which
# Python's last-resort handler would print on the CLI's stderr. Those failures
# reach the caller as JournalErrors; an application that configures logging
# still gets the records.
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())


@dataclass(frozen=True, slots=True)
class PoolKey:
    """What makes two journals share a pool: the same server, options and schema."""

    conninfo: str
    kwargs: tuple[tuple[str, Any], ...]
    schema: str
    max_size: int
    timeout: float


def pool_options(query: dict[str, str]) -> tuple[int, float]:
    """``pool_max`` and ``pool_timeout`` from a DSN's query (taken out of it), else
    from the environment, else the defaults. Raises JournalError for a bad value."""
    size = _option(query, "pool_max", POOL_MAX_ENV, DEFAULT_POOL_MAX, int)
    wait = _option(query, "pool_timeout", POOL_TIMEOUT_ENV, DEFAULT_POOL_TIMEOUT, float)
    if size < 1 or not wait > 0:
        raise JournalError(
            f"invalid journal pool setting: pool_max={size}, pool_timeout={wait} "
            "(pool_max must be >= 1 and pool_timeout > 0 seconds)"
        )
    return size, wait


def _option(query: dict[str, str], name: str, env: str, default: Any, kind: type) -> Any:
    text = query.pop(name, None)
    where = f"?{name}= in the journal URL"
    if text is None:
        text, where = os.environ.get(env), f"${env}"
    if text is None or text == "":
        return default
    try:
        return kind(text)
    except ValueError:
        raise JournalError(f"invalid {where}: {text!r} is not a number") from None


class _Waiter:
    """A caller queued for a ticket: woken when given one, or when a connect failed."""

    __slots__ = ("granted", "woken")

    def __init__(self) -> None:
        self.granted = False
        self.woken = threading.Event()


class SharedPool:
    """A pool and the journals using it. Connections are autocommit; every use
    takes one with `get` and gives it back with `put`."""

    def __init__(self, key: PoolKey, location: str, clean: Callable[[str], str]):
        from psycopg import Connection
        from psycopg_pool import ConnectionPool

        self.key = key
        self.location = location
        self.users = 0
        self.ready = False  # migrated
        self.setup_lock = threading.Lock()
        # The last failed connect (monotonic time, message), cleared by a success.
        self._failure: tuple[float, str] | None = None
        # Tickets: one per connection the pool may hold; FIFO queue of waiters.
        self._gate = threading.Lock()
        self._tickets = key.max_size
        self._waiters: deque[_Waiter] = deque()
        shared = self

        class TrackedConnection(Connection):  # type: ignore[type-arg]
            @classmethod
            def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
                try:
                    conn = super().connect(conninfo, **kwargs)
                except Exception as exc:
                    shared._failure = (time.monotonic(), clean(str(exc)))
                    shared._wake_all()
                    raise
                shared._failure = None
                return conn

        connect_timeout = float(dict(key.kwargs).get("connect_timeout", 5))
        self.pool = ConnectionPool(
            key.conninfo,
            connection_class=TrackedConnection,
            kwargs=dict(key.kwargs),
            min_size=1,
            max_size=key.max_size,
            timeout=key.timeout,
            # A lost connection is replaced in the background, retried with
            # backoff for this long, then given up (and tried again on demand):
            # short, so a server back after an outage is used again soon.
            reconnect_timeout=max(10.0, 2 * connect_timeout),
            name=f"plait {location}",
            open=False,  # opened once set up: a journal that cannot be set up leaves
            # no connect attempts behind (closing waits for them)
        )

    def get(self, action: str) -> Any:
        """A connection, within ``pool_timeout``; a failed connect ends the wait."""
        from psycopg_pool import PoolClosed, PoolTimeout

        started = time.monotonic()
        deadline = started + self.key.timeout
        self._take_ticket(action, started, deadline)
        try:
            while True:
                try:
                    return self.pool.getconn(
                        timeout=max(0.01, min(_FAILURE_POLL, deadline - time.monotonic()))
                    )
                except PoolClosed:
                    raise JournalError(f"journal {self.location} is closed") from None
                except PoolTimeout:
                    pass
                self._check_wait(action, started, deadline)
        except BaseException:
            self._give_ticket()
            raise

    def put(self, conn: Any) -> None:
        """Give `conn` back; a broken one is discarded (the pool makes a new one)."""
        try:
            self.pool.putconn(conn)
        finally:
            self._give_ticket()

    def _check_wait(self, action: str, started: float, deadline: float) -> None:
        failure = self._failure
        # Only a connect that failed while this call waited: an older failure may
        # be from before the server came back.
        if failure is not None and failure[0] >= started:
            raise JournalTransientError(
                f"cannot {action} in journal {self.location}: cannot connect: "
                f"{failure[1].rstrip('.?')}. Check that the server is up and reachable."
            ) from None
        if time.monotonic() >= deadline:
            raise JournalTransientError(
                f"cannot {action} in journal {self.location}: no connection of its pool "
                f"(at most {self.key.max_size}) became free within {self.key.timeout:g} s. "
                "Raise ?pool_max= in the URL (or $PLAIT_PG_POOL_MAX), or "
                "?pool_timeout= ($PLAIT_PG_POOL_TIMEOUT)."
            ) from None

    def _take_ticket(self, action: str, started: float, deadline: float) -> None:
        with self._gate:
            if self._tickets > 0 and not self._waiters:
                self._tickets -= 1
                return
            waiter = _Waiter()
            self._waiters.append(waiter)
        while True:
            waiter.woken.wait(max(0.0, deadline - time.monotonic()))
            with self._gate:
                if waiter.granted:
                    return
                waiter.woken.clear()
                try:
                    self._check_wait(action, started, deadline)
                except BaseException:
                    self._waiters.remove(waiter)
                    raise

    def _give_ticket(self) -> None:
        with self._gate:
            if self._waiters:
                waiter = self._waiters.popleft()  # handed over, first come first served
                waiter.granted = True
                waiter.woken.set()
            else:
                self._tickets += 1

    def _wake_all(self) -> None:
        """A connect failed: every waiter looks whether to give up."""
        with self._gate:
            for waiter in self._waiters:
                waiter.woken.set()

    def purge(self) -> None:
        """After a connection was lost: test the idle ones, dropping the dead (a
        server restart kills them all), so the next call gets a live one."""
        with contextlib.suppress(Exception):  # the pool closed meanwhile: nothing to purge
            self.pool.check()

    def close(self) -> None:
        self.pool.close(timeout=5.0)


_LOCK = threading.Lock()
_POOLS: dict[PoolKey, SharedPool] = {}


def acquire(
    key: PoolKey, location: str, clean: Callable[[str], str], setup: Callable[[], None]
) -> SharedPool:
    """The pool of `key`, made if needed, counted as used once more. `setup` (the
    migrations) runs once per pool, before any journal uses it; if it fails, the
    use is released and the next journal of the key tries again."""
    with _LOCK:
        shared = _POOLS.get(key)
        if shared is None:
            shared = _POOLS[key] = SharedPool(key, location, clean)
        shared.users += 1
    try:
        with shared.setup_lock:
            if not shared.ready:
                setup()
                shared.pool.open()
                shared.ready = True
    except BaseException:
        release(shared)
        raise
    return shared


def release(shared: SharedPool) -> None:
    """One use fewer; the last one closes the pool."""
    with _LOCK:
        shared.users -= 1
        if shared.users > 0:
            return
        if _POOLS.get(shared.key) is shared:
            del _POOLS[shared.key]
    shared.close()


def open_pools() -> list[SharedPool]:
    """The pools open now (for tests and benchmarks)."""
    with _LOCK:
        return list(_POOLS.values())


@atexit.register
def _close_all() -> None:
    with _LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for shared in pools:
        shared.close()
