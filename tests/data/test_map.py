"""The row runner (`plait.map`, `plait.stream`) on real files and real journals."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plait

CALLS: dict[str, int] = {}


def _count(name: str) -> None:
    CALLS[name] = CALLS.get(name, 0) + 1


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


@plait.tool
async def double(x: int) -> int:
    """Twice x, after a short wait."""
    _count("double")
    await asyncio.sleep(0.001)
    return 2 * x


@plait.tool
async def check(x: int) -> bool:
    """Whether x is kept (not a multiple of 3)."""
    _count("check")
    return x % 3 != 0


@plait.tool
async def explode(x: int) -> int:
    """Fails for 7."""
    _count("explode")
    if x == 7:
        raise ValueError("seven is not allowed")
    return x


@plait.workflow
async def pipeline(row: dict) -> Any:
    d = double(row["x"])  # starts now
    keep = await check(row["x"])
    if not keep:
        return plait.DROP
    return {"x": row["x"], "double": await d, "checked": await explode(row["x"])}


def rows(n: int) -> Iterator[dict[str, int]]:
    for i in range(n):
        yield {"id": i, "x": i}


def write_jsonl(path: Path, n: int) -> Path:
    with path.open("w") as f:
        for r in rows(n):
            f.write(json.dumps(r) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_map_runs_every_row_drops_and_records_failures(tmp_path: Path) -> None:
    result = plait.map(pipeline, rows(30), out=tmp_path / "out.jsonl", ordered=True)
    kept = [i for i in range(30) if i % 3 != 0 and i != 7]
    assert [r["x"] for r in read_jsonl(tmp_path / "out.jsonl")] == kept
    assert read_jsonl(tmp_path / "out.jsonl")[0] == {"x": 1, "double": 2, "checked": 1}
    assert (result.rows_done, result.rows_dropped, result.rows_failed) == (len(kept), 10, 1)
    assert result.ok and result.out == tmp_path / "out.jsonl"
    (failed,) = result.failures
    assert failed.ordinal == 7 and failed.key == "7"
    assert "explode" in failed.error and "seven is not allowed" in failed.error
    # Every row ran its calls once: drop and failure cost nothing more.
    assert CALLS == {"double": 30, "check": 30, "explode": 20}


def test_stream_yields_rows_as_they_end_or_in_order() -> None:
    @plait.workflow
    async def slow_first(row: dict) -> int:
        await double(row["x"])
        if row["x"] == 0:
            await asyncio.sleep(0.2)
        return row["x"]

    async def collect(ordered: bool) -> list[int]:
        return [r.value async for r in plait.stream(slow_first, rows(5), ordered=ordered)]

    assert asyncio.run(collect(ordered=False))[-1] == 0  # the slow row ends last
    assert asyncio.run(collect(ordered=True)) == [0, 1, 2, 3, 4]


def test_window_bounds_reading_and_rows_in_flight() -> None:
    """The source is read at most `window` rows ahead of what was handed out, and
    at most `window` rows run at once, however slow the consumer."""
    state = {"read": 0, "running": 0, "most": 0}

    def source() -> Iterator[dict[str, int]]:
        for i in range(200):
            state["read"] += 1
            yield {"x": i}

    @plait.workflow
    async def track(row: dict) -> int:
        state["running"] += 1
        state["most"] = max(state["most"], state["running"])
        await asyncio.sleep(0.002)
        state["running"] -= 1
        return row["x"]

    async def consume() -> list[int]:
        seen = []
        async for r in plait.stream(track, source(), window=8):
            seen.append(r.value)
            # What was read, less what was handed out, is within the window.
            assert state["read"] - len(seen) <= 8
            await asyncio.sleep(0.001)  # a slow consumer
        return seen

    assert sorted(asyncio.run(consume())) == list(range(200))
    assert 1 < state["most"] <= 8


def test_stop_on_first_failed_row_and_max_failed_rows() -> None:
    with pytest.raises(plait.RowError, match="row 7 .*seven is not allowed") as info:
        plait.map(pipeline, rows(50), on_row_error="stop", window=4)
    assert info.value.row.ordinal == 7

    @plait.workflow
    async def odd_fails(row: dict) -> int:
        if row["x"] % 2:
            raise RuntimeError(f"odd {row['x']}")
        return row["x"]

    result = plait.map(odd_fails, rows(40), max_failed_rows=3, window=2,
                       raise_on_error=False)
    assert not result.ok and isinstance(result.error, plait.RowError)
    assert "more than max_failed_rows=3" in str(result.error)
    assert result.rows_failed == 4  # stopped at the fourth
    # Up to 3 failures are fine.
    ok = plait.map(odd_fails, rows(7), max_failed_rows=3)
    assert ok.ok and ok.rows_failed == 3 and ok.rows_done == 4


def test_bad_rows_are_row_errors_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": 1, "x": 1}\nnot json\n{"id": 3}\n\xff\xfe\n{"id": 5, "x": 5}\n'
                     b'{"id": 6, "x": "six"}\n')
    result = plait.map(pipeline, path, key="id", out=tmp_path / "out.jsonl",
                       journal=str(tmp_path / "runs.db"))
    assert [r["x"] for r in read_jsonl(tmp_path / "out.jsonl")] == [1, 5]
    assert result.rows_done == 2 and result.rows_failed == 4
    errors = {r.ordinal: r.error for r in result.failures}
    assert "JSON" in errors[1] or "json" in errors[1]
    assert "x" in errors[2]  # the missing column
    assert "UTF-8" in errors[3] or "utf-8" in errors[3]
    assert "ToolArgumentError" in errors[5] or "int" in errors[5]  # a wrong type


def test_journaled_job_resumes_without_repaying(tmp_path: Path) -> None:
    """A job stopped by a failed row, resumed with retry_failed after the cause is
    fixed: finished rows are skipped (no call repeated), the failed row runs again
    and its calls that had finished are replayed from the journal."""
    src = write_jsonl(tmp_path / "in.jsonl", 40)
    journal = str(tmp_path / "runs.db")
    out = tmp_path / "out.jsonl"
    first = plait.map(pipeline, src, key="id", out=out, journal=journal, run_id="job-1",
                      window=4)
    assert first.rows_failed == 1 and not out.with_suffix(".jsonl.tmp").exists()
    before = dict(CALLS)
    second = plait.map(pipeline, src, key="id", out=out, journal=journal, run_id="job-1",
                       window=4)
    assert CALLS == before  # every row was done, dropped or failed: nothing ran
    assert second.rows_skipped == 40 and second.rows_failed == 1
    third = plait.map(pipeline, src, key="id", out=out, journal=journal, run_id="job-1",
                      retry_failed=True)
    # Only the failed row ran again; its double() and check() came from the journal.
    assert CALLS == {**before, "explode": before["explode"] + 1}
    assert third.rows_skipped == 39
    xs = [r["x"] for r in read_jsonl(out)]
    assert xs == [i for i in range(40) if i % 3 != 0 and i != 7]  # each row once, in order


def test_resume_refuses_a_changed_source_named_by_position(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", 5)
    journal = str(tmp_path / "runs.db")
    plait.map(pipeline, src, journal=journal, run_id="pos")
    write_jsonl(src, 6)
    with pytest.raises(plait.PlaitError, match="source has changed"):
        plait.map(pipeline, src, journal=journal, run_id="pos")


def test_duplicate_keys_fail_the_later_row(tmp_path: Path) -> None:
    data = [{"id": 1, "x": 1}, {"id": 2, "x": 2}, {"id": 1, "x": 4}]
    result = plait.map(pipeline, data, key="id", journal=str(tmp_path / "runs.db"))
    assert result.rows_done == 2 and result.rows_failed == 1
    assert "keys must be unique" in result.failures[0].error


def test_a_resumed_job_refuses_a_twin_the_first_process_never_reached(tmp_path: Path) -> None:
    """Row 30 has the key of row 11. The first process stops at row 7 (on_row_error
    "stop") before it reads row 30; the resumed one skips key 11 as finished, and
    finds at its end that row 30 has no record: it is a twin, recorded failed as
    the first process would have recorded it."""
    src = tmp_path / "in.jsonl"
    data = [{"id": 11 if i == 30 else i, "x": i} for i in range(40)]
    src.write_text("".join(json.dumps(r) + "\n" for r in data))
    journal = str(tmp_path / "runs.db")
    first = plait.map(pipeline, str(src), key="id", journal=journal, run_id="twin",
                      on_row_error="stop", window=2, raise_on_error=False)
    assert first.status == "failed" and first.rows_done + first.rows_dropped < 20
    second = plait.map(pipeline, str(src), key="id", journal=journal, run_id="twin",
                       window=2)
    # Besides row 7 (failed in the first process) and row 30, a row that was in
    # flight at the stop may fail: its non-idempotent call is in doubt.
    twins = [r for r in second.failures if "keys must be unique" in (r.error or "")]
    assert [(r.ordinal, r.key) for r in twins] == [(30, "#30")]
    assert second.ok and second.rows_failed == 2 + len(second.failures) - len(twins)
    assert second.rows_done + second.rows_dropped + second.rows_failed == 40


def test_a_journaled_iterable_needs_a_key(tmp_path: Path) -> None:
    with pytest.raises(plait.PlaitError, match="key="):
        plait.map(pipeline, rows(3), journal=str(tmp_path / "runs.db"))


def test_rows_overlap_across_stages() -> None:
    """Stages are not barriers: with 20 rows of two 50 ms calls and a window of 20,
    the job takes about one row's time, not 20."""
    @plait.tool
    async def slow(x: int) -> int:
        """Waits 50 ms."""
        await asyncio.sleep(0.05)
        return x

    @plait.workflow
    async def two(row: dict) -> int:
        return await slow(await slow(row["x"]))

    t = time.perf_counter()
    result = plait.map(two, rows(20), window=20)
    assert result.rows_done == 20
    assert time.perf_counter() - t < 0.5


