"""The journal contract: every backend (sqlite, postgres) passes all of these."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import threading
import time
import uuid

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
    RunNotFoundError,
    RunOwnedError,
    RunRecord,
    StaleLeaseError,
    encode_value,
)

from .conftest import Store


def new_run(journal: Journal, **fields) -> str:
    run_id = fields.pop("run_id", None) or f"run-{uuid.uuid4().hex[:10]}"
    journal.create_run(RunRecord(run_id, fields.pop("entry", "brief"), **fields))
    return run_id


def test_is_a_journal(journal: Journal) -> None:
    assert isinstance(journal, Journal)
    assert journal.location


# --- runs ---------------------------------------------------------------------------


def test_run_round_trip(journal: Journal) -> None:
    run = RunRecord(
        "r1",
        "brief",
        {"topic": "Mariana Trench", "n": [1, 2.5, None, True]},
        "running",
        "abc123",
        created_at=1000.25,
        tokens=7,
    )
    journal.create_run(run)
    assert journal.get_run("r1") == run
    assert run.updated_at == run.created_at
    assert journal.get_run("nope") is None


def test_create_run_twice_is_refused(journal: Journal) -> None:
    new_run(journal, run_id="same")
    with pytest.raises(JournalError, match="already exists"):
        new_run(journal, run_id="same")


def test_list_runs_newest_first(journal: Journal) -> None:
    for i, status in enumerate(["done", "running", "failed", "running", "cancelled"]):
        journal.create_run(RunRecord(f"r{i}", "e", None, status, created_at=100.0 + i))
    journal.create_run(RunRecord("r9", "e", None, created_at=104.0))  # tie with r4
    assert [r.run_id for r in journal.list_runs()] == ["r9", "r4", "r3", "r2", "r1", "r0"]
    assert [r.run_id for r in journal.list_runs(limit=2)] == ["r9", "r4"]
    assert [r.run_id for r in journal.list_runs(status="running")] == ["r9", "r3", "r1"]
    with pytest.raises(ValueError):
        journal.list_runs(status="weird")  # type: ignore[arg-type]


def test_update_run(journal: Journal) -> None:
    run_id = new_run(journal)
    r = journal.update_run(run_id, tokens=42)
    assert (r.status, r.tokens, r.finished_at) == ("running", 42, None)
    r = journal.update_run(run_id, status="failed", error="ValueError: boom")
    assert r.status == "failed" and r.error == "ValueError: boom"
    assert r.finished_at is not None and r.updated_at >= r.created_at
    assert journal.get_run(run_id) == r
    # Resuming: running again, no longer finished, the old error cleared.
    r = journal.update_run(run_id, status="running")
    assert (r.status, r.finished_at, r.error, r.tokens) == ("running", None, None, 42)
    r = journal.update_run(run_id, status="cancelled", finished_at=5.0)
    assert r.finished_at == 5.0
    assert journal.get_run(run_id) == r
    with pytest.raises(RunNotFoundError, match="nope"):
        journal.update_run("nope", status="done")
    with pytest.raises(ValueError):
        journal.update_run(run_id, status="bogus")  # type: ignore[arg-type]


# --- intents and results ------------------------------------------------------------

VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**70,
    1.5,
    -0.0,
    "",
    "ünïcødé 日本 \u0000 \ud800",
    [1, "two", [3.0, None]],
    {"b": 1, "a": {"nested": [True]}, "$ref": "not a ref"},
    {"big": "x" * 5000},
]


def test_intents_and_results_round_trip(journal: Journal) -> None:
    run_id = new_run(journal)
    intents = [
        Intent(run_id, f"k{i}", "tool", {"v": v, "i": i}, attempt=1, started_at=10.0 + i)
        for i, v in enumerate(VALUES)
    ]
    results = [
        Result(run_id, f"k{i}", True, v, None, 10.0 + i, 20.0 + i, tokens=i, extra={"m": i})
        for i, v in enumerate(VALUES)
    ]
    journal.write(intents, results)
    state = journal.load(run_id)
    assert state.run == journal.get_run(run_id)
    assert state.intents == {i.key: i for i in intents}
    assert state.results == {r.key: _with_tool(r, "tool") for r in results}
    assert state.in_doubt == []


def _with_tool(r: Result, tool: str) -> Result:
    return Result(
        r.run_id,
        r.key,
        r.ok,
        r.value,
        r.error,
        r.started_at,
        r.finished_at,
        r.tokens,
        dict(r.extra),
        tool,
    )


def test_tuples_become_lists(journal: Journal) -> None:
    run_id = new_run(journal, arguments={"t": (1, 2)})
    journal.write([Intent(run_id, "k", "t", {"a": (1, (2,))})], [Result(run_id, "k", True, (3, 4))])
    state = journal.load(run_id)
    assert state.run.arguments == {"t": [1, 2]}
    assert state.intents["k"].arguments == {"a": [1, [2]]}
    assert state.results["k"].value == [3, 4]


def test_failed_result(journal: Journal) -> None:
    run_id = new_run(journal)
    journal.write([Intent(run_id, "k", "search")])
    journal.write(results=[Result(run_id, "k", False, None, "TimeoutError: slow")])
    r = journal.load(run_id).results["k"]
    assert (r.ok, r.value, r.error, r.tool) == (False, None, "TimeoutError: slow", "search")


def test_in_doubt(journal: Journal) -> None:
    run_id = new_run(journal)
    journal.write(
        [Intent(run_id, k, "t", started_at=t) for k, t in [("b", 2.0), ("a", 1.0), ("c", 3.0)]],
        [Result(run_id, "c", True, 1)],
    )
    assert journal.load(run_id).in_doubt == ["a", "b"]


def test_second_intent_replaces_the_first(journal: Journal) -> None:
    run_id = new_run(journal)
    journal.write([Intent(run_id, "k", "t", {"x": 1}, attempt=1, started_at=1.0)])
    journal.write([Intent(run_id, "k", "t", {"x": 1}, attempt=2, started_at=2.0)])
    state = journal.load(run_id)
    assert (state.intents["k"].attempt, state.intents["k"].started_at) == (2, 2.0)


def test_runs_are_separate(journal: Journal) -> None:
    a, b = new_run(journal), new_run(journal)
    journal.write([Intent(a, "k", "t"), Intent(b, "k", "t")], [Result(a, "k", True, "A")])
    assert journal.load(a).results["k"].value == "A"
    assert journal.load(b).results == {} and journal.load(b).in_doubt == ["k"]


# --- blobs --------------------------------------------------------------------------


def test_large_values_are_stored_once(journal: Journal, store: Store) -> None:
    run_id = new_run(journal)
    big = {"doc": "lorem ipsum " * 1000}
    small = "x" * 10
    journal.write([Intent(run_id, "a", "t", big), Intent(run_id, "b", "t", small)])
    journal.write([Intent(run_id, "c", "t")], [Result(run_id, "a", True, big)])
    journal.write(results=[Result(run_id, "b", True, big), Result(run_id, "c", True, small)])
    assert store.count("blobs") == 1
    state = journal.load(run_id)
    assert state.results["a"].value == state.results["b"].value == big
    assert state.intents["a"].arguments == big
    enc = encode_value(big, "big")
    assert enc.hash == hashlib.sha256(enc.text.encode()).hexdigest()
    assert journal.get_blob(enc.hash) == enc.text.encode()
    with pytest.raises(JournalError, match="no blob"):
        journal.get_blob("0" * 64)


def test_inline_threshold(journal: Journal, store: Store) -> None:
    run_id = new_run(journal)
    at_limit = "x" * (INLINE_LIMIT - 2)  # its JSON has the two quotes
    over = "x" * (INLINE_LIMIT - 1)
    journal.write(
        [Intent(run_id, "a", "t"), Intent(run_id, "b", "t")],
        [Result(run_id, "a", True, at_limit), Result(run_id, "b", True, over)],
    )
    assert store.count("blobs") == 1
    state = journal.load(run_id)
    assert state.results["a"].value == at_limit and state.results["b"].value == over


# --- write order --------------------------------------------------------------------


def test_result_needs_its_intent(journal: Journal, store: Store) -> None:
    run_id = new_run(journal)
    with pytest.raises(JournalOrderError, match="without its intent"):
        journal.write([Intent(run_id, "a", "t")], [Result(run_id, "b", True, 1)])
    # All or nothing: the intent in the same call was not written either.
    assert journal.load(run_id).intents == {}
    assert store.count("intents") == 0
    # In the same call, intents come first.
    journal.write([Intent(run_id, "b", "t")], [Result(run_id, "b", True, 1)])
    assert journal.load(run_id).results["b"].value == 1


def test_one_result_per_node(journal: Journal) -> None:
    run_id = new_run(journal)
    journal.write([Intent(run_id, "k", "t")], [Result(run_id, "k", True, 1)])
    with pytest.raises(JournalOrderError, match="already has a result"):
        journal.write(results=[Result(run_id, "k", True, 2)])
    with pytest.raises(JournalOrderError, match="two results"):
        journal.write(
            [Intent(run_id, "j", "t")], [Result(run_id, "j", True, 1), Result(run_id, "j", True, 2)]
        )
    assert journal.load(run_id).results["k"].value == 1
    assert "j" not in journal.load(run_id).intents


def test_finished_node_never_starts_again(journal: Journal) -> None:
    run_id = new_run(journal)
    journal.write([Intent(run_id, "k", "t")], [Result(run_id, "k", True, 1)])
    with pytest.raises(JournalOrderError, match="already has a result"):
        journal.write([Intent(run_id, "k", "t", attempt=2)])
    assert journal.load(run_id).intents["k"].attempt == 1


def test_failed_node_may_start_again(journal: Journal) -> None:
    """A resumed run retries a call that failed: its failed result gives way."""
    run_id = new_run(journal)
    journal.write([Intent(run_id, "k", "t")], [Result(run_id, "k", False, error="E: x")])
    assert journal.load(run_id).results["k"].ok is False
    journal.write([Intent(run_id, "k", "t", attempt=2)])
    state = journal.load(run_id)
    assert "k" not in state.results and state.in_doubt == ["k"]
    journal.write(results=[Result(run_id, "k", True, 5)])
    assert journal.load(run_id).results["k"].value == 5


def test_unknown_run(journal: Journal) -> None:
    with pytest.raises(RunNotFoundError, match="ghost"):
        journal.write([Intent("ghost", "k", "t")])
    with pytest.raises(RunNotFoundError, match="ghost"):
        journal.load("ghost")


def test_done_needs_every_result(journal: Journal) -> None:
    run_id = new_run(journal)
    journal.write(
        [Intent(run_id, "a", "t"), Intent(run_id, "b", "t")], [Result(run_id, "a", True, 1)]
    )
    with pytest.raises(JournalOrderError, match="cannot be marked done.*b"):
        journal.update_run(run_id, status="done")
    assert journal.get_run(run_id).status == "running"
    journal.write(results=[Result(run_id, "b", False, None, "E: x")])
    assert journal.update_run(run_id, status="done").status == "done"
    # A finished run takes no new calls.
    with pytest.raises(JournalOrderError, match="is done"):
        journal.write([Intent(run_id, "c", "t")])


def test_failed_or_cancelled_may_leave_calls_in_doubt(journal: Journal) -> None:
    run_id = new_run(journal)
    journal.write([Intent(run_id, "a", "t")])
    assert journal.update_run(run_id, status="cancelled").status == "cancelled"
    assert journal.load(run_id).in_doubt == ["a"]


def test_values_that_cannot_be_journaled(journal: Journal) -> None:
    run_id = new_run(journal)
    with pytest.raises(JournalValueError, match=r"node k1 \(tool 'search'\).*set"):
        journal.write([Intent(run_id, "k1", "search", {"q": {1, 2}})])
    journal.write([Intent(run_id, "k2", "fetch")])
    with pytest.raises(JournalValueError, match=r"result of node k2 \(tool 'fetch'\).*object"):
        journal.write(results=[Result(run_id, "k2", True, object(), tool="fetch")])
    with pytest.raises(JournalValueError, match="key 1 of type int"):
        journal.write(results=[Result(run_id, "k2", True, {1: "a"})])
    with pytest.raises(JournalValueError, match="arguments of run"):
        journal.create_run(RunRecord("bad", "e", {"x": b"bytes"}))
    assert journal.load(run_id).results == {}


# --- scale, threads, lifetime -------------------------------------------------------


def test_load_10000_nodes_fast(journal: Journal) -> None:
    run_id = new_run(journal)
    n = 10_000
    for start in range(0, n, 2000):
        keys = [f"{i:032x}" for i in range(start, start + 2000)]
        journal.write(
            [Intent(run_id, k, "search", {"q": f"query {k}", "$1": {"$ref": k}}) for k in keys],
            [Result(run_id, k, True, {"answer": k, "n": 1}, tokens=3) for k in keys[::2]],
        )
    t0 = time.perf_counter()
    state = journal.load(run_id)
    elapsed = time.perf_counter() - t0
    assert len(state.intents) == n and len(state.results) == n // 2
    assert len(state.in_doubt) == n // 2
    assert state.results[f"{0:032x}"].value == {"answer": f"{0:032x}", "n": 1}
    assert elapsed < 2.0, f"load of {n} nodes took {elapsed:.2f}s"


@pytest.mark.parametrize("shared", [True, False], ids=["one-journal", "journal-per-thread"])
def test_concurrent_writers_from_threads(store: Store, shared: bool) -> None:
    first = store.open()
    run_id = new_run(first)
    threads_n, per_thread = 8, 60
    errors: list[BaseException] = []

    def work(t: int) -> None:
        j = first if shared else store.open()
        try:
            for i in range(per_thread):
                key = f"t{t}-{i}"
                j.write([Intent(run_id, key, "t", {"t": t, "i": i})])
                j.write(results=[Result(run_id, key, True, {"v": "y" * (i % 3) * 200})])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            if not shared:
                j.close()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors, errors
    state = first.load(run_id)
    assert len(state.results) == threads_n * per_thread
    assert state.in_doubt == []
    first.update_run(run_id, status="done")
    first.close()


def test_reopen_keeps_everything(store: Store) -> None:
    j = store.open()
    run_id = new_run(j, arguments={"a": 1})
    j.write([Intent(run_id, "k", "t", {"x": "y" * 1000})], [Result(run_id, "k", True, "z" * 1000)])
    before = j.load(run_id)
    j.close()
    j.close()  # idempotent
    with pytest.raises(JournalError, match="closed"):
        j.get_run(run_id)
    j2 = store.open()
    try:
        assert j2.load(run_id) == before
        assert [r.run_id for r in j2.list_runs()] == [run_id]
    finally:
        j2.close()


def test_migrations_apply_once(store: Store) -> None:
    a = store.open()
    b = store.open()
    try:
        names = ["001_initial", "002_leases", "003_rows"]
        if store.kind == "sqlite":  # its calls are clustered by row (SQLite only)
            names.append("004_calls_by_row")
        assert a.applied_migrations() == b.applied_migrations() == names
        assert store.count("_plait_migrations") == len(names)
    finally:
        a.close()
        b.close()
    c = store.open()
    c.close()
    assert store.count("_plait_migrations") == len(names)


# --- through the group-commit writer ------------------------------------------------


def test_writer_group_commits(journal: Journal) -> None:
    run_id = new_run(journal)
    n = 400

    async def main() -> JournalWriter:
        writer = JournalWriter(journal)

        async def node(i: int) -> None:
            key = f"n{i}"
            await writer.intents([Intent(run_id, key, "t", {"i": i})])
            await asyncio.sleep(0)
            writer.result(Result(run_id, key, True, i * 2))

        await asyncio.gather(*(node(i) for i in range(n)))
        await writer.aclose()
        return writer

    writer = asyncio.run(main())
    state = journal.load(run_id)
    assert {k: r.value for k, r in state.results.items()} == {f"n{i}": i * 2 for i in range(n)}
    assert writer.records == 2 * n
    assert writer.batches < n  # many nodes per transaction
    journal.update_run(run_id, status="done")


def test_writer_errors_reach_their_caller_only(journal: Journal) -> None:
    run_id = new_run(journal)

    async def main() -> list[object]:
        async with JournalWriter(journal) as writer:
            calls = [writer.intents([Intent(run_id, f"ok{i}", "t")]) for i in range(20)]
            calls.insert(7, writer.intents([Intent("ghost", "x", "t")]))
            return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(main())
    assert isinstance(outcomes[7], RunNotFoundError)
    assert [o for i, o in enumerate(outcomes) if i != 7] == [None] * 20
    assert len(journal.load(run_id).intents) == 20


def test_writer_refuses_bad_values_at_once(journal: Journal) -> None:
    run_id = new_run(journal)

    async def main() -> None:
        writer = JournalWriter(journal)
        with pytest.raises(JournalValueError, match=r"k \(tool 'search'\).*set"):
            await writer.intents([Intent(run_id, "k", "search", {"q": {1}})])
        await writer.intents([Intent(run_id, "k", "search")])
        with pytest.raises(JournalValueError, match="result of node k.*object"):
            writer.result(Result(run_id, "k", True, object(), tool="search"))
        await writer.aclose()

    asyncio.run(main())


def test_writer_lost_result_fails_the_writer(journal: Journal) -> None:
    run_id = new_run(journal)

    async def main() -> None:
        writer = JournalWriter(journal)
        writer.result(Result(run_id, "never-started", True, 1))  # no intent
        with pytest.raises(JournalError, match="failed to store a result") as info:
            await writer.flush()
        assert isinstance(info.value.__cause__, JournalOrderError)
        with pytest.raises(JournalError, match="failed to store a result"):
            writer.result(Result(run_id, "other", True, 1))
        with pytest.raises(JournalError, match="failed to store a result"):
            await writer.aclose()

    asyncio.run(main())


def test_writer_closed(journal: Journal) -> None:
    async def main() -> None:
        writer = JournalWriter(journal)
        await writer.aclose()
        await writer.aclose()  # idempotent
        with pytest.raises(JournalError, match="closed"):
            await writer.intents([Intent("r", "k", "t")])

    asyncio.run(main())


# --- leases: one owner per run --------------------------------------------------------


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped) on this host."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def test_acquire_one_owner(journal: Journal) -> None:
    """The first acquire wins (the run need not exist yet); a second owner is refused
    with a message naming the first; the same owner may take its lease again."""
    a = journal.acquire("r", ttl=30)
    assert (a.run_id, a.epoch, a.pid, a.ttl) == ("r", 1, os.getpid(), 30.0)
    stored = journal.get_lease("r")
    assert stored == dataclasses.replace(a, age=stored.age) and 0 <= stored.age < 5
    with pytest.raises(RunOwnedError, match=rf"pid {os.getpid()} on host .*last heartbeat") as e:
        journal.acquire("r", ttl=30)
    assert e.value.owner.owner == a.owner and "--wait" in str(e.value)
    assert journal.acquire("r", ttl=30, owner=a.owner).epoch == 1
    assert journal.get_lease("other") is None
    with pytest.raises(ValueError):
        journal.acquire("x", ttl=0)


def test_takeover_of_a_dead_owner_on_this_host(journal: Journal) -> None:
    old = journal.acquire("r", ttl=30, pid=_dead_pid())
    new = journal.acquire("r", ttl=30)
    assert new.epoch == old.epoch + 1 and new.owner != old.owner


def test_takeover_after_expiry_only(journal: Journal) -> None:
    """An owner on another host (its pid cannot be checked) is taken over once its
    heartbeat is older than its own ttl, not the acquirer's."""
    old = journal.acquire("r", ttl=0.5, host="elsewhere.example", pid=1)
    with pytest.raises(RunOwnedError, match="elsewhere.example"):
        journal.acquire("r", ttl=0.01)
    time.sleep(0.3)
    assert journal.heartbeat(old).epoch == 1  # a beat in time keeps it
    time.sleep(0.3)
    with pytest.raises(RunOwnedError):
        journal.acquire("r", ttl=30)
    time.sleep(0.4)
    assert journal.get_lease("r").expired
    new = journal.acquire("r", ttl=30)
    assert new.epoch == 2 and new.host != "elsewhere.example"
    with pytest.raises(StaleLeaseError, match="took it over"):
        journal.heartbeat(old)
    assert journal.release(old) is False
    assert journal.get_lease("r").owner == new.owner


