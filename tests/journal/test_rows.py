"""Rows of dataset jobs in the journal: every backend (sqlite, postgres) passes all
of these. A dataset job is one run; each row's calls are intents and results
carrying the row's key, and each row's outcome is one `RowRecord`."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import pytest

from plait.journal import (
    INLINE_LIMIT,
    Intent,
    Journal,
    JournalError,
    JournalOrderError,
    JournalValueError,
    JournalWriter,
    Result,
    RowRecord,
    RunNotFoundError,
    RunRecord,
    StaleLeaseError,
)

from .conftest import Store
from .test_contract import _dead_pid


def new_run(journal: Journal) -> str:
    run_id = f"job-{uuid.uuid4().hex[:10]}"
    journal.create_run(RunRecord(run_id, "job"))
    return run_id


def row_calls(run_id: str, row: str, n: int = 3, value: Any = None) -> tuple[list, list]:
    """`n` intents and results of one row (node keys scoped by the row, as the
    coordinator makes them)."""
    intents = [Intent(run_id, f"{row}/{j}", f"t{j}", {"row": row, "j": j}, row_key=row)
               for j in range(n)]
    results = [Result(run_id, f"{row}/{j}", True, value if value is not None else [row, j],
                      tokens=j, tool=f"t{j}", row_key=row) for j in range(n)]
    return intents, results


def done(run_id: str, row: str, ordinal: int, value: Any = None, **kw: Any) -> RowRecord:
    return RowRecord(run_id, row, ordinal, "done", value if value is not None else {"out": row},
                     **kw)


# --- writing and row_status ---------------------------------------------------------


def test_row_status_of_every_kind(journal: Journal) -> None:
    run_id = new_run(journal)
    i, r = row_calls(run_id, "r-done")
    journal.write(i, r, [done(run_id, "r-done", 0, tokens=3, finished_at=5.0)])
    i, r = row_calls(run_id, "r-dropped", 1)
    journal.write(i, r, [RowRecord(run_id, "r-dropped", 1, "dropped")])
    i, _ = row_calls(run_id, "r-failed", 2)
    journal.write(i, [Result(run_id, "r-failed/0", True, 1),
                      Result(run_id, "r-failed/1", False, error="ValueError: no")])
    journal.write(rows=[RowRecord(run_id, "r-failed", 2, "failed",
                                  error="node $1 (t1): ValueError: no")])
    i, r = row_calls(run_id, "r-started", 2)
    journal.write(i, r[:1])  # one call finished, one in flight, no row record
    journal.write([Intent(run_id, "plain", "t")])  # a plain node: no row
    other = new_run(journal)
    journal.write(*row_calls(other, "r-absent", 1), [done(other, "r-absent", 0)])

    keys = ["r-done", "r-dropped", "r-failed", "r-started", "r-absent", "plain", "r-done"]
    assert journal.row_status(run_id, keys) == {
        "r-done": "done",
        "r-dropped": "dropped",
        "r-failed": "failed",
        "r-started": "started",
    }
    assert journal.row_status(other, keys) == {"r-absent": "done"}
    assert journal.row_status(run_id, []) == {}
    assert journal.row_status("no-such-run", keys) == {}
    with pytest.raises(TypeError, match=r"not one str: pass \['r-done'\]"):
        journal.row_status(run_id, "r-done")
    with pytest.raises(ValueError, match="non-empty"):
        journal.row_status(run_id, ["ok", ""])
    with pytest.raises(ValueError, match="NUL"):
        journal.row_status(run_id, ["a\x00b"])
    assert journal.count_rows(run_id) == {"done": 1, "dropped": 1, "failed": 1}
    # Plain runs are untouched: load still has every call, row keys included.
    state = journal.load(run_id)
    assert state.intents["r-done/0"].row_key == "r-done"
    assert state.results["r-done/2"].row_key == "r-done"
    assert state.intents["plain"].row_key == ""
    assert set(state.in_doubt) == {"r-started/1", "plain"}


def test_row_keys_of_any_text(journal: Journal) -> None:
    run_id = new_run(journal)
    keys = ['{"id":7}', "ünï 日本", "'; DROP TABLE rows; --", "x" * 5000, '["a",1]']
    journal.write(rows=[RowRecord(run_id, k, n, "done", n) for n, k in enumerate(keys)])
    assert journal.row_status(run_id, [*keys, "other"]) == dict.fromkeys(keys, "done")
    assert [r.row_key for r in journal.iter_rows(run_id)] == keys


def test_a_failed_row_retried_becomes_done(journal: Journal) -> None:
    run_id = new_run(journal)
    i, _ = row_calls(run_id, "r", 2)
    journal.write(i, [Result(run_id, "r/0", True, "a"),
                      Result(run_id, "r/1", False, error="TimeoutError: slow")],
                  [RowRecord(run_id, "r", 4, "failed", error="node $1 (t1): TimeoutError: slow",
                             tokens=2, finished_at=1.0)])
    [failed] = journal.iter_rows(run_id)
    assert (failed.status, failed.error, failed.value, failed.tokens) == (
        "failed", "node $1 (t1): TimeoutError: slow", None, 2)
    # `--retry-failed`: the failed call starts again (its failed result gives way),
    # finishes, and the row's new record replaces the old one.
    journal.write([Intent(run_id, "r/1", "t1", {"row": "r", "j": 1}, attempt=2, row_key="r")])
    assert journal.row_status(run_id, ["r"]) == {"r": "failed"}
    journal.write([], [Result(run_id, "r/1", True, "b", row_key="r")],
                  [RowRecord(run_id, "r", 4, "done", {"v": ["a", "b"]}, tokens=5, finished_at=2.0)])
    assert journal.row_status(run_id, ["r"]) == {"r": "done"}
    assert journal.iter_rows(run_id) == [
        RowRecord(run_id, "r", 4, "done", {"v": ["a", "b"]}, None, 5, 2.0)
    ]
    assert journal.count_rows(run_id) == {"done": 1, "dropped": 0, "failed": 0}
    _, results = journal.load_row(run_id, "r")
    assert {k: r.value for k, r in results.items()} == {"r/0": "a", "r/1": "b"}


def test_last_record_of_a_row_in_one_write_wins(journal: Journal, store: Store) -> None:
    run_id = new_run(journal)
    journal.write(rows=[RowRecord(run_id, "r", 0, "failed", error="E"),
                        RowRecord(run_id, "r", 0, "done", 1)])
    assert journal.row_status(run_id, ["r"]) == {"r": "done"}
    assert store.count("rows") == 1


def test_large_row_values_go_to_the_blob_table(journal: Journal, store: Store) -> None:
    run_id = new_run(journal)
    big = {"text": "lorem ipsum " * 500}
    # The row's value is its last result's value: one blob for both.
    i, r = row_calls(run_id, "a", 3, value=big)
    journal.write(i, r, [done(run_id, "a", 0, big)])
    at_limit = "x" * (INLINE_LIMIT - 2)  # its JSON has the two quotes
    journal.write(rows=[done(run_id, "b", 1, at_limit), done(run_id, "c", 2, "y" * 5000)])
    assert store.count("blobs") == 2
    rows = {r.row_key: r.value for r in journal.iter_rows(run_id)}
    assert rows == {"a": big, "b": at_limit, "c": "y" * 5000}


def test_load_row_has_that_row_only(journal: Journal) -> None:
    run_id = new_run(journal)
    big = "z" * 1000
    a_i, a_r = row_calls(run_id, "a", 3, value=big)
    b_i, b_r = row_calls(run_id, "b", 2)
    journal.write([*a_i, *b_i, Intent(run_id, "plain", "t")], [*a_r[:2], *b_r])
    other = new_run(journal)
    journal.write(*row_calls(other, "a", 1))
    intents, results = journal.load_row(run_id, "a")
    assert intents == {i.key: i for i in a_i}
    assert results == {r.key: r for r in a_r[:2]}  # a/2 is in flight: no result
    assert results["a/0"].value == big and results["a/1"].tool == "t1"
    assert journal.load_row(run_id, "b") == ({i.key: i for i in b_i}, {r.key: r for r in b_r})
    assert journal.load_row(run_id, "nope") == ({}, {})
    assert journal.load_row(run_id, "plain") == ({}, {})


def test_iter_rows_pages_by_ordinal(journal: Journal) -> None:
    run_id = new_run(journal)
    statuses = ["done", "dropped", "failed"]
    order = [17, 3, 9, 0, 24, 11, 5, 20, 1, 14, 8, 22, 2, 16, 6, 19, 12, 4, 23, 10, 7, 21, 13,
             18, 15]
    records = [RowRecord(run_id, f"k{o}", o, statuses[o % 3],
                         {"o": o} if o % 3 == 0 else None,
                         "E: x" if o % 3 == 2 else None, finished_at=float(o))
               for o in order]
    for start in range(0, len(records), 7):  # written in several transactions, out of order
        journal.write(rows=records[start:start + 7])
    by_ordinal = sorted(records, key=lambda r: r.ordinal)
    pages, after = [], -1
    while page := journal.iter_rows(run_id, after=after, limit=10):
        pages.append(page)
        after = page[-1].ordinal
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [r for p in pages for r in p] == by_ordinal
    failed = journal.iter_rows(run_id, status="failed", after=5, limit=3)
    assert [r.ordinal for r in failed] == [8, 11, 14]
    assert all(r.error == "E: x" and r.value is None for r in failed)
    assert [r.ordinal for r in journal.iter_rows(run_id, status="done")] == list(range(0, 25, 3))
    assert journal.iter_rows(run_id, after=24) == []
    assert journal.iter_rows(run_id, limit=0) == []
    assert journal.iter_rows("no-such-run") == []
    with pytest.raises(ValueError, match="row status"):
        journal.iter_rows(run_id, status="started")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="after is an int"):
        journal.iter_rows(run_id, after="k3")  # type: ignore[arg-type]
    assert journal.count_rows(run_id) == {"done": 9, "dropped": 8, "failed": 8}
    assert journal.count_rows("no-such-run") == {"done": 0, "dropped": 0, "failed": 0}


def test_a_job_is_done_when_its_rows_are_settled(journal: Journal) -> None:
    """A failed row's cancelled calls keep their intents without results; the row's
    record settles them, so the job may be marked done. A call in doubt in a row
    without a record, or outside rows, still forbids it."""
    run_id = new_run(journal)
    i, r = row_calls(run_id, "failed-row", 3)
    journal.write(i, [r[0], Result(run_id, "failed-row/1", False, error="E: x")])
    journal.write(*row_calls(run_id, "in-flight", 2))
    journal.write([Intent(run_id, "in-flight/2", "t", row_key="in-flight")])
    journal.write([Intent(run_id, "plain", "t")])
    with pytest.raises(JournalOrderError, match="failed-row/2.*in-flight/2.*plain"):
        journal.update_run(run_id, status="done")
    journal.write(rows=[RowRecord(run_id, "failed-row", 0, "failed", error="node $1: E: x")])
    with pytest.raises(JournalOrderError, match=r"\(intent without result: in-flight/2, plain\)"):
        journal.update_run(run_id, status="done")
    journal.write([], [Result(run_id, "in-flight/2", True, 1)],
                  [done(run_id, "in-flight", 1)])
    with pytest.raises(JournalOrderError, match=r"\(intent without result: plain\)"):
        journal.update_run(run_id, status="done")
    journal.write([], [Result(run_id, "plain", True, 1)])
    assert journal.update_run(run_id, status="done").status == "done"
    assert journal.load_row(run_id, "failed-row")[0].keys() - journal.load_row(
        run_id, "failed-row")[1].keys() == {"failed-row/2"}


# --- refusals: all or nothing ---------------------------------------------------------


def test_a_refused_write_stores_no_row(journal: Journal, store: Store) -> None:
    run_id = new_run(journal)
    i, r = row_calls(run_id, "a")
    # The last result has no intent: the whole write is refused, the row with it.
    with pytest.raises(JournalOrderError, match="without its intent"):
        journal.write(i[:2], r, [done(run_id, "a", 0)])
    assert store.count("rows") == 0 and store.count("intents") == 0
    assert journal.row_status(run_id, ["a"]) == {}
    with pytest.raises(RunNotFoundError, match="ghost"):
        journal.write(rows=[done("ghost", "a", 0)])
    with pytest.raises(RunNotFoundError, match="ghost"):
        journal.write(i, r, [done(run_id, "a", 0), done("ghost", "a", 0)])
    assert store.count("rows") == 0 and store.count("results") == 0


def test_a_result_belongs_to_its_intents_row(journal: Journal, store: Store) -> None:
    run_id = new_run(journal)
    journal.write([Intent(run_id, "k", "t", row_key="a"), Intent(run_id, "p", "t")])
    with pytest.raises(JournalOrderError, match="says row 'b', its intent says row 'a'"):
        journal.write([], [Result(run_id, "k", True, 1, row_key="b")])
    with pytest.raises(JournalOrderError, match="says row 'b', its intent says no row"):
        journal.write([], [Result(run_id, "p", True, 1, row_key="b")])
    assert store.count("results") == 0
    # A result that names no row takes its intent's.
    journal.write([], [Result(run_id, "k", True, 1)])
    assert journal.load_row(run_id, "a")[1]["k"].row_key == "a"


def test_row_records_are_checked(journal: Journal) -> None:
    with pytest.raises(ValueError, match="row status must be one of"):
        RowRecord("r", "k", 0, "started")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        RowRecord("r", "", 0, "done")
    with pytest.raises(ValueError, match="lone surrogate"):
        RowRecord("r", "\ud800", 0, "done")
    with pytest.raises(ValueError, match="ordinal"):
        RowRecord("r", "k", -1, "done")
    with pytest.raises(ValueError, match="ordinal"):
        RowRecord("r", "k", True, "done")  # type: ignore[arg-type]
    run_id = new_run(journal)
    with pytest.raises(JournalValueError, match=r"value of row 'k' \(#3\).*set"):
        journal.write(rows=[RowRecord(run_id, "k", 3, "done", {"v": {1, 2}})])
    with pytest.raises(TypeError, match="RowRecord"):
        journal.write(rows=[("r", "k", 0, "done")])  # type: ignore[list-item]
    assert journal.count_rows(run_id) == {"done": 0, "dropped": 0, "failed": 0}


def test_row_writes_are_fenced(journal: Journal, store: Store) -> None:
    """After a takeover, the old owner's row records are refused with its whole
    write; the new owner's are stored."""
    run_id = new_run(journal)
    old = journal.acquire(run_id, ttl=30, pid=_dead_pid())
    i, r = row_calls(run_id, "a")
    journal.write(i, [], lease=old)
    new = journal.acquire(run_id, ttl=30)
    with pytest.raises(StaleLeaseError, match="refused"):
        journal.write([], r, [done(run_id, "a", 0)], lease=old)
    with pytest.raises(StaleLeaseError):
        journal.write(rows=[done(run_id, "b", 1)], lease=old)
    assert store.count("rows") == 0 and store.count("results") == 0
    journal.write([], r, [done(run_id, "a", 0)], lease=new)
    assert journal.row_status(run_id, ["a", "b"]) == {"a": "done"}