def test_memory_is_bounded_by_the_window_not_the_dataset(tmp_path: Path) -> None:
    """Peak traced memory over 50,000 rows is about that over 5,000: finished rows
    leave memory (the source is a generator: nothing else holds them)."""
    import tracemalloc

    @plait.tool
    async def length(text: str) -> int:
        """The text's length."""
        return len(text)

    @plait.workflow
    async def measure(row: dict) -> dict:
        return {"n": await length(row["text"])}

    def source(n: int) -> Iterator[dict[str, str]]:
        for i in range(n):
            yield {"text": f"row {i} " + "x" * 200}

    def peak(n: int) -> int:
        tracemalloc.start()
        try:
            result = plait.map(measure, source(n), window=64, out=tmp_path / f"{n}.jsonl")
            assert result.rows_done == n
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(500)  # warm up: imports, caches
    small, large = peak(5_000), peak(50_000)
    assert large < 1.2 * small + 256 * 1024, (small, large)


def test_rows_share_one_model_and_its_limits() -> None:
    """LLM calls of every row go to the job's one model object: its concurrency
    limit holds across rows, and its counters see every call once."""
    from plait.llm import SimLLM

    llm = SimLLM(ttft=0.01, tps=2000, lengths="fixed:5", max_concurrency=4)

    @plait.workflow
    async def ask_twice(row: dict) -> dict:
        first = plait.generate(f"first {row['x']}")  # both start at once
        second = plait.generate(f"second {row['x']}")
        return {"x": row["x"], "a": await first, "b": await second}

    result = plait.map(ask_twice, rows(20), window=20, model=llm)
    assert result.rows_done == 20
    assert llm.stats.served == 40
    assert llm.limits.max_in_flight == 4  # 40 calls wanted at once; the limit held


