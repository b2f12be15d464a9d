"""Sharded dataset jobs on a real Ray cluster (tests/ray/conftest.py: three raylets
on 127.0.0.1), journaled to a real PostgreSQL, the model a real HTTP sim-server
that logs every prompt it is asked (so a call paid twice is seen, apart from the
journal). Losses are real: a node removed with its raylet, a worker process killed
by its pid, a controller process SIGKILLed and resumed by another."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plait
from plait.data import resume_map
from plait.data._ray import Controller
from plait.journal import open_journal
from tests._support import end
from tests.ray.shard_rows import MODEL, Asked, dropped, expected_ids, pipeline, write_source

ROOT = Path(__file__).resolve().parents[2]
WINDOW = 8


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Asked]]:
    from plait.llm import SimServer

    asked = Asked()
    with SimServer(asked, ttft=0.02, tps=1000) as srv:
        # Forwarded to the workers by the controller (never a key).
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        yield srv, asked


@pytest.fixture
def assignments(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, Any]]:
    """(shard index, worker handle) of every assignment, in order."""
    seen: list[tuple[int, Any]] = []
    monkeypatch.setattr(Controller, "on_assign",
                        staticmethod(lambda shard, handle: seen.append((shard.index, handle))))
    return seen


def _ids(out: Path) -> list[int]:
    return [json.loads(line)["id"] for line in out.read_text().splitlines()]


def _paid_calls(n: int) -> int:
    return n + len(expected_ids(n))


@pytest.mark.timeout(120)
def test_job_completes_every_key_once_within_the_global_budget(
        ray_cluster: Any, tmp_path: Path, pg_journal: str, server: Any,
        assignments: list[tuple[int, Any]]) -> None:
    srv, asked = server
    n = 300
    src, out = write_source(tmp_path / "in.jsonl", n), tmp_path / "out.jsonl"
    result = plait.map(pipeline, str(src), key="id", out=str(out), journal=pg_journal,
                       run_id="job", executor="ray", workers=3, shard_rows=25,
                       window=WINDOW, model=MODEL)
    assert result.ok and result.rows_done == len(expected_ids(n))
    assert result.rows_dropped == n - len(expected_ids(n))
    assert _ids(out) == expected_ids(n)  # every kept row once, in source order
    assert asked.count() == _paid_calls(n) and asked.repaid() == 0
    # Pull-style: every shard handed out once, spread over the three workers.
    assert sorted(i for i, _ in assignments) == list(range(12))
    assert len({h for _, h in assignments}) == 3
    # The model's limit (max_concurrency=24) is the job's, not each worker's.
    assert srv.stats.max_in_flight <= 24
    # Each shard's lease was taken once (epoch 1), in the job's journal.
    journal = open_journal(pg_journal)
    try:
        from plait.data._ray import shard_lease_id

        assert journal.get_lease(shard_lease_id("job", 0)).epoch == 1
    finally:
        journal.close()


@pytest.mark.timeout(120)
def test_rows_sharing_a_key_are_refused_across_shards(
        ray_cluster: Any, tmp_path: Path, pg_journal: str, server: Any) -> None:
    """Twins (two rows, one key) in two shards, and in one: one of each runs, the
    other is recorded failed as a local job records it, and no row goes missing
    unsaid. Twins in two shards may run at once (their calls are the same nodes)."""
    n = 100
    ids = list(range(n))
    ids[25] = 0  # a twin of row 0, first in the next shard: the two start at once
    ids[60] = 11  # a twin of row 11, two shards later
    ids[22] = 21  # a twin of row 21, in its shard
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i}) + "\n" for i in ids))
    out = tmp_path / "out.jsonl"
    result = plait.map(pipeline, str(src), key="id", out=str(out), journal=pg_journal,
                       run_id="twins", executor="ray", workers=3, shard_rows=25,
                       window=WINDOW, model=MODEL)
    assert result.ok and result.rows_failed == 3
    assert result.rows_done + result.rows_dropped + result.rows_failed == n
    kept = sorted({i for i in ids if not dropped(i)})
    assert sorted(_ids(out)) == kept  # each key once
    journal = open_journal(pg_journal)
    try:
        failed = journal.iter_rows("twins", status="failed")
    finally:
        journal.close()
    assert {r.ordinal for r in failed} <= {0, 25, 11, 60, 21, 22} and len(failed) == 3
    assert all(len({r.ordinal for r in failed} & pair) == 1 for pair in ({0, 25}, {11, 60}))
    assert all(r.row_key == f"#{r.ordinal}" and "keys must be unique" in r.error
               for r in failed)


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _run_in_thread(**kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def go() -> None:
        try:
            box["result"] = plait.map(pipeline, **kwargs)
        except BaseException as exc:  # the test thread re-raises it
            box["error"] = exc

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, box


def _loss_then_complete(tmp_path: Path, journal: str, asked: Asked,
                        assignments: list[tuple[int, Any]], lose: Any) -> None:
    """Start a 400-row job on 3 workers; once the first worker has paid some calls,
    `lose(handle)`; the job must complete with every key once, re-paying at most the
    calls that were in flight on the lost worker (one per row of its window)."""
    import ray

    n = 400
    src, out = write_source(tmp_path / "in.jsonl", n), tmp_path / "out.jsonl"
    thread, box = _run_in_thread(source=str(src), key="id", out=str(out), journal=journal,
                                 run_id="lossy", executor="ray", workers=3, shard_rows=40,
                                 window=WINDOW, model=MODEL)
    _wait_for(lambda: len({h for _, h in assignments}) == 3 and asked.count() > 150, 60,
              "the job to be under way on every worker")
    victim = assignments[0][1]
    lose(victim)
    thread.join(90)
    assert not thread.is_alive(), "the job did not end"
    if "error" in box:
        raise box["error"]
    result = box["result"]
    assert result.ok
    assert _ids(out) == expected_ids(n)  # every kept row exactly once
    shards = [i for i, _ in assignments]
    assert len(shards) > len(set(shards)), "no shard was re-assigned"
    assert set(shards) == set(range(10))
    assert asked.count() - asked.repaid() == _paid_calls(n)
    assert asked.repaid() <= 2 * WINDOW, f"{asked.repaid()} calls paid twice"
    del ray


@pytest.mark.timeout(150)
def test_a_node_removed_mid_job(ray_cluster: Any, tmp_path: Path, pg_journal: str,
                                server: Any, assignments: list[tuple[int, Any]],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A raylet of its own (added by this test) goes away with the worker on it."""
    import ray

    _, asked = server
    node = ray_cluster.cluster.add_node(num_cpus=1, object_store_memory=80 * 1024 * 1024,
                                        resources={"shard_victim": 1})
    ray_cluster.cluster.wait_for_nodes()
    node_id = node.node_id if hasattr(node, "node_id") else node.unique_id
    # The first worker goes to that node (the others SPREAD as usual).
    from plait.data._ray import _cluster

    started: list[int] = []
    real = _cluster.start_worker

    def start(ray_: Any, model: Any, share: Any, env: Any) -> Any:
        started.append(1)
        if len(started) == 1:
            actor = ray_.remote(_cluster.ShardWorker).options(
                max_restarts=0, max_task_retries=0, num_cpus=0, max_concurrency=8,
                resources={"shard_victim": 1})
            return actor.remote(model, share, env)
        return real(ray_, model, share, env)

    monkeypatch.setattr("plait.data._ray._controller.start_worker", start)
    removed = []

    def lose(handle: Any) -> None:
        where = ray.get(handle.where.remote(), timeout=10)
        assert where[1] == node_id
        ray_cluster.cluster.remove_node(node)
        removed.append(node)

    try:
        _loss_then_complete(tmp_path, pg_journal, asked, assignments, lose)
    finally:
        if not removed:
            ray_cluster.cluster.remove_node(node)