def test_release_keeps_the_epoch(journal: Journal) -> None:
    a = journal.acquire("r", ttl=30)
    assert journal.release(a) is True
    assert journal.get_lease("r") is None
    with pytest.raises(StaleLeaseError, match="released"):
        journal.heartbeat(a)
    b = journal.acquire("r", ttl=30)
    assert b.epoch == 2  # epochs only grow: a fenced old owner never matches again


def test_fencing_refuses_a_stale_owner(journal: Journal, store: Store) -> None:
    """After a takeover, the old owner's write and run update are refused whole, in
    their own transaction; the new owner's go through; unfenced writes are unchanged."""
    run_id = new_run(journal)
    old = journal.acquire(run_id, ttl=30, pid=_dead_pid())
    journal.write([Intent(run_id, "k1", "t")], lease=old)
    new = journal.acquire(run_id, ttl=30)
    before = store.count("intents")
    with pytest.raises(StaleLeaseError, match=rf"epoch {old.epoch}\b.*refused"):
        journal.write([Intent(run_id, "k2", "t")], [Result(run_id, "k1", True, 1)], lease=old)
    assert store.count("intents") == before and store.count("results") == 0
    with pytest.raises(StaleLeaseError):
        journal.update_run(run_id, status="failed", lease=old)
    assert journal.get_run(run_id).status == "running"
    journal.write([Intent(run_id, "k2", "t")], [Result(run_id, "k1", True, 1)], lease=new)
    journal.write([], [Result(run_id, "k2", True, 2)])  # no lease: not fenced
    assert journal.update_run(run_id, status="done", lease=new).status == "done"
    assert set(journal.load(run_id).results) == {"k1", "k2"}


def test_fenced_writer(journal: Journal) -> None:
    """A JournalWriter given the lease fences every batch: after a takeover its
    intents fail with StaleLeaseError."""
    run_id = new_run(journal)
    old = journal.acquire(run_id, ttl=30, pid=_dead_pid())

    async def main() -> None:
        async with JournalWriter(journal, lease=old) as w:
            await w.intents([Intent(run_id, "a", "t")])
            journal.acquire(run_id, ttl=30)
            with pytest.raises(StaleLeaseError):
                await w.intents([Intent(run_id, "b", "t")])

    asyncio.run(main())
    assert set(journal.load(run_id).intents) == {"a"}


def test_two_threads_race_for_one_run(store: Store) -> None:
    """Many journals (connections) acquire one fresh run id at once: exactly one wins."""
    journals = [store.open() for _ in range(6)]
    wins: list[int] = []
    refused: list[int] = []
    barrier = threading.Barrier(len(journals))

    def go(i: int) -> None:
        barrier.wait(timeout=10)
        try:
            journals[i].acquire("race", ttl=30)
            wins.append(i)
        except RunOwnedError:
            refused.append(i)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(journals))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    finally:
        for j in journals:
            j.close()
    assert len(wins) == 1 and len(refused) == len(journals) - 1