# --- through the writer ---------------------------------------------------------------


def test_writer_commits_a_row_with_its_results(journal: Journal) -> None:
    run_id = new_run(journal)
    n = 200

    async def main() -> JournalWriter:
        writer = JournalWriter(journal)

        async def row(o: int) -> None:
            key = f"row-{o}"
            intents, results = row_calls(run_id, key)
            for it, res in zip(intents, results, strict=True):
                await writer.intents([it])
                await asyncio.sleep(0)
                writer.result(res)
            writer.row(done(run_id, key, o, tokens=3))

        await asyncio.gather(*(row(o) for o in range(n)))
        await writer.aclose()
        return writer

    writer = asyncio.run(main())
    assert writer.records == 7 * n and writer.batches < 4 * n
    keys = [f"row-{o}" for o in range(n)]
    assert journal.row_status(run_id, keys) == dict.fromkeys(keys, "done")
    assert [r.ordinal for r in journal.iter_rows(run_id, limit=n)] == list(range(n))
    journal.update_run(run_id, status="done")


def test_writer_refuses_a_bad_row_value_at_once(journal: Journal) -> None:
    run_id = new_run(journal)

    async def main() -> None:
        async with JournalWriter(journal) as writer:
            with pytest.raises(JournalValueError, match="value of row 'k'"):
                writer.row(RowRecord(run_id, "k", 0, "done", object()))

    asyncio.run(main())


