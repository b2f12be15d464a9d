"""What `Journal.write` does before and around its SQL, the same for every backend:
encode one call's records into rows (tuples in column order, ready for
executemany/unnest) and check the write order."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from plait.journal._protocol import (
    Encoded,
    Intent,
    JournalOrderError,
    Result,
    RowRecord,
    RunNotFoundError,
    encode_value,
    node_name,
    row_value_name,
)

_BY_KEY = operator.itemgetter(0, 1)  # (run_id, key) of a record's row

__all__ = ["Batch", "check_no_result", "check_results", "check_runs", "prepare_batch"]


@dataclass(slots=True)
class Batch:
    """One `write` call, encoded and checked for order problems within itself.

    Records are plain tuples in column order, ready for executemany/unnest
    (`row_rows`: the row records of dataset jobs).
    """

    run_ids: list[str]
    intent_runs: set[str]
    intent_rows: list[tuple]
    result_rows: list[tuple]
    row_rows: list[tuple]
    blobs: dict[str, str]
    # (run_id, key) pairs that results claim; checked against the database.
    result_keys: list[tuple[str, str]]
    intent_keys: list[tuple[str, str]]
    # The row a result says it belongs to, where it says one: its intent must agree.
    result_row_keys: dict[tuple[str, str], str]


def prepare_batch(
    intents: Iterable[Intent],
    results: Iterable[Result],
    rows: Iterable[RowRecord] = (),
    *,
    null: str | None = None,
) -> Batch:
    """`null` stands for SQL NULL in the columns of values, hashes and row keys
    (never empty text when set). SQLite passes "" and maps it back with nullif: its
    driver binds None through its adapter look-up, several times the cost of text."""
    blobs: dict[str, str] = {}
    intent_rows: dict[tuple[str, str], tuple] = {}  # last intent for a key wins
    runs: dict[str, None] = {}
    intent_runs: set[str] = set()
    for it in intents:
        enc = it.arguments  # a writer's records come encoded; name them only otherwise
        if type(enc) is not Encoded:
            enc = encode_value(enc, f"the arguments of {node_name(it.key, it.tool)}")
        if enc.hash is not None:
            blobs[enc.hash] = enc.text
        runs[it.run_id] = None
        intent_runs.add(it.run_id)
        intent_rows[(it.run_id, it.key)] = (
            it.run_id,
            it.key,
            it.tool,
            int(it.attempt),
            float(it.started_at),
            null if enc.hash else enc.text,
            enc.hash or null,
            # NULL, not "": the row index holds only the calls of dataset rows.
            it.row_key or null,
        )
    result_rows: list[tuple] = []
    result_row_keys: dict[tuple[str, str], str] = {}
    seen: set[tuple[str, str]] = set()
    for r in results:
        pair = (r.run_id, r.key)
        if pair in seen:
            raise JournalOrderError(
                f"two results for {node_name(r.key, r.tool)} of run {r.run_id!r} in one write"
            )
        seen.add(pair)
        if r.row_key:
            result_row_keys[pair] = r.row_key
        enc = r.value
        if type(enc) is not Encoded:
            enc = encode_value(enc, f"the result of {node_name(r.key, r.tool)}")
        if enc.hash is not None:
            blobs[enc.hash] = enc.text
        extra = r.extra
        if type(extra) is not Encoded:
            extra = encode_value(dict(extra), f"the extra data of {node_name(r.key, r.tool)}")
        runs[r.run_id] = None
        result_rows.append(
            (
                r.run_id,
                r.key,
                bool(r.ok),
                null if enc.hash else enc.text,
                enc.hash or null,
                r.error,
                float(r.started_at),
                float(r.finished_at),
                int(r.tokens),
                extra.text,
            )
        )
    row_rows: dict[tuple[str, str], tuple] = {}  # last record for a row wins
    for row in rows:
        if type(row) is not RowRecord:
            raise TypeError(f"rows must be RowRecord objects, got {type(row).__name__}")
        enc = row.value
        if type(enc) is not Encoded:
            enc = encode_value(enc, row_value_name(row))
        if enc.hash is not None:
            blobs[enc.hash] = enc.text
        runs[row.run_id] = None
        row_rows[(row.run_id, row.row_key)] = (
            row.run_id,
            row.row_key,
            row.ordinal,
            row.status,
            null if enc.hash else enc.text,
            enc.hash or null,
            row.error,
            int(row.tokens),
            float(row.finished_at),
        )
    # Rows in key order: concurrent transactions then take row locks in the same
    # order and cannot deadlock on overlapping keys (PostgreSQL).
    result_rows.sort(key=_BY_KEY)
    ordered = sorted(intent_rows)
    return Batch(
        run_ids=sorted(runs),
        intent_runs=intent_runs,
        intent_rows=[intent_rows[k] for k in ordered],
        result_rows=result_rows,
        row_rows=[row_rows[k] for k in sorted(row_rows)],
        blobs=dict(sorted(blobs.items())),
        result_keys=[(row[0], row[1]) for row in result_rows],
        intent_keys=ordered,
        result_row_keys=result_row_keys,
    )


# A row's record replaces the record of its key (a failed row retried, a row in
# flight at a crash) but for one case: a failed row never replaces a done one of
# another position. Two rows of one key (twins, which keys must not have) in two
# processes (shards) may both end; if the later one failed, the one that succeeded
# keeps its record, and the failed one, left with none, is found a twin at the
# job's end (plait/data/_twins.py). The existing record is `rows` in both SQL
# dialects (the table's own name in an upsert's WHERE).
ROW_UPSERT = (
    "ON CONFLICT (run_id, row_key) DO UPDATE SET ordinal = excluded.ordinal, "
    "status = excluded.status, value = excluded.value, value_hash = excluded.value_hash, "
    "error = excluded.error, tokens = excluded.tokens, finished_at = excluded.finished_at "
    "WHERE NOT (rows.status = 'done' AND excluded.status = 'failed' "
    "AND rows.ordinal <> excluded.ordinal)"
)


def check_runs(batch: Batch, statuses: Mapping[str, str], location: str) -> None:
    """Every run in the batch exists; intents only go to running runs."""
    for run_id in batch.run_ids:
        status = statuses.get(run_id)
        if status is None:
            raise RunNotFoundError(run_id, location)
        if run_id in batch.intent_runs and status != "running":
            raise JournalOrderError(
                f"run {run_id!r} is {status}: no new calls may start in it (journal {location})"
            )


def check_no_result(finished: Iterable[tuple[str, str]], location: str) -> None:
    """Intents for nodes that already have a successful result: a finished call never
    runs again (a failed one may)."""
    for run_id, key in finished:
        raise JournalOrderError(
            f"node {key} of run {run_id!r} already has a result; a finished call is "
            f"never started again (journal {location})"
        )


def check_results(
    batch: Batch,
    started: Mapping[tuple[str, str], str | None],
    finished: set[tuple[str, str]],
    location: str,
) -> None:
    """Each result has its intent, is the node's first result, and names no other
    row than its intent's. `started` maps the pairs that have an intent to the
    intent's row key (None or "" for a plain run's call)."""
    for pair in batch.result_keys:
        if pair in finished:
            raise JournalOrderError(
                f"node {pair[1]} of run {pair[0]!r} already has a result (journal {location})"
            )
        if pair not in started:
            raise JournalOrderError(
                f"result for node {pair[1]} of run {pair[0]!r} without its intent: an "
                f"intent must be written before the call starts (journal {location})"
            )
    for pair, claimed in batch.result_row_keys.items():
        own = started[pair] or ""
        if claimed != own:
            theirs = f"row {own!r}" if own else "no row"
            raise JournalOrderError(
                f"the result for node {pair[1]} of run {pair[0]!r} says row {claimed!r}, "
                f"its intent says {theirs}: a result belongs to its intent's row "
                f"(journal {location})"
            )
