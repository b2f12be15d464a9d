"""The contract every executor passes (dask's conformance-mixin idea).

A test module subclasses `ExecutorContract`, naming what `plait.arun(...,
executor=...)` takes ("local", "ray", an instance) or giving an `executor` fixture. Every test runs
real tools through a real run; what a tool did is written to files under `tmp_path`
(a remote call runs in another process, so in-memory counters would not see it).

- value: async and sync tools, a chain passing values from node to node;
- errors: the tool's own exception, as itself, and the same NodeError text;
- cancellation: a timed-out or cancelled node stops its call (a sync call in a
  local thread cannot be stopped: `stops_threads` False says it is abandoned);
- context: node_key(), add_tokens() and add_record() inside the call count for
  its node;
- the controller's policy: concurrency limits, retries, journal replay (no call).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

import plait
from plait import RunError
from plait.executors import executor_of

# ---------------------------------------------------------------- tools
# Module-level, so a remote worker imports them by name (tests/ is on its path).


def _append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@plait.tool
async def double(x: int) -> int:
    """2x, async."""
    await asyncio.sleep(0)
    return 2 * x


@plait.tool
def add_one(x: int) -> int:
    """x + 1, sync."""
    return x + 1


@plait.tool
def fails(x: int) -> int:
    """Raises a ValueError naming x."""
    raise ValueError(f"bad input {x}")


@plait.tool
async def fails_async(x: int) -> int:
    """Raises a KeyError, async."""
    raise KeyError(f"no row {x}")


@plait.tool
def context(x: int) -> dict[str, Any]:
    """What the call sees of its node; counts tokens and a record field."""
    plait.add_tokens(7)
    plait.add_tokens(5)
    from plait.runtime._engine import add_record

    add_record(where=str(os.getpid()))
    return {"key": plait.node_key(), "x": x}


@plait.tool
async def context_async(x: int) -> str:
    """node_key(), async, with tokens."""
    plait.add_tokens(3)
    return plait.node_key()


# A ticking call goes on until stopped, or until the test says it has seen enough
# (`path`.end: an abandoned local thread must end before the test session does).
TICKS = 600  # 30 s at most


def _ticking(path: str) -> bool:
    return not os.path.exists(path + ".end")


@plait.tool(timeout=1.0)
def ticks_sync(path: str) -> int:
    """Ticks into `path` every 50 ms, unless stopped."""
    n = 0
    while n < TICKS and _ticking(path):
        _append(path, str(n))
        time.sleep(0.05)
        n += 1
    return n


@plait.tool(timeout=1.0)
async def ticks_async(path: str) -> int:
    """Ticks into `path` every 50 ms, unless cancelled."""
    n = 0
    while n < TICKS and _ticking(path):
        _append(path, str(n))
        await asyncio.sleep(0.05)
        n += 1
    return n


@plait.tool
def slow_then_fail(path: str) -> int:
    """Fails after `path` shows a tick (so the sibling is surely running)."""
    deadline = time.monotonic() + 20
    while not _lines(Path(path)) and time.monotonic() < deadline:
        time.sleep(0.02)
    raise RuntimeError("sibling failed")


@plait.tool
def ticks_untimed(path: str) -> int:
    """Ticks into `path` every 50 ms, no timeout of its own."""
    n = 0
    while n < TICKS and _ticking(path):
        _append(path, str(n))
        time.sleep(0.05)
        n += 1
    return n


@plait.tool(concurrency=2)
def limited(path: str, n: int) -> int:
    """Writes when it starts and ends; 0.3 s in between."""
    _append(path, f"start {time.time()!r}")
    time.sleep(0.3)
    _append(path, f"end {time.time()!r}")
    return n


@plait.tool(retries=2, backoff=0.0, jitter=0.0)
def flaky(path: str) -> str:
    """Fails on its first two attempts (counted in `path`), then succeeds."""
    _append(path, "attempt")
    if len(_lines(Path(path))) < 3:
        raise ConnectionError("try again")
    return "ok"


@plait.tool
def counted(path: str, x: int) -> int:
    """x * 10; each call is counted in `path`; 4 tokens."""
    _append(path, str(x))
    plait.add_tokens(4)
    return x * 10


# ---------------------------------------------------------------- workflows


@plait.workflow
async def chain(x: int) -> int:
    return await add_one(double(add_one(x)))


@plait.workflow
async def one_failure(x: int) -> int:
    return await fails(x)


@plait.workflow
async def both_contexts(x: int) -> Any:
    return [await context(x), await context_async(x)]


@plait.workflow
async def one(tool: Any, path: str) -> Any:
    return await tool(path)


@plait.workflow
async def cancel_sibling(path: str) -> Any:
    ticking = ticks_untimed(path)
    return [await slow_then_fail(path), await ticking]


@plait.workflow
async def six_limited(path: str) -> Any:
    return [await r for r in [limited(path, n) for n in range(6)]]


@plait.workflow
async def with_llm(x: int) -> Any:
    said = plait.generate(f"say {x}", model="sim:ttft=0.01,tps=2000", max_tokens=8)
    return [await said, await add_one(x)]


@plait.workflow
async def counted_pair(path: str) -> int:
    a = counted(path, 1)
    b = counted(path, 2)
    return await a + await b


def _stops(executor: Any, sync: bool) -> bool:
    ex = executor_of(executor)
    return not sync or (ex is not None and ex.stops_threads)


class ExecutorContract:
    """Subclass and set `name` (what `executor=` takes), or override the `executor`
    fixture (one that needs a cluster, say)."""

    name: Any = "local"

    @pytest.fixture
    def executor(self) -> Any:
        return self.name

    async def _run(self, executor: Any, wf: Any, *args: Any, **kw: Any) -> plait.RunResult:
        return await asyncio.wait_for(plait.arun(wf, *args, executor=executor, **kw), 60)

    def run(self, executor: Any, wf: Any, *args: Any, **kw: Any) -> plait.RunResult:
        return asyncio.run(self._run(executor, wf, *args, **kw))

    # ------------------------------------------------------------ value

    def test_values_flow_through_async_and_sync_tools(self, executor: Any) -> None:
        result = self.run(executor, chain, 4)
        assert result.value == 11  # (4 + 1) * 2 + 1
        assert [n.tool for n in result.nodes] == ["add_one", "double", "add_one"]
        assert all(n.state == "done" and n.attempts == 1 for n in result.nodes)

    # ------------------------------------------------------------ errors

    def test_a_tool_error_is_itself_and_reads_as_on_every_executor(self, executor: Any) -> None:
        with pytest.raises(RunError) as info:
            self.run(executor, one_failure, 7)
        error = info.value.result.error
        assert isinstance(error, plait.NodeError)
        assert str(error) == "node $0 (fails): ValueError: bad input 7"
        assert type(error.__cause__) is ValueError
        assert str(error.__cause__) == "bad input 7"

        @plait.workflow
        async def async_failure() -> int:
            return await fails_async(3)

        result = self.run(executor, async_failure, raise_on_error=False)
        assert str(result.error) == "node $0 (fails_async): KeyError: 'no row 3'"
        assert type(result.error.__cause__) is KeyError

    # ------------------------------------------------------------ cancellation

    @pytest.mark.parametrize("tool", [ticks_async, ticks_sync], ids=["async", "sync"])
    def test_a_timed_out_call_is_stopped(self, executor: Any, tool: Any,
                                         tmp_path: Path) -> None:
        path = tmp_path / "ticks"
        started = time.monotonic()
        result = self.run(executor, one, tool, str(path), raise_on_error=False)
        assert time.monotonic() - started < 15  # the run does not wait for the call
        assert result.status == "failed"
        assert isinstance(result.error.__cause__, TimeoutError)
        assert _lines(path), "the call never started"
        self._assert_stopped(path, _stops(executor, tool is ticks_sync))

    def test_a_cancelled_call_is_stopped(self, executor: Any, tmp_path: Path) -> None:
        path = tmp_path / "ticks"
        result = self.run(executor, cancel_sibling, str(path), on_error="cancel",
                          raise_on_error=False)
        states = [(n.state, str(n.error)) for n in result.nodes]
        assert [s for s, _ in states] == ["cancelled", "failed"], states
        assert str(result.error) == "node $1 (slow_then_fail): RuntimeError: sibling failed"
        self._assert_stopped(path, _stops(executor, sync=True))

    @staticmethod
    def _assert_stopped(path: Path, stops: bool) -> None:
        try:
            time.sleep(0.5)  # a tick already under way lands
            before = len(_lines(path))
            time.sleep(1.0)
            after = len(_lines(path))
            if stops:
                assert after == before, f"the call went on after it was stopped: {before} -> {after}"
            else:  # a local thread is abandoned, not stopped: it goes on
                assert after > before
        finally:
            Path(f"{path}.end").touch()

    # ------------------------------------------------------------ context

    def test_node_key_and_tokens_count_for_the_node(self, executor: Any) -> None:
        result = self.run(executor, both_contexts, 5)
        reference = self.run("local", both_contexts, 5)
        (seen, key_async), (ref_seen, ref_key_async) = result.value, reference.value
        assert seen["x"] == 5
        assert seen["key"] == ref_seen["key"] and key_async == ref_key_async
        assert seen["key"] != key_async and len(seen["key"]) >= 16
        assert [n.tokens for n in result.nodes] == [12, 3]
        assert result.tokens == 15
        assert result.nodes[0].extra["where"].isdigit()

    def test_an_llm_call_runs_in_the_controller_beside_the_executors_calls(
            self, executor: Any) -> None:
        result = self.run(executor, with_llm, 3)  # it needs the run's pool of models
        reference = self.run("local", with_llm, 3)
        assert result.value == reference.value and result.value[1] == 4
        assert [n.tool for n in result.nodes] == ["generate", "add_one"]

    # ------------------------------------------------------------ the controller's policy

    def test_a_concurrency_limit_holds(self, executor: Any, tmp_path: Path) -> None:
        path = tmp_path / "spans"
        assert self.run(executor, six_limited, str(path)).value == list(range(6))
        events = sorted((float(t), kind) for kind, t in (line.split() for line in _lines(path)))
        assert len(events) == 12
        running = peak = 0
        for _, kind in events:  # at a tie an end sorts first: it came first or at once
            running += 1 if kind == "start" else -1
            peak = max(peak, running)
        assert peak <= 2

    def test_retries_follow_the_tool_policy(self, executor: Any, tmp_path: Path) -> None:
        path = tmp_path / "attempts"
        result = self.run(executor, one, flaky, str(path))
        assert result.value == "ok"
        assert result.nodes[0].attempts == 3
        assert len(_lines(path)) == 3

    def test_a_journaled_call_is_replayed_not_called(self, executor: Any,
                                                      tmp_path: Path) -> None:
        path, journal = tmp_path / "calls", str(tmp_path / "runs.db")
        first = self.run(executor, counted_pair, str(path), journal=journal, run_id="pair")
        assert first.value == 30 and first.tokens == 8
        again = self.run(executor, counted_pair, str(path), journal=journal, run_id="pair")
        assert again.value == 30 and again.replayed == 2
        assert again.tokens == 8  # the counts came back with the values and were journaled
        assert sorted(_lines(path)) == ["1", "2"]  # each call ran once