class Gated:
    """A real journal whose first write waits for `gate`: what the test queues
    meanwhile is taken by the writer as one batch."""

    def __init__(self, journal: Journal):
        self.journal = journal
        self.location = journal.location
        self.gate = threading.Event()
        self.entered = threading.Event()

    def write(self, *args: Any, **kwargs: Any) -> None:
        if not self.entered.is_set():
            self.entered.set()
            assert self.gate.wait(10)
        self.journal.write(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.journal, name)


@pytest.mark.parametrize("alone", [False, True], ids=["in-a-batch", "alone"])
def test_a_row_is_never_stored_without_its_results(journal: Journal, alone: bool) -> None:
    """A queued result that cannot be stored fails the writer before the row record
    queued after it is written, whether both are in one batch (the batch is retried
    part by part) or the row comes in a later batch."""
    run_id = new_run(journal)
    gated = Gated(journal)
    i, r = row_calls(run_id, "a")

    async def main() -> list[Any]:
        writer = JournalWriter(gated)  # type: ignore[arg-type]
        first = asyncio.ensure_future(writer.intents(i[:2]))  # r[2] will have no intent
        await asyncio.get_running_loop().run_in_executor(None, gated.entered.wait, 10)
        if alone:
            gated.gate.set()
            await first
        for res in r:
            writer.result(res)
        other = asyncio.ensure_future(writer.intents([Intent(run_id, "plain", "t")]))
        writer.row(done(run_id, "a", 0))
        gated.gate.set()
        outcomes = await asyncio.gather(first, other, return_exceptions=True)
        with pytest.raises(JournalError, match="failed to store a result"):
            await writer.aclose()
        return outcomes

    outcomes = asyncio.run(main())
    assert outcomes[0] is None
    assert journal.row_status(run_id, ["a"]) == {"a": "started"}
    assert journal.count_rows(run_id) == {"done": 0, "dropped": 0, "failed": 0}