@pytest.mark.timeout(120)
def test_a_worker_process_killed_mid_shard(ray_cluster: Any, tmp_path: Path, pg_journal: str,
                                           server: Any,
                                           assignments: list[tuple[int, Any]]) -> None:
    import ray

    _, asked = server

    def lose(handle: Any) -> None:
        pid, _ = ray.get(handle.where.remote(), timeout=10)
        os.kill(pid, signal.SIGKILL)

    _loss_then_complete(tmp_path, pg_journal, asked, assignments, lose)


@pytest.mark.timeout(150)
def test_controller_killed_then_resumed(ray_cluster: Any, tmp_path: Path, pg_journal: str,
                                        server: Any) -> None:
    """SIGKILL the controller (a subprocess driver) mid-job; `plait.resume_map` in
    this process, against the same PostgreSQL journal, completes it: every key
    once, re-paying at most the calls in flight on the killed job's workers."""
    _, asked = server
    n = 400
    src, out = write_source(tmp_path / "in.jsonl", n), tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/ray/shard_rows.py"), ray_cluster.address,
         pg_journal, "ctl", str(src), str(out), "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for(lambda: asked.count() > 200 or proc.poll() is not None, 90,
                  "the controller's job to be under way")
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            end(proc)
    assert not out.exists()
    before = asked.count()
    result = resume_map("ctl", pg_journal)
    assert result.ok and result.rows_skipped > 0
    assert _ids(out) == expected_ids(n)
    assert asked.count() > before
    assert asked.count() - asked.repaid() == _paid_calls(n)
    # The killed job's workers had at most a window of rows (one call each) in flight.
    assert asked.repaid() <= 3 * 2 * WINDOW, f"{asked.repaid()} calls paid twice"


