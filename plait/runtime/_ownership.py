"""One owner per run: take the run's lease, keep it alive, give it up.

A run holds a lease in its journal while it runs (see `Journal.acquire`). The
heartbeat runs in a daemon thread, not an asyncio task: a sync tool or a slow
callback that blocks the event loop must not cost the run its lease. Every write
of the owner carries the lease and is fenced by the journal, so once another
process has taken the run over nothing more of ours is stored; the keeper's
job is to notice that promptly and stop the run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from plait.journal import Journal, JournalError, Lease, RunOwnedError, StaleLeaseError
from plait.journal._protocol import ABANDONED, new_owner
from plait.journal._retry import retrying

DEFAULT_LEASE_TTL = 15.0  # seconds without a heartbeat before another process may take over
_POLL = 0.2  # seconds between tries while waiting for a live owner


async def take(journal: Journal, run_id: str, *, ttl: float, wait: float = 0.0) -> Lease:
    """The run's lease; `RunOwnedError` if a live owner holds it for `wait` seconds more."""
    deadline = time.monotonic() + max(0.0, wait)
    # One owner token for every try: a try whose commit landed before its connection
    # was lost is then found as our own hold, not as another live owner.
    owner = new_owner()

    def acquire() -> Lease:
        return retrying(lambda: journal.acquire(run_id, ttl=ttl, owner=owner))

    while True:
        try:
            return await asyncio.to_thread(acquire)
        except RunOwnedError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            await asyncio.sleep(min(left, _POLL))


def release(journal: Journal, keeper: Keeper, *, attempt: bool = True) -> None:
    """Stop the keeper, then give the run up (with `attempt=False`, after the journal
    failed the run, without touching the journal). A release that fails is not an error
    of the run: its lease then expires by itself after its ttl (or is taken over
    at once on this host, by this process or once this process has exited)."""
    keeper.stop()
    if keeper.lost is None and not attempt:
        ABANDONED.add(keeper.lease.owner)
    elif keeper.lost is None:
        try:
            # Not retried: a run's end must not wait on a journal that already
            # failed it, and a lease left behind costs nothing but its ttl.
            journal.release(keeper.lease)
        except JournalError:
            ABANDONED.add(keeper.lease.owner)


class Keeper:
    """Heartbeats `lease` every ttl/3 from a daemon thread until `stop`.

    A heartbeat that finds the lease gone (`StaleLeaseError`) is final: it is
    kept in `lost`, `on_lost` is called once (from the thread) and the keeper
    ends. Other journal errors (a dropped connection, a busy lock) are retried at
    the next beat: the lease survives them as long as one beat per ttl gets through.
    """

    def __init__(self, journal: Journal, lease: Lease, on_lost: Callable[[], None]) -> None:
        self.journal = journal
        self.lease = lease
        self.lost: StaleLeaseError | None = None
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"plait-lease-{lease.run_id}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        interval = self.lease.ttl / 3
        while not self._stop.wait(interval):
            try:
                self.lease = self.journal.heartbeat(self.lease)
            except StaleLeaseError as exc:
                self.lost = exc
                self._on_lost()
                return
            except JournalError:
                continue  # transient, or the journal is closing: the next beat tells

    def stop(self) -> None:
        """Stop heartbeating; returns once no heartbeat is in flight. Idempotent."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