class LandsThenDrops:
    """A real journal whose first write commits and then reports a dropped
    connection (the link broke after COMMIT reached the server). Counts `load`."""

    def __init__(self, journal: Journal):
        self.journal = journal
        self.location = journal.location
        self.fail = 1
        self.loads = 0

    def write(self, *args: Any, **kwargs: Any) -> None:
        self.journal.write(*args, **kwargs)
        if self.fail:
            self.fail -= 1
            from plait.journal import JournalTransientError

            raise JournalTransientError("connection dropped after COMMIT (test)")

    def load(self, run_id: str) -> Any:
        self.loads += 1
        return self.journal.load(run_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.journal, name)


def test_a_retried_row_write_that_had_landed_counts_as_written(journal: Journal) -> None:
    """The retry meets its own results ("already has a result"): they are read back
    by their row, never by loading the job's whole run, and count as written; the
    row record is simply written again."""
    run_id = new_run(journal)
    i, r = row_calls(run_id, "a")
    journal.write(i)
    flaky = LandsThenDrops(journal)

    async def main() -> None:
        async with JournalWriter(flaky, retry_for=5.0) as writer:  # type: ignore[arg-type]
            for res in r:
                writer.result(res)
            writer.row(done(run_id, "a", 0))
            await writer.flush()

    asyncio.run(main())
    assert flaky.fail == 0 and flaky.loads == 0
    assert journal.row_status(run_id, ["a"]) == {"a": "done"}
    assert len(journal.load_row(run_id, "a")[1]) == 3


