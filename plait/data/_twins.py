"""Twins a process could not see: rows whose key a row of another process ran.

Keys must be unique. A process refuses a row whose key a row it read before has,
as it reads it (`Job._read`). Two kinds of twin escape that, and both are found
once every row of the job has ended:

* a sharded job's twin in another shard (each shard is a process of its own);
* a resumed job's twin of a row the first process finished: the resumed process
  skips a finished key as that row, so a twin the first process never reached
  would be skipped unsaid.

The journal then holds fewer row records than the source has rows, and the
ordinals it lacks are the twins: each is recorded failed under "#ordinal", as a
process records its own twins. That reading holds only on the data the job
started with: a resumed job whose source has changed (a key column lets it) has
other ordinals, so it is not checked (`plait/data/_map.py`).
"""

from __future__ import annotations

from plait.data._rows import Job, Row, RowError
from plait.journal import Journal, RowRecord
from plait.journal._retry import retrying


def find(journal: Journal, run_id: str, total: int) -> list[int]:
    """The ordinals below `total` with no row record. One count; when it is short,
    one pass over the records (never the rows). Blocking."""
    if sum(retrying(lambda: journal.count_rows(run_id)).values()) >= total:
        return []
    seen = bytearray(total)
    after = -1
    while True:
        page = retrying(lambda: journal.iter_rows(run_id, after=after, limit=10_000))
        if not page:
            break
        for record in page:
            if 0 <= record.ordinal < total:
                seen[record.ordinal] = 1
        after = page[-1].ordinal
    return [i for i in range(total) if not seen[i]]


def refuse(job: Job, ordinals: list[int], max_failed_rows: int | None) -> tuple[
        list[Row], RowError | None]:
    """Record the twins at `ordinals` failed (queued on the job's writer) and count
    them; the rows, and the error that stops the job if they do (`on_row_error=
    "stop"`, or more failed rows in the journal than `max_failed_rows`). Blocking."""
    if not ordinals:
        return [], None
    assert job.durable is not None
    writer, journal, run_id = job.durable.writer, job.durable.journal, job.run_id
    rows = [Row(i, f"#{i}", "failed", error=f"row {i} has the key of another row of the "
                "source, which ran in its place: keys must be unique") for i in ordinals]
    failed_before = retrying(lambda: journal.count_rows(run_id)).get("failed", 0)
    for row in rows:
        writer.row(RowRecord(run_id, row.key, row.ordinal, "failed", None, row.error))
    job.counts.failed += len(rows)
    if job.on_row_error == "stop":
        return rows, RowError(f"row {rows[0].ordinal} failed: {rows[0].error}", rows[0])
    failed = failed_before + len(rows)
    if max_failed_rows is not None and failed > max_failed_rows:
        return rows, RowError(f"{failed} rows failed, more than max_failed_rows="
                              f"{max_failed_rows}", rows[0])
    return rows, None
