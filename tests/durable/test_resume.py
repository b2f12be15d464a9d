"""Durable runs through the Python API: replay, identity, resume, errors.

Every test runs on SQLite and on PostgreSQL (`spec`). Tools count their calls in
`CALLS`, apart from the journal, so "replayed, not re-run" is checked, not assumed.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import plait
from plait.journal import (
    Intent,
    JournalError,
    JournalValueError,
    RunNotFoundError,
    RunRecord,
    open_journal,
)

pytestmark = pytest.mark.timeout(60)

CALLS: collections.Counter[str] = collections.Counter()
KEYS: list[tuple[str, str]] = []  # (tool, plait.node_key()) seen inside tools
FAIL: set[str] = set()  # words `shout` fails on
STATE: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _clean() -> None:
    CALLS.clear()
    KEYS.clear()
    FAIL.clear()
    STATE.clear()


def _seen(tool: str) -> None:
    CALLS[tool] += 1
    KEYS.append((tool, plait.node_key()))


@plait.tool
async def shout(word: str) -> str:
    _seen("shout")
    if word in FAIL:
        raise RuntimeError(f"cannot shout {word}")
    return word.upper()


@plait.tool
def join(parts: list[str], sep: str = " ") -> str:
    _seen("join")
    return sep.join(parts)


@plait.tool
async def tick(label: str) -> int:
    """Not a pure function: each call returns the next number."""
    _seen("tick")
    STATE["n"] = STATE.get("n", 0) + 1
    return STATE["n"]


@plait.tool(idempotent=True)
async def page(n: int) -> str:
    _seen("page")
    return f"page {n} " + "lorem " * 100  # > 256 bytes: stored as a blob


@plait.workflow
async def greet(words: list[str]) -> str:
    loud = [shout(w) for w in words]
    return await join(loud)


@plait.workflow
async def ticks(n: int) -> list[int]:
    refs = [tick("same") for _ in range(n)]
    return [await r for r in refs]


@plait.workflow
async def pages(n: int) -> list[str]:
    return [await r for r in [page(i) for i in range(n)]]


def _state(spec: str, run_id: str) -> Any:
    j = open_journal(spec)
    try:
        return j.load(run_id)
    finally:
        j.close()


def _run_record(spec: str, run_id: str) -> RunRecord:
    j = open_journal(spec)
    try:
        rec = j.get_run(run_id)
        assert rec is not None
        return rec
    finally:
        j.close()


# --- replay -------------------------------------------------------------------------------


def test_replay_never_calls_a_tool_again(spec: str) -> None:
    first = plait.run(greet, ["a", "b", "c"], journal=spec, run_id="r1")
    assert first.value == "A B C" and first.replayed == 0
    assert CALLS == {"shout": 3, "join": 1}
    done = _run_record(spec, "r1")
    again = plait.run(greet, ["a", "b", "c"], journal=spec, run_id="r1")
    assert again.value == "A B C"
    assert again.replayed == 4
    assert CALLS == {"shout": 3, "join": 1}  # not one more call
    again = plait.resume("r1", spec)  # the entry is imported from the journal
    assert again.value == "A B C" and again.replayed == 4
    assert CALLS == {"shout": 3, "join": 1}
    # A replay is not more work for the run: its record, finish time too, stays.
    assert replace(_run_record(spec, "r1"), updated_at=done.updated_at) == done


def test_large_values_replay_from_blobs(spec: str) -> None:
    first = plait.run(pages, 3, journal=spec, run_id="blobs")
    again = plait.run(pages, 3, journal=spec, run_id="blobs")
    assert again.value == first.value and again.replayed == 3
    assert CALLS["page"] == 3


def test_identical_calls_are_distinct_nodes_and_replay_in_order(spec: str) -> None:
    first = plait.run(ticks, 4, journal=spec, run_id="ticks")
    assert first.value == [1, 2, 3, 4]  # four calls, not one
    keys = [k for _, k in KEYS]
    assert len(set(keys)) == 4
    assert set(_state(spec, "ticks").results) == set(keys)
    again = plait.run(ticks, 4, journal=spec, run_id="ticks")
    assert again.value == [1, 2, 3, 4] and again.replayed == 4  # each its own value
    assert CALLS["tick"] == 4


def test_node_key_is_the_journal_key_and_does_not_depend_on_the_journal(
    spec: str,
) -> None:
    plait.run(greet, ["x", "y"])
    unjournaled = sorted(KEYS)
    KEYS.clear()
    plait.run(greet, ["x", "y"], journal=spec, run_id="keys")
    assert sorted(KEYS) == unjournaled
    state = _state(spec, "keys")
    assert {k for _, k in KEYS} == set(state.intents) == set(state.results)
    assert {state.intents[k].tool for _, k in KEYS} == {"shout", "join"}


def test_node_key_outside_a_tool_is_an_error() -> None:
    with pytest.raises(plait.PlaitError, match="only available inside a tool"):
        plait.node_key()


# --- changed code does not strand a run -------------------------------------------------


def _as(name: str, fn: Any) -> plait.Workflow:
    """A different workflow object under the entry name `name` (edited code)."""
    return plait.Workflow(fn=fn, name=name)


def test_edited_workflow_with_the_same_calls_replays(spec: str) -> None:
    plait.run(greet, ["a", "b"], journal=spec, run_id="edit")

    async def edited(words: list[str]) -> str:
        # Other code: calls made in another order, an unrelated local, a comment.
        unrelated = sum(len(w) for w in words)
        loud = [shout(w) for w in reversed(words)][::-1]
        assert unrelated == 2
        return await join(loud)

    result = plait.run(_as(greet.name, edited), ["a", "b"], journal=spec, run_id="edit")
    assert result.value == "A B" and result.replayed == 3
    assert CALLS == {"shout": 2, "join": 1}


def test_calls_added_after_run_and_old_ones_replay(spec: str) -> None:
    plait.run(greet, ["a", "b"], journal=spec, run_id="grow")
    done = _run_record(spec, "grow")

    async def grown(words: list[str]) -> str:
        loud = [shout(w) for w in words]
        joined = join(loud)
        extra = shout("c")  # new
        return await join([joined, extra], sep="+")  # new

    result = plait.run(_as(greet.name, grown), ["a", "b"], journal=spec, run_id="grow")
    assert result.value == "A B+C"
    assert result.replayed == 3
    assert CALLS == {"shout": 3, "join": 2}
    state = _state(spec, "grow")
    assert len(state.results) == 5 and state.run.status == "done"
    assert state.run.finished_at > done.finished_at  # new calls ran: it finished again


def test_resume_with_workflow_fn_for_an_entry_that_cannot_be_imported(spec: str) -> None:
    wf = _as("no_such_module_xyz:wf", greet.fn)
    plait.run(wf, ["q"], journal=spec, run_id="noimport")
    with pytest.raises(plait.PlaitError, match="cannot import the run's workflow"):
        plait.resume("noimport", spec)
    result = plait.resume("noimport", spec, workflow_fn=wf)
    assert result.value == "Q" and result.replayed == 2


# --- clear errors ---------------------------------------------------------------------------


def test_other_arguments_for_an_existing_run_id(spec: str) -> None:
    plait.run(greet, ["a"], journal=spec, run_id="args")
    with pytest.raises(JournalError) as info:
        plait.run(greet, ["b"], journal=spec, run_id="args")
    message = str(info.value)
    assert "'args'" in message and "['a']" in message and "['b']" in message
    assert CALLS == {"shout": 1, "join": 1}
    with pytest.raises(JournalError, match="cannot be resumed as"):
        plait.run(ticks, 1, journal=spec, run_id="args")  # another entry


def test_a_result_that_cannot_be_journaled_names_the_tool_and_type(spec: str) -> None:
    @plait.tool
    async def make_set() -> Any:
        return {1, 2}

    @plait.workflow
    async def wf() -> Any:
        return await make_set()

    with pytest.raises(plait.RunError) as info:
        plait.run(wf, journal=spec, run_id="set")
    message = str(info.value)
    assert "make_set" in message and "set" in message and "JournalValueError" in message
    errors = info.value.result.errors
    assert isinstance(errors[0], JournalValueError)
    assert _run_record(spec, "set").status == "failed"


def test_an_argument_that_cannot_be_journaled_names_the_tool_and_type(spec: str) -> None:
    @plait.tool
    async def echo(x: Any) -> Any:
        return x

    @plait.workflow
    async def wf() -> Any:
        return await echo({1, 2})

    with pytest.raises(plait.PlaitError) as info:
        plait.run(wf, journal=spec, run_id="setarg")
    message = str(info.value)
    assert "set" in message
    assert "echo" in message, f"the error does not name the tool: {message!r}"


def test_workflow_arguments_that_cannot_be_journaled(spec: str) -> None:
    with pytest.raises(JournalValueError, match="set"):
        plait.run(greet, {"a"}, journal=spec, run_id="badargs")


def test_resume_of_an_unknown_run_id(spec: str) -> None:
    with pytest.raises(RunNotFoundError, match="'nope'"):
        plait.resume("nope", spec)


def test_a_corrupt_journal_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"this is not a database\n" * 200)
    with pytest.raises(JournalError, match="not a SQLite database") as info:
        plait.run(greet, ["a"], journal=str(path))
    assert str(path) in str(info.value)
    assert CALLS == {}


def test_a_database_that_is_not_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(JournalError, match="not a plait journal"):
        plait.run(greet, ["a"], journal=str(path))
    with sqlite3.connect(path) as conn:  # and it was left alone
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert tables == ["customers"]


def test_a_journal_in_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="does not exist"):
        plait.run(greet, ["a"], journal=str(tmp_path / "nowhere" / "runs.db"))


def test_an_unreachable_postgres(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dsn = f"postgresql://postgres:secret@127.0.0.1:{port}/test?schema=x"
    with pytest.raises(JournalError) as info:
        plait.run(greet, ["a"], journal=dsn)
    message = str(info.value)
    assert "cannot connect" in message and str(port) in message
    assert "secret" not in message
    assert CALLS == {}


def test_an_unknown_journal_scheme() -> None:
    with pytest.raises(JournalError, match="unknown journal scheme"):
        plait.run(greet, ["a"], journal="mysql://localhost/x")


# --- failures, status, events --------------------------------------------------------------


def test_a_failed_node_runs_again_on_resume(spec: str) -> None:
    FAIL.add("b")
    result = plait.run(greet, ["a", "b", "c"], journal=spec, run_id="fails",
                       on_error="continue", raise_on_error=False)
    assert result.status == "failed"
    record = _run_record(spec, "fails")
    assert record.status == "failed" and "cannot shout b" in (record.error or "")
    state = _state(spec, "fails")
    assert sorted(r.ok for r in state.results.values()) == [False, True, True]
    assert CALLS == {"shout": 3}
    FAIL.clear()
    resumed = plait.run(greet, ["a", "b", "c"], journal=spec, run_id="fails")
    assert resumed.value == "A B C"
    assert resumed.replayed == 2  # a and c
    assert CALLS == {"shout": 4, "join": 1}  # b once more, then join
    record = _run_record(spec, "fails")
    assert record.status == "done" and record.error is None
    state = _state(spec, "fails")
    assert len(state.results) == 4 and all(r.ok for r in state.results.values())


def test_retries_in_a_journaled_run(spec: str) -> None:
    @plait.tool(retries=2, backoff=0.001)
    async def flaky(x: int) -> int:
        CALLS["flaky"] += 1
        if CALLS["flaky"] < 3:
            raise ValueError("not yet")
        return x

    @plait.workflow
    async def wf() -> int:
        return await flaky(7)

    assert plait.run(wf, journal=spec, run_id="retry").value == 7
    assert CALLS["flaky"] == 3
    state = _state(spec, "retry")
    (key,) = state.results
    assert state.results[key].ok and state.intents[key].attempt == 3
    assert plait.run(wf, journal=spec, run_id="retry").replayed == 1
    assert CALLS["flaky"] == 3


def test_run_status_goes_running_then_done_or_failed(spec: str) -> None:
    seen: list[str] = []

    @plait.tool
    async def look(run_id: str) -> str:
        j = open_journal(spec)  # another connection, as `plait runs` would use
        try:
            seen.append([r.status for r in j.list_runs() if r.run_id == run_id][0])
        finally:
            j.close()
        return "ok"

    @plait.workflow
    async def wf(run_id: str, fail: bool) -> str:
        value = await look(run_id)
        if fail:
            raise RuntimeError("the body fails")
        return value

    plait.run(wf, "ok-run", False, journal=spec, run_id="ok-run")
    with pytest.raises(plait.RunError):
        plait.run(wf, "bad-run", True, journal=spec, run_id="bad-run")
    assert seen == ["running", "running"]
    j = open_journal(spec)
    try:
        runs = {r.run_id: r for r in j.list_runs()}
        assert runs["ok-run"].status == "done" and runs["ok-run"].finished_at
        assert runs["bad-run"].status == "failed"
        assert "the body fails" in (runs["bad-run"].error or "")
        assert [r.run_id for r in j.list_runs(status="failed")] == ["bad-run"]
    finally:
        j.close()


def test_a_cancelled_run_is_marked_and_its_call_is_in_doubt(spec: str) -> None:
    started = asyncio.Event()

    @plait.tool
    async def slow() -> int:
        started.set()
        await asyncio.sleep(30)
        return 1

    @plait.workflow
    async def wf() -> int:
        return await slow()

    async def main() -> None:
        task = asyncio.create_task(plait.arun(wf, journal=spec, run_id="cancel"))
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    state = _state(spec, "cancel")
    assert state.run.status == "cancelled"
    assert [state.intents[k].tool for k in state.in_doubt] == ["slow"]


def test_events_carry_the_run_id(spec: str) -> None:
    events: list[plait.Event] = []
    plait.run(greet, ["a", "b"], journal=spec, run_id="ev", listeners=[events.append])
    plait.run(greet, ["a", "b"], journal=spec, run_id="ev", listeners=[events.append])  # replay
    assert events and {e.run_id for e in events} == {"ev"}
    kinds = collections.Counter(type(e).__name__ for e in events)
    assert kinds["RunStarted"] == 2 and kinds["RunFinished"] == 2
    assert kinds["NodeFinished"] == 6  # replayed nodes finish too


def test_a_journal_object_is_used_and_left_open(spec: str) -> None:
    j = open_journal(spec)
    try:
        plait.run(greet, ["a"], journal=j, run_id="obj")
        result = asyncio.run(plait.aresume("obj", j))
        assert result.replayed == 2
        assert j.get_run("obj").status == "done"  # still open
    finally:
        j.close()


# --- in doubt, without a crash: an intent written by hand -----------------------------------


def _in_doubt(spec: str, wf: plait.Workflow, args: list[Any], run_id: str, tool: str) -> str:
    """Journal `run_id` as if it crashed inside the call of `tool`: its intent, no result."""
    KEYS.clear()
    plait.run(wf, *args)  # unjournaled, to learn the node keys
    key = next(k for t, k in KEYS if t == tool)
    KEYS.clear()
    CALLS.clear()
    STATE.clear()
    j = open_journal(spec)
    try:
        j.create_run(RunRecord(run_id, wf.name, {"args": args, "kwargs": {}}))
        j.write([Intent(run_id, key, tool, {"hand": "written"})])
    finally:
        j.close()
    return key


def test_in_doubt_policy_without_a_crash(spec: str) -> None:
    key = _in_doubt(spec, ticks, [2], "doubt", "tick")
    with pytest.raises(plait.RunError) as info:
        plait.run(ticks, 2, journal=spec, run_id="doubt")
    assert isinstance(info.value.result.errors[0], plait.InDoubtError)
    assert key[:12] in str(info.value) and "allow_rerun" in str(info.value)
    assert CALLS["tick"] <= 1  # only the other tick call, never the one in doubt
    assert key not in {k for _, k in KEYS}
    result = plait.run(ticks, 2, journal=spec, run_id="doubt", allow_rerun=True)
    assert result.ok and key in {k for _, k in KEYS}
    state = _state(spec, "doubt")
    assert state.run.status == "done" and not state.in_doubt


def test_a_refused_call_stays_in_doubt(spec: str) -> None:
    """After a resume refused a call in doubt, a later plain resume must refuse it
    again: the refusal must not be journaled as an ordinary failure, which resume
    re-runs."""
    key = _in_doubt(spec, ticks, [1], "doubt2", "tick")
    for _ in range(2):
        with pytest.raises(plait.RunError, match="InDoubtError"):
            plait.run(ticks, 1, journal=spec, run_id="doubt2")
        assert CALLS["tick"] == 0, "the call in doubt ran without allow_rerun"
        assert _state(spec, "doubt2").in_doubt == [key]


def test_idempotent_in_doubt_runs_again_by_itself(spec: str) -> None:
    key = _in_doubt(spec, pages, [2], "doubt3", "page")
    result = plait.run(pages, 2, journal=spec, run_id="doubt3")
    assert result.ok and CALLS["page"] == 2 and key in {k for _, k in KEYS}