def test_a_failed_twin_never_replaces_a_done_row(journal: Journal) -> None:
    """A row's record replaces its key's record (a retried failure becomes done),
    but a failed row of another position never replaces a done one: twins in two
    shards that both end keep the success, and the failed twin is left without a
    record (found a twin at the job's end)."""
    run_id = new_run(journal)

    def record() -> tuple[int, str]:
        (r,) = [r for r in journal.iter_rows(run_id) if r.row_key == "11"]
        return r.ordinal, r.status

    failed = RowRecord(run_id, "11", 11, "failed", None, "ValueError: no")
    journal.write(rows=[failed])
    journal.write(rows=[done(run_id, "11", 11)])  # retried: done replaces failed
    assert record() == (11, "done")
    journal.write(rows=[RowRecord(run_id, "11", 60, "failed", None, "ValueError: twin")])
    assert record() == (11, "done")
    assert journal.row_status(run_id, ["11"]) == {"11": "done"}
    journal.write(rows=[done(run_id, "11", 60)])  # two successes: the later one's
    assert record() == (60, "done")
    assert journal.count_rows(run_id) == {"done": 1, "dropped": 0, "failed": 0}


@pytest.mark.parametrize("shared_rows", [False, True])
def test_a_twin_rows_finished_call_in_another_shard(journal: Journal, shared_rows: bool) -> None:
    """Two rows of one key in two shards (two writers) run the same calls at once.
    One writer's result lands first. For a shard's writer (`shared_rows`), the
    other's late result and its start after that result are that node: not
    refused, not stored over it. For any other writer they stay order errors."""
    run_id = new_run(journal)
    (first_i, second_i), (first_r, second_r) = row_calls(run_id, "11", 2)
    late = Result(run_id, first_r.key, True, "the twin's own value", tool=first_r.tool,
                  row_key="11")

    async def main() -> list[BaseException | None]:
        outcomes: list[BaseException | None] = []
        a = JournalWriter(journal, shared_rows=shared_rows)
        b = JournalWriter(journal, shared_rows=shared_rows)
        await a.intents([first_i])
        await b.intents([first_i])  # both twins started it: the intent is replaced
        await a.intents([second_i])
        a.result(first_r)
        a.result(second_r)
        await a.aclose()  # one twin finished both calls
        for step in ("start", "result"):  # the other twin starts one, ends the other
            try:
                if step == "start":
                    await b.intents([second_i])
                else:
                    b.result(late)
                    await b.flush()
                outcomes.append(None)
            except JournalError as exc:
                outcomes.append(exc)
        try:
            await b.aclose()
        except JournalError:
            pass
        return outcomes

    outcomes = asyncio.run(main())
    held = journal.load_row(run_id, "11")[1]
    assert held[first_r.key].value == first_r.value  # the first result stays
    assert held[second_r.key].value == second_r.value
    if shared_rows:
        assert outcomes == [None, None]
    else:
        assert isinstance(outcomes[0], JournalOrderError)
        assert "never started again" in str(outcomes[0])
        assert isinstance(outcomes[1], JournalError)
        assert "failed to store a result" in str(outcomes[1])
        assert "already has a result" in str(outcomes[1].__cause__)


