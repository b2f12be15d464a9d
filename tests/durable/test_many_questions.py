"""Hundreds of journaled questions at once in one process, on PostgreSQL by DSN:
every one answers, the journal's connections stay within its pool, and no
answered question stays in memory.

Each question opens its journal from the DSN string, as `plait.ask(journal=...)`
does for a user; the model is plait's simulated backend with a scripted plan
and answer.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import uuid

import pytest

import plait
from plait.runtime._engine import Run
from plait.journal import open_journal
from plait.journal._pgpool import open_pools
from plait.llm import SimLLM

from tests.durable.two_lookups import lookup_tool, script

QUESTIONS = 300
POOL_MAX = 4
lookup = lookup_tool(0.005)


def _backends(dsn: str, app: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as admin:
        return admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
        ).fetchone()[0]


@pytest.mark.timeout(60)
def test_hundreds_of_journaled_questions_at_once(postgres_dsn: str, pg_journal: str) -> None:
    app = f"plait_many_{uuid.uuid4().hex[:10]}"
    spec = f"{pg_journal}&application_name={app}&pool_max={POOL_MAX}"
    most = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            most[0] = max(most[0], _backends(postgres_dsn, app))
            time.sleep(0.05)

    async def one(i: int) -> plait.Answer:
        model = SimLLM(script, ttft=0.0, tps=5000)
        return await plait.aask(f"x and y? ({i})", [lookup], model=model, journal=spec,
                                run_id=f"q{i}", timeout=30)

    async def main() -> list[plait.Answer | BaseException]:
        return await asyncio.gather(*(one(i) for i in range(QUESTIONS)), return_exceptions=True)

    watcher = threading.Thread(target=watch)
    watcher.start()
    t0 = time.monotonic()
    try:
        answers = asyncio.run(main())
    finally:
        stop.set()
        watcher.join(10)
    elapsed = time.monotonic() - t0
    failed = [a for a in answers if isinstance(a, BaseException)]
    assert not failed, f"{len(failed)} of {QUESTIONS} failed, first: {failed[0]!r}"
    assert all(a.text == "x and y" for a in answers)  # type: ignore[union-attr]
    assert 1 <= most[0] <= POOL_MAX, most[0]
    assert elapsed < 40, elapsed

    with open_journal(pg_journal) as journal:
        runs = journal.list_runs(limit=QUESTIONS + 1)
        assert len(runs) == QUESTIONS and {r.status for r in runs} == {"done"}
        assert len(journal.load("q123").results) == 4  # planner, two lookups, joiner
    # Every question gave its journal back: the pool is closed; and no run (which
    # holds its nodes, its LLM calls' hooks and through them the session) outlives
    # its question.
    assert not [p for p in open_pools() if app in p.key.conninfo]
    gc.collect()
    schema = f"(schema {pg_journal.rsplit('schema=', 1)[-1]})"  # this test's own journal
    assert not [o for o in gc.get_objects() if type(o) is Run and o.durable is not None
                and o.durable.journal.location.endswith(schema)]
