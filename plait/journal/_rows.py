"""Rows of dataset jobs: what the backends share to read them.

A dataset job is one run whose rows each run the workflow as a small graph. Each
row's calls are ordinary intents and results carrying the row's key (the intent
holds it, indexed); the row's outcome is one record in the `rows` table, written
in the transaction of the row's last result, so a row is "done" exactly when
everything it depends on is durable. A resumed job asks `row_status` for chunks
of keys instead of loading the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from plait.journal._protocol import (
    ROW_STATUSES,
    JournalError,
    RowRecord,
    bad_row_key,
    decode_value,
)

__all__ = [
    "ROW_COLUMNS",
    "check_page",
    "check_row_status",
    "row_counts",
    "row_from_db",
    "row_keys_list",
]

# Columns of a rows query (`r` the rows table, `b` its value's blob), as
# `row_from_db` reads them.
ROW_COLUMNS = (
    "r.row_key, r.ordinal, r.status, coalesce(r.value, b.data), r.value_hash, r.error, "
    "r.tokens, r.finished_at"
)


def row_from_db(run_id: str, row: Sequence[Any], location: str) -> RowRecord:
    row_key, ordinal, status, value, value_hash, error, tokens, finished_at = row
    if value is None:
        raise JournalError(
            f"journal {location} is damaged: the value of row {row_key!r} in run "
            f"{run_id!r} refers to a blob ({value_hash}) that is missing"
        )
    return RowRecord(
        run_id, row_key, int(ordinal), status, decode_value(value), error, int(tokens),
        float(finished_at),
    )


def row_keys_list(row_keys: Sequence[str]) -> list[str]:
    """The keys of a `row_status` call as a list, refusing a lone string (which
    would be read as its characters)."""
    if isinstance(row_keys, (str, bytes)):
        raise TypeError(
            f"row_keys must be a sequence of row keys, not one {type(row_keys).__name__}: "
            f"pass [{row_keys!r}]"
        )
    keys = list(row_keys)
    # One pass in C for the usual case; the slow search only to name a bad key.
    try:
        joined = "\n".join(keys)
        joined.encode("utf-8")
        fine = "\x00" not in joined and "" not in keys
    except (TypeError, UnicodeEncodeError):
        fine = False
    if not fine:
        for k in keys:
            why = bad_row_key(k)
            if why:
                raise ValueError(f"row key {k!r} cannot be looked up: {why}")
    return keys


def check_row_status(status: str | None) -> None:
    if status is not None and status not in ROW_STATUSES:
        raise ValueError(f"row status must be one of {sorted(ROW_STATUSES)}, got {status!r}")


def row_counts(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    counts = dict.fromkeys(("done", "dropped", "failed"), 0)
    for status, n in pairs:
        counts[status] = int(n)
    return counts


def check_page(after: int, limit: int) -> tuple[int, int]:
    if type(after) is not int or type(limit) is not int or limit < 0:
        raise ValueError(
            f"iter_rows pages by ordinal: after is an int (-1 for the first page) and "
            f"limit an int >= 0, got after={after!r}, limit={limit!r}"
        )
    return after, limit