@pytest.mark.timeout(120)
def test_cli_map_on_the_cluster(ray_cluster: Any, tmp_path: Path, pg_journal: str) -> None:
    """docs/ray.md's command, against the test cluster: `plait map ... --ray ADDRESS
    --workers 2` writes the same rows as the job run locally."""
    out = tmp_path / "complaints.jsonl"
    args = ["examples/reviews.py:complaints", "examples/reviews.jsonl",
            "--model", "sim:script=examples/sim_reviews.json", "--journal", pg_journal]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "plait", "map", *args, "--out", str(out),
         "--ray", ray_cluster.address, "--workers", "2", "--run-id", "cli-ray", "--json"],
        capture_output=True, text=True, timeout=100, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["status"] == "done" and summary["rows_failed"] == 0
    local = tmp_path / "local.jsonl"
    proc = subprocess.run([sys.executable, "-m", "plait", "map", *args, "--out", str(local),
                           "--run-id", "cli-local"],
                          capture_output=True, text=True, timeout=100, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_text() == local.read_text() and out.read_text()


@pytest.mark.timeout(120)
def test_a_row_that_stops_the_job_stops_every_worker(ray_cluster: Any, tmp_path: Path,
                                                     pg_journal: str) -> None:
    from tests.ray.shard_rows import fails_at_13

    src, out = write_source(tmp_path / "in.jsonl", 200), tmp_path / "out.jsonl"
    result = plait.map(fails_at_13, str(src), key="id", out=str(out), journal=pg_journal,
                       run_id="stops", executor="ray", workers=2, shard_rows=20,
                       on_row_error="stop", raise_on_error=False)
    assert result.status == "failed" and result.rows_failed == 1
    assert "row 13 is bad" in str(result.error) and result.error.row.key == "13"
    assert not out.exists()  # a stopped job writes no output
    # Resumed, recording failures: the failed row stays failed (it runs again only
    # with retry_failed=True); the rows the stop cut short are finished, each once.
    again = resume_map("stops", pg_journal, on_row_error="record")
    assert again.ok and again.rows_done == 199 and again.rows_failed == 1
    assert _ids(out) == [i for i in range(200) if i != 13]