def test_a_question_per_row_with_asker(tmp_path: Path) -> None:
    """An evaluation sweep: each row's question gets its own plan; the output keeps
    the row's columns beside the answer; the job resumes like any other."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps([
        {"role": "planner", "match": "Everest",
         "reply": '1. lookup("Mount Everest", "height")\n2. lookup("K2", "height")\n3. join()'},
        {"role": "planner", "reply": '1. lookup("K2", "height")\n2. join()'},
        {"role": "joiner", "match": "Everest",
         "reply": '{"action": "finish", "answer": "Mount Everest"}'},
        {"role": "joiner", "reply": '{"action": "finish", "answer": "8611 m"}'},
    ]))
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        json.dumps({"id": "q1", "question": "Which is taller, Mount Everest or K2?",
                    "expected": "Mount Everest"}) + "\n"
        + json.dumps({"id": "q2", "question": "How tall is K2?", "expected": "8611 m"}) + "\n"
        + json.dumps({"id": "q3", "text": "no question here"}) + "\n")
    journal = str(tmp_path / "runs.db")
    sweep = plait.asker("plait.examples.tools", model=f"sim:ttft=0.01,tps=1000,script={script}")
    result = plait.map(sweep, questions, key="id", out=tmp_path / "answers.jsonl",
                       journal=journal, run_id="sweep")
    answers = read_jsonl(tmp_path / "answers.jsonl")
    assert [(a["id"], a["answer"], a["expected"]) for a in answers] == [
        ("q1", "Mount Everest", "Mount Everest"), ("q2", "8611 m", "8611 m")]
    assert result.rows_failed == 1 and "no question" in result.failures[0].error
    # Every row's calls are in the job's run, under its row: planner, tasks, joiner.
    from plait.journal import open_journal

    j = open_journal(journal)
    try:
        intents, _ = j.load_row("sweep", '"q1"')
        assert sorted(i.tool for i in intents.values()) == ["joiner", "lookup", "lookup",
                                                            "planner"]
    finally:
        j.close()
    again = plait.map(sweep, questions, key="id", journal=journal, run_id="sweep")
    assert again.rows_skipped == 3 and again.tokens == 0


def test_stop_cancels_the_rows_still_running() -> None:
    @plait.workflow
    async def first_fails(row: dict) -> int:
        if row["x"] == 0:
            raise ValueError("row 0 is bad")
        await asyncio.sleep(30)  # would hold the job for 30 s
        return row["x"]

    t = time.perf_counter()
    with pytest.raises(plait.RowError, match="row 0 is bad"):
        plait.map(first_fails, rows(10), on_row_error="stop")
    assert time.perf_counter() - t < 5
