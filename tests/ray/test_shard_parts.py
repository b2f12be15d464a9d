"""The parts of a sharded job that need no cluster: shard descriptors, budget
shares, live limits, the SQLite placement rule, and fencing, on the journal and
on a worker's run of a shard (run here in this process, as an actor runs it)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from types import SimpleNamespace
from pathlib import Path
from typing import Any

import pytest

import plait
from plait.data import read_jsonl
from plait.data._ray._budget import check_budget, limits_of, shares
from plait.data._ray._cluster import sqlite_refusal
from plait.data._ray._plan import RangeSource, Shard, shard_lease_id, split
from plait.data._ray._worker import ShardFencedError, ShardTask, WorkerState, run_shard
from plait.journal import Intent, RowRecord, RunRecord, StaleLeaseError, open_journal
from plait.llm._limits import Limits
from tests._support import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_shards_cover_the_rows_once_in_order() -> None:
    shards = split(103, 25, "sha256:x")
    assert [(s.start, s.stop) for s in shards] == [(0, 25), (25, 50), (50, 75), (75, 100),
                                                    (100, 103)]
    assert [s.index for s in shards] == [0, 1, 2, 3, 4]
    assert split(0, 10, "f") == []
    with pytest.raises(ValueError):
        split(10, 0, "f")


def test_a_range_source_keeps_global_ordinals(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(10)))
    part = RangeSource(read_jsonl(src), 3, 7)

    async def collect() -> list[tuple[int, int]]:
        return [(r.ordinal, r.data["id"]) async for r in part.aiter_rows()]

    assert asyncio.run(collect()) == [(3, 3), (4, 4), (5, 5), (6, 6)]


def test_budget_shares_sum_to_the_job_limit() -> None:
    limits = limits_of("openai:gpt-x,max_concurrency=10,requests_per_minute=600")
    assert limits == {"max_concurrency": 10, "requests_per_minute": 600.0}
    assert limits_of("sim:ttft=0.1,tokens_per_minute=9000") == {"tokens_per_minute": 9000.0}
    assert limits_of("local") == {} and limits_of(None) == {}
    split3 = shares(limits, 3)
    assert [s["max_concurrency"] for s in split3] == [4, 3, 3]
    assert sum(s["requests_per_minute"] for s in split3) == pytest.approx(600)
    # A lost worker: the two left share the whole budget again.
    assert [s["max_concurrency"] for s in shares(limits, 2)] == [5, 5]
    assert check_budget(limits, 10) is None
    assert "max_concurrency=10" in (check_budget(limits, 11) or "")


def test_limits_resize_moves_budget_live() -> None:
    async def go() -> None:
        limits = Limits(2)
        tickets = [await limits.acquire(), await limits.acquire()]
        third = asyncio.ensure_future(limits.acquire())
        await asyncio.sleep(0.01)
        assert not third.done()
        limits.resize(3)  # a worker went: this one's share grew
        await asyncio.sleep(0)
        assert third.done() and limits.in_flight == 3
        limits.resize(1)  # shrink: calls in flight keep their turn, new ones wait
        fourth = asyncio.ensure_future(limits.acquire())
        for t in [*tickets, third.result()]:
            limits.release(t, None, ok=True)
        await asyncio.sleep(0)
        assert fourth.done() and limits.in_flight == 1
        limits.resize(None, requests_per_minute=60)
        assert limits.limit is None and limits.rate is not None

    asyncio.run(go())


def test_sqlite_only_when_every_node_is_on_this_host() -> None:
    assert sqlite_refusal(["10.0.0.5"], {"10.0.0.5", "127.0.0.1"}) is None
    why = sqlite_refusal(["10.0.0.5", "10.0.0.9"], {"10.0.0.5"})
    assert why is not None and "10.0.0.9" in why and "postgresql://" in why


# ---------------------------------------------------------------- fencing


def _refence(journal: Any, held: Any) -> Any:
    """What the controller does to re-assign a shard: a new epoch of its lease."""
    from plait.data._ray._controller import SHARD_TTL

    return journal.acquire(held.run_id, ttl=SHARD_TTL, pid=0)


def test_a_write_under_an_old_shard_epoch_is_refused(journal_spec: str) -> None:
    journal = open_journal(journal_spec)
    try:
        journal.create_run(RunRecord("job", "map:x", {}))
        lid = shard_lease_id("job", 3)
        first = _refence(journal, SimpleNamespace(run_id=lid))
        journal.write([Intent("job", "k1", "t", "{}", 1, 0.0, '"a"')], lease=first)
        second = _refence(journal, first)
        assert second.epoch == first.epoch + 1
        with pytest.raises(StaleLeaseError):
            journal.write(rows=[RowRecord("job", '"a"', 0, "done", {"v": 1})], lease=first)
        assert journal.row_status("job", ['"a"']) != {'"a"': "done"}  # nothing merged
        journal.write(rows=[RowRecord("job", '"b"', 1, "done", {"v": 2})], lease=second)
        assert journal.row_status("job", ['"b"']) == {'"b"': "done"}
        # Another shard's lease is not touched by this one's epochs.
        assert _refence(journal, SimpleNamespace(run_id=shard_lease_id("job", 4))).epoch == 1
    finally:
        journal.close()


@plait.tool(idempotent=True)
async def double(x: int) -> int:
    return 2 * x


@plait.workflow
async def doubled(row: dict) -> dict:
    return {"id": row["id"], "y": await double(row["id"])}


def test_a_fenced_worker_merges_nothing(journal_spec: str, tmp_path: Path) -> None:
    """A worker still running a shard that was re-assigned (presumed dead): its
    writes are refused and the shard's rows are the new holder's alone."""
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(20)))
    source = read_jsonl(src)
    journal = open_journal(journal_spec)
    state = WorkerState(None)
    try:
        journal.create_run(RunRecord("job", "map:doubled", {}))
        shard = Shard(0, 0, 20, source.fingerprint() or "")
        old = _refence(journal, SimpleNamespace(run_id=shard_lease_id("job", 0)))
        new = _refence(journal, old)

        def task(lease: Any) -> ShardTask:
            return ShardTask("job", journal_spec, source.description, "id", shard, lease,
                             window=4, on_row_error="record", retry_failed=False,
                             runner=doubled.fn)

        with pytest.raises(ShardFencedError, match="refused, never merged"):
            asyncio.run(run_shard(task(old), state))
        assert journal.count_rows("job") == {"done": 0, "dropped": 0, "failed": 0}
        summary = asyncio.run(run_shard(task(new), state))
        assert (summary.done, summary.epoch) == (20, new.epoch)
        rows = journal.iter_rows("job", status="done")
        assert [r.value for r in rows] == [{"id": i, "y": 2 * i} for i in range(20)]
    finally:
        state.close()
        journal.close()


# ---------------------------------------------------------------- errors


def test_ray_missing_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from plait.llm import MissingExtraError

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1}\n')
    with pytest.raises(MissingExtraError, match=r"pip install 'plait\[ray\]'"):
        plait.map(doubled, str(src), journal=str(tmp_path / "j.db"), executor="ray",
                  workers=2)


@pytest.mark.timeout(60)
def test_cli_unreachable_cluster_names_the_address_not_the_password(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1}\n')
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "plait", "map", "tests.ray.test_shard_parts:doubled", str(src),
         "--ray", address, "--workers", "2",
         "--journal", "postgresql://plait:s3cret-pw@127.0.0.1:5432/test"],
        capture_output=True, text=True, timeout=50, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert f"cannot reach the Ray cluster at {address}" in proc.stderr
    assert "s3cret-pw" not in proc.stderr + proc.stdout


def test_a_resumed_controller_fences_every_earlier_shard(journal_spec: str) -> None:
    """Shards cut otherwise on resume (other workers, other shard_rows): every lease
    the dead controller handed out is taken over before any shard is assigned."""
    from plait.data._ray import Controller, Plan

    journal = open_journal(journal_spec)
    try:
        journal.create_run(RunRecord("job", "map:x", {}))
        # An earlier controller's (of this very process: a job that failed, resumed
        # here): 5 shards, one re-assigned once.
        held = [_refence(journal, SimpleNamespace(run_id=shard_lease_id("job", i)))
                for i in range(5)]
        held[2] = _refence(journal, held[2])
        job = SimpleNamespace(run_id="job", durable=SimpleNamespace(journal=journal))
        plan = Plan(journal_spec, 2, None, 7, None, None)
        controller = Controller(job, plan, runner=None)  # type: ignore[arg-type]
        assert controller.fence_earlier() == 5
        for lease in held:
            with pytest.raises(StaleLeaseError):
                journal.write(rows=[RowRecord("job", '"z"', 0, "done", {})], lease=lease)
        assert journal.count_rows("job")["done"] == 0
    finally:
        journal.close()
