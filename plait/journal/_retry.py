"""The bound on retrying a journal's transient failures, and one retrying call.

The writer retries the run's intents and results (see `_writer`); a run's start
(opening the journal, taking its lease, reading or creating it) and its end
(marking it) go through `retrying`, under the same bound, so a dropped
connection or a lock held for a moment at those instants is ridden out, not
reported.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import TypeVar

from plait.journal._protocol import JournalError, JournalTransientError

RETRY_FOR = 4.0  # seconds a transient failure is retried before it is an error
RETRY_ENV = "PLAIT_JOURNAL_RETRY_SECONDS"  # overrides RETRY_FOR everywhere
FIRST_DELAY, MAX_DELAY = 0.05, 1.0

_T = TypeVar("_T")


def retry_bound() -> float:
    """Seconds to retry a transient failure: $PLAIT_JOURNAL_RETRY_SECONDS or RETRY_FOR."""
    text = os.environ.get(RETRY_ENV)
    if not text:
        return RETRY_FOR
    try:
        seconds = float(text)
    except ValueError:
        raise JournalError(f"{RETRY_ENV}={text!r} is not a number of seconds") from None
    if not seconds >= 0:
        raise JournalError(f"{RETRY_ENV}={text!r}: seconds must be >= 0")
    return seconds


def retrying(call: Callable[[], _T]) -> _T:
    """`call()` (blocking), its `JournalTransientError`s retried with jittered backoff
    for at most `retry_bound()` seconds; then the last one is raised. Only for calls
    that are safe to repeat: reads, and writes whose repeat the caller can tell from
    the first (a lease under the same owner token, a run that exists)."""
    deadline: float | None = None
    delay = FIRST_DELAY
    while True:
        try:
            return call()
        except JournalTransientError:
            now = time.monotonic()
            if deadline is None:
                deadline = now + retry_bound()
            if now >= deadline:
                raise
            time.sleep(min(deadline - now, delay * random.uniform(0.5, 1.0)))
            delay = min(delay * 2, MAX_DELAY)