# --- scale: indexed look-ups ----------------------------------------------------------


def test_10000_rows_queried_in_chunks(journal: Journal) -> None:
    run_id = new_run(journal)
    n, chunk = 10_000, 1000
    statuses = ("done", "done", "dropped", "failed")
    for start in range(0, n, 2000):
        intents, results, rows = [], [], []
        for o in range(start, start + 2000):
            key = f"row-{o:06d}"
            ci, cr = row_calls(run_id, key, 2)
            intents += ci
            if o % 10 == 9:  # in flight at the "crash": intents only, no record
                continue
            results += cr
            rows.append(RowRecord(run_id, key, o, statuses[o % 4],
                                  {"o": o} if o % 4 < 2 else None))
        journal.write(intents, results, rows)
    keys = [f"row-{o:06d}" for o in range(n + chunk)]  # the last chunk never started
    t0 = time.perf_counter()
    found: dict[str, str] = {}
    slowest = 0.0
    for start in range(0, len(keys), chunk):
        t = time.perf_counter()
        found.update(journal.row_status(run_id, keys[start:start + chunk]))
        slowest = max(slowest, time.perf_counter() - t)
    elapsed = time.perf_counter() - t0
    expected = {f"row-{o:06d}": "started" if o % 10 == 9 else statuses[o % 4] for o in range(n)}
    assert found == expected
    # An index look-up per key: ~1-10 ms per chunk. A scan of the run per key would
    # be seconds per chunk; a scan per chunk, more than this for 11 chunks.
    assert slowest < 0.5 and elapsed < 2.0, f"row_status: {elapsed:.2f}s, slowest {slowest:.2f}s"
    t = time.perf_counter()
    intents, results = journal.load_row(run_id, "row-000009")
    assert len(intents) == 2 and results == {}
    assert time.perf_counter() - t < 0.2
    assert journal.count_rows(run_id) == {"done": 4500, "dropped": 2500, "failed": 2000}
    page = journal.iter_rows(run_id, status="failed", after=5000, limit=1000)
    assert len(page) == 1000 and page[0].ordinal == 5003


def _plans(store: Store, journal: Journal, run_id: str) -> dict[str, str]:
    """The query plans of the per-row look-ups, as the backend runs them."""
    keys = [f"row-{o:06d}" for o in range(0, 2000, 7)]
    if store.kind == "sqlite":
        from plait.journal import _sqlite

        conn = journal._conn  # type: ignore[attr-defined]
        import json

        def plan(sql: str, params: tuple) -> str:
            return "\n".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))

        return {
            "status": plan(_sqlite._ROW_STATUS, (run_id, json.dumps(keys))),
            "intents": plan(_sqlite._ROW_INTENTS, (run_id, "row-000007")),
            "results": plan(_sqlite._ROW_RESULTS, (run_id, "row-000007")),
            "page": plan(_sqlite._PAGE, (run_id, -1, 1000)),
            "page_status": plan(_sqlite._PAGE_STATUS, (run_id, "failed", -1, 1000)),
        }
    sql = journal._row_sql  # type: ignore[attr-defined]
    with journal._use("explain") as conn, conn.transaction():  # type: ignore[attr-defined]
        conn.execute("SET LOCAL enable_sort = off")  # as iter_rows does

        def explain(q: str, params: Any) -> str:
            return "\n".join(r[0] for r in conn.execute("EXPLAIN " + q, params))

        return {
            "status": explain(sql["status"], {"keys": keys, "run": run_id}),
            "intents": explain(sql["intents"], (run_id, "row-000007")),
            "results": explain(sql["results"], (run_id, "row-000007")),
            "page": explain(sql["page"], (run_id, -1, 1000)),
            "page_status": explain(sql["page_status"], (run_id, "failed", -1, 1000)),
        }


def test_row_look_ups_use_indexes(journal: Journal, store: Store) -> None:
    """row_status and load_row probe indexes per key, and a page of iter_rows reads
    the rows index in order (no sort: the first page of a million rows reads a
    thousand); none scans a table (the run's intents, results or rows), with or
    without fresh table statistics."""
    run_id = new_run(journal)
    for start in range(0, 4000, 1000):
        intents, results, rows = [], [], []
        for o in range(start, start + 1000):
            ci, cr = row_calls(run_id, f"row-{o:06d}", 3)
            intents += ci
            results += cr
            rows.append(RowRecord(run_id, f"row-{o:06d}", o, "failed", error="E")
                        if o % 50 == 7 else done(run_id, f"row-{o:06d}", o))
        journal.write(intents, results, rows)
    for fresh_statistics in (False, True):
        if fresh_statistics:
            with journal._use("analyze") as conn:  # type: ignore[attr-defined]
                conn.execute("ANALYZE")
        plans = _plans(store, journal, run_id)
        for name, plan in plans.items():
            if store.kind == "sqlite":
                scans = [ln for ln in plan.splitlines() if ln.startswith("SCAN")]
                assert scans in ([], ["SCAN k VIRTUAL TABLE INDEX 1:"]), (name, plan)
            else:
                for table in ("rows", "intents", "results"):
                    assert f"Seq Scan on {table}" not in plan, (name, plan)
        if store.kind == "sqlite":
            assert "SEARCH r USING PRIMARY KEY (run_id=? AND row_key=?)" in plans["status"]
            # Calls are clustered by row (migration 004): a row's are a key range.
            for name in ("status", "intents"):
                assert "SEARCH i USING PRIMARY KEY (run_id=? AND row_key=?)" in plans[name], plans
            assert "SEARCH r USING PRIMARY KEY (run_id=? AND row_key=?)" in plans["results"]
            assert "INDEX rows_by_ordinal (run_id=? AND ordinal>?)" in plans["page"]
            assert "INDEX rows_by_status (run_id=? AND status=? AND ordinal>?)" in plans[
                "page_status"]
            assert not any("TEMP B-TREE" in p for p in plans.values()), plans
        else:
            assert "Index" in plans["status"] and "rows_pkey" in plans["status"], plans
            for name in ("status", "intents", "results"):
                assert "intents_by_row" in plans[name], plans
            assert "results_pkey" in plans["results"], plans
            assert "Index Scan using rows_by_ordinal" in plans["page"], plans
            assert "Index Scan using rows_by_status" in plans["page_status"], plans
            assert not any("Sort" in p for p in plans.values()), plans
