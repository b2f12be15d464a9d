"""The asyncio driver through the public API: workflows, graphs, events, failures."""

from __future__ import annotations

import asyncio
import gc
import random
import threading
import time
import warnings
from collections import Counter
from typing import Any

import pytest

import plait
from plait import (
    Graph,
    GraphError,
    NodeError,
    NodeFinished,
    NodeStarted,
    Ref,
    RunError,
    Template,
)


class Gauge:
    """Counts calls in flight, overall and per key; thread-safe for sync tools."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    def enter(self, *keys: str) -> None:
        with self.lock:
            for k in keys:
                self.now[k] += 1
                self.peak[k] = max(self.peak[k], self.now[k])

    def exit(self, *keys: str) -> None:
        with self.lock:
            for k in keys:
                self.now[k] -= 1


@plait.tool
async def step(name: str, seconds: float = 0.0, after: Any = None) -> str:
    """Sleep, then return `name`; `after` only carries dependencies."""
    await asyncio.sleep(seconds)
    return name


@plait.tool
async def number(x: int) -> int:
    return x


@plait.tool
def add(a: int, b: int) -> int:
    return a + b


@plait.tool
async def total(xs: list[int], weights: dict[str, int], pair: tuple[int, int]) -> int:
    return sum(xs) + 10 * sum(weights.values()) + 100 * pair[0] + 1000 * pair[1]


@plait.tool
async def echo(text: str) -> str:
    return text


class Events(list):
    """A listener that keeps every event, with a few queries."""

    def __call__(self, event: plait.Event) -> None:
        self.append(event)

    def index_of(self, kind: type, node: int) -> int:
        found = [k for k, e in enumerate(self) if type(e) is kind and e.node == node]
        assert len(found) == 1, f"{kind.__name__} for node {node}: {len(found)} events"
        return found[0]

    def of(self, kind: type) -> list:
        return [e for e in self if type(e) is kind]


def run_bounded(coro: Any, limit: float = 10.0) -> Any:
    """asyncio.run with a hard limit, so a hang fails the test instead of stalling it."""

    async def main() -> Any:
        try:
            return await asyncio.wait_for(coro, limit)
        except TimeoutError:
            pytest.fail(f"the run did not end within {limit} s")

    return asyncio.run(main())


# ------------------------------------------------------------- values & edges


def test_run_returns_the_workflow_value() -> None:
    @plait.workflow
    async def wf(a: int, b: int, *, scale: int = 1) -> int:
        return scale * await add(a, b)

    result = plait.run(wf, 2, 3, scale=10)
    assert result.value == 50
    assert result.ok and result.status == "done" and result.error is None
    assert result.elapsed >= 0


def test_plain_async_function_is_accepted_as_workflow() -> None:
    async def body() -> int:
        return await number(4)

    assert plait.run(body).value == 4


def test_refs_passed_as_arguments_become_edges() -> None:
    @plait.workflow
    async def wf() -> Ref:
        a = number(2)
        b = number(5)
        return add(a, b=b)

    result = plait.run(wf)
    assert result.value == 7
    assert [(r.tool, r.parents) for r in result.nodes] == [
        ("number", ()),
        ("number", ()),
        ("add", (0, 1)),
    ]
    assert [r.value for r in result.nodes] == [2, 5, 7]


def test_nested_refs_in_lists_dicts_and_tuples() -> None:
    @plait.workflow
    async def wf() -> Ref:
        a, b, c, d = number(1), number(2), number(3), number(4)
        return total([a, 5, b], {"x": c, "y": 1}, (d, a))

    result = plait.run(wf)
    assert result.value == (1 + 5 + 2) + 10 * (3 + 1) + 100 * 4 + 1000 * 1
    assert result.nodes[4].parents == (0, 1, 2, 3)


def test_template_formatting() -> None:
    @plait.workflow
    async def wf() -> list:
        n = number(42)
        w = echo("Lake Baikal")
        return [
            echo(Template(("depth of ", w, " is ", n, " m"))),
            echo(Template((n,))),
        ]

    result = plait.run(wf)
    assert result.value == ["depth of Lake Baikal is 42 m", "42"]
    assert result.nodes[2].parents == (1, 0)


def test_await_a_ref_inside_the_body() -> None:
    @plait.workflow
    async def wf() -> list:
        a = number(3)
        first = await a
        again = await a  # awaiting a finished node gives its value at once
        b = add(first, 10)
        return [first, again, await b, await number(await b)]

    assert plait.run(wf).value == [3, 3, 13, 13]


def test_returned_refs_are_resolved_anywhere_in_the_value() -> None:
    @plait.workflow
    async def wf() -> Any:
        a, b = number(1), echo("two")
        return {"a": a, "list": [a, b, 3], "tuple": (b,), "nested": {"x": [{"y": a}]}}

    assert plait.run(wf).value == {
        "a": 1,
        "list": [1, "two", 3],
        "tuple": ("two",),
        "nested": {"x": [{"y": 1}]},
    }


def test_workflow_called_inside_a_workflow_joins_the_same_graph() -> None:
    @plait.workflow
    async def inner(x: int) -> Ref:
        return add(number(x), 1)

    @plait.workflow
    async def outer() -> int:
        r = await inner(5)
        return await add(r, 100)

    result = plait.run(outer)
    assert result.value == 106
    assert [r.tool for r in result.nodes] == ["number", "add", "add"]


def test_workflow_decorator_needs_an_async_function() -> None:
    def sync() -> None:
        return None

    with pytest.raises(TypeError):
        plait.workflow(sync)  # type: ignore[arg-type]
    wf = plait.workflow(step.fn)
    assert plait.workflow(wf) is wf


def test_two_different_tools_with_one_name_in_a_run_are_rejected() -> None:
    @plait.tool(name="number")
    async def impostor(x: int) -> int:
        return -x

    @plait.workflow
    async def wf() -> None:
        number(1)
        impostor(2)

    with pytest.raises(RunError) as info:
        plait.run(wf)
    assert isinstance(info.value.result.error, GraphError)


def test_a_ref_from_another_run_is_rejected_not_rewired() -> None:
    leaked: list[Ref] = []

    @plait.workflow
    async def first() -> Ref:
        r = number(1)
        leaked.append(r)
        return r

    assert plait.run(first).value == 1

    @plait.workflow
    async def second() -> Ref:
        number(100)  # node 0 of this run: the old ref must not silently point here
        return add(leaked[0], 1)

    with pytest.raises(RunError) as info:
        plait.run(second)
    assert isinstance(info.value.result.error, GraphError)


# ------------------------------------------------------------- result & timings


def test_result_has_timings_and_the_critical_path_is_the_slow_branch() -> None:
    @plait.workflow
    async def diamond() -> Ref:
        a = step("a", 0.05)
        b = step("b", 0.30, after=a)  # slow branch
        c = step("c", 0.05, after=a)
        return step("d", 0.05, after=[c, b])

    result = plait.run(diamond)
    assert result.value == "d"
    for r in result.nodes:
        assert r.state == "done" and r.attempts == 1 and r.error is None
        assert r.added_at <= r.started_at <= r.finished_at
        assert r.duration is not None and r.duration >= 0.04
    a, b, c, d = result.nodes
    assert b.duration >= 0.29
    assert b.started_at >= a.finished_at and c.started_at >= a.finished_at
    assert d.started_at >= max(b.finished_at, c.finished_at)
    assert abs(b.started_at - c.started_at) < 0.05  # the branches ran side by side
    assert result.critical_path == [0, 1, 3]
    assert 0.39 <= result.critical_path_time() <= result.elapsed
    assert result.elapsed < 0.45 + 0.5  # the run took about its critical path


def test_events_start_children_after_parents_and_frame_the_run() -> None:
    events = Events()

    @plait.workflow
    async def wf() -> Ref:
        rng = random.Random(3)
        refs: list[Ref] = []
        for i in range(25):
            deps = rng.sample(refs, k=min(len(refs), rng.randint(0, 3)))
            refs.append(step(str(i), rng.choice([0, 0.001, 0.005, 0.01]), after=deps))
        return refs[-1]

    result = plait.run(wf, listeners=[events], run_id="run-1")
    assert result.run_id == "run-1"
    assert type(events[0]) is plait.RunStarted and events[0].entry.endswith("wf")
    assert type(events[-1]) is plait.RunFinished and events[-1].status == "done"
    assert all(e.run_id == "run-1" for e in events)
    assert [e.t for e in events] == sorted(e.t for e in events)
    for r in result.nodes:
        started = events.index_of(NodeStarted, r.id)
        assert events.index_of(plait.NodeAdded, r.id) < started < events.index_of(NodeFinished, r.id)
        for p in r.parents:
            assert events.index_of(NodeFinished, p) < started


def test_chain_child_starts_before_any_other_node_finishes() -> None:
    events = Events()

    @plait.workflow
    async def wf() -> Ref:
        rng = random.Random(5)
        for i in range(30):  # noise: nodes finishing all through the run
            step(f"noise{i}", rng.uniform(0, 0.08))
        r = step("c0", 0.01)
        for i in range(1, 6):
            r = step(f"c{i}", 0.01, after=r)
        return r

    result = plait.run(wf, listeners=[events])
    chain = [r.id for r in result.nodes if r.value.startswith("c")]
    assert len(chain) == 6
    for parent, child in zip(chain, chain[1:]):
        done = events.index_of(NodeFinished, parent)
        started = events.index_of(NodeStarted, child)
        assert done < started
        between = events[done + 1 : started]
        assert not [e for e in between if type(e) in (NodeFinished, plait.NodeFailed)], between


def test_node_ready_is_emitted_once_per_node_before_it_starts() -> None:
    events = Events()

    @plait.workflow
    async def wf() -> list:
        a = [step(str(i), 0.01) for i in range(4)]
        return [step("x", 0.0, after=a)] + a

    plait.run(wf, max_concurrency=1, listeners=[events])
    for node in range(5):
        ready = [k for k, e in enumerate(events) if type(e) is plait.NodeReady and e.node == node]
        assert len(ready) == 1, f"node {node}: {len(ready)} NodeReady events"
        assert ready[0] < events.index_of(NodeStarted, node)


# --------------------------------------------------------------------- limits


@pytest.mark.parametrize("cap", [1, 3])
def test_limits_are_never_exceeded_in_a_real_run(cap: int) -> None:
    gauge = Gauge()

    @plait.tool(concurrency=2)
    async def slow(i: int) -> int:
        gauge.enter("all", "slow")
        try:
            await asyncio.sleep(0.01 + (i % 3) * 0.005)
            return i
        finally:
            gauge.exit("all", "slow")

    @plait.tool(concurrency=1)
    def blocking(i: int) -> int:
        gauge.enter("all", "blocking")
        try:
            time.sleep(0.01)
            return i
        finally:
            gauge.exit("all", "blocking")

    @plait.tool
    async def free(i: int) -> int:
        gauge.enter("all", "free")
        try:
            await asyncio.sleep(0.01)
            return i
        finally:
            gauge.exit("all", "free")

    @plait.workflow
    async def wf() -> list:
        out = []
        for i in range(8):
            out += [slow(i), blocking(i), free(i)]
        return out

    result = plait.run(wf, max_concurrency=cap)
    assert result.value == [i for i in range(8) for _ in range(3)]
    assert gauge.peak["all"] == cap  # reached, never exceeded
    assert gauge.peak["slow"] <= 2 and gauge.peak["blocking"] == 1
    assert gauge.peak["free"] <= cap


def test_tool_concurrency_without_a_global_cap() -> None:
    gauge = Gauge()

    @plait.tool(concurrency=3)
    async def limited(i: int) -> int:
        gauge.enter("limited")
        try:
            await asyncio.sleep(0.01)
            return i
        finally:
            gauge.exit("limited")

    @plait.workflow
    async def wf() -> list:
        return [limited(i) for i in range(12)]

    assert plait.run(wf).value == list(range(12))
    assert gauge.peak["limited"] == 3


# -------------------------------------------------------- retries & timeouts


def test_flaky_tool_succeeds_on_the_third_attempt() -> None:
    calls: list[int] = []
    events = Events()

    @plait.tool(retries=2, backoff=0.01, jitter=0.0)
    async def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise ConnectionError(f"attempt {len(calls)}")
        return x * 2

    @plait.workflow
    async def wf() -> Ref:
        return flaky(21)

    result = plait.run(wf, listeners=[events])
    assert result.value == 42
    assert calls == [21, 21, 21]
    (record,) = result.nodes
    assert record.attempts == 3 and record.state == "done" and record.error is None
    retried = events.of(plait.NodeRetried)
    assert [(e.attempt, e.delay) for e in retried] == [(2, 0.01), (3, 0.02)]
    assert "ConnectionError" in retried[0].error and "attempt 1" in retried[0].error
    assert [e.attempt for e in events.of(NodeStarted)] == [1, 2, 3]


def test_retries_exhausted_fails_the_node() -> None:
    calls: list[int] = []

    @plait.tool(retries=1, backoff=0.01)
    async def broken() -> int:
        calls.append(1)
        raise ConnectionError("down")

    @plait.workflow
    async def wf() -> Ref:
        return broken()

    with pytest.raises(RunError) as info:
        plait.run(wf)
    (record,) = info.value.result.nodes
    assert record.attempts == 2 and len(calls) == 2
    assert record.state == "failed" and isinstance(record.error, ConnectionError)


def test_async_timeout_raises_timeout_error_after_the_timeout() -> None:
    @plait.tool(timeout=0.2)
    async def hangs() -> str:
        await asyncio.sleep(30)
        return "never"

    @plait.workflow
    async def wf() -> Ref:
        return hangs()

    t0 = time.perf_counter()
    with pytest.raises(RunError) as info:
        plait.run(wf)
    took = time.perf_counter() - t0
    (record,) = info.value.result.nodes
    assert isinstance(record.error, TimeoutError)
    assert record.attempts == 1
    assert 0.18 <= record.duration < 1.0 and took < 2.0


def test_async_timeout_is_retried_when_configured() -> None:
    calls: list[float] = []

    @plait.tool(timeout=0.15, retries=2, backoff=0.01, jitter=0.0)
    async def slow_then_fast() -> str:
        calls.append(time.perf_counter())
        await asyncio.sleep(30 if len(calls) < 3 else 0)
        return "ok"

    @plait.workflow
    async def wf() -> Ref:
        return slow_then_fast()

    result = plait.run(wf)
    assert result.value == "ok"
    assert result.nodes[0].attempts == 3
    assert calls[1] - calls[0] >= 0.15 and calls[2] - calls[1] >= 0.15
    assert result.elapsed < 2.0


def test_sync_tool_timeout() -> None:
    @plait.tool(timeout=0.1)
    def sleepy() -> str:
        time.sleep(0.6)
        return "late"

    @plait.workflow
    async def wf() -> Ref:
        return sleepy()

    t0 = time.perf_counter()
    with pytest.raises(RunError) as info:
        plait.run(wf)
    assert isinstance(info.value.result.nodes[0].error, TimeoutError)
    assert time.perf_counter() - t0 < 0.5  # the run did not wait for the thread


# ------------------------------------------------------------------ failures


@plait.tool
async def boom(message: str = "boom", after: Any = None) -> str:
    raise ValueError(message)


def test_failure_stop_keeps_siblings_values_and_the_error() -> None:
    @plait.workflow
    async def wf() -> Any:
        sibling = step("sibling", 0.15)
        fast = number(7)
        bad = boom("kaput", after=fast)
        later = step("child", 0, after=bad)
        return [sibling, later]

    with pytest.raises(RunError) as info:
        plait.run(wf)
    err = info.value
    result = err.result
    assert isinstance(result, plait.RunResult)
    assert result.status == "failed" and not result.ok and result.value is None
    states = {r.value if r.state == "done" else r.tool: r.state for r in result.nodes}
    assert states == {"sibling": "done", 7: "done", "boom": "failed", "step": "skipped"}
    (failed,) = [r for r in result.nodes if r.state == "failed"]
    assert isinstance(failed.error, ValueError) and str(failed.error) == "kaput"
    assert result.errors == {failed.id: failed.error}
    assert "kaput" in str(err)
    assert isinstance(result.error, NodeError) and result.error.node == failed.id


def test_running_siblings_finish_under_stop() -> None:
    finished: list[str] = []

    @plait.tool
    async def slow_ok(name: str) -> str:
        await asyncio.sleep(0.2)
        finished.append(name)
        return name

    @plait.workflow
    async def wf() -> None:
        slow_ok("a")
        boom()
        slow_ok("b")  # already running too: nothing waits on a slot

    with pytest.raises(RunError) as info:
        plait.run(wf)
    assert sorted(finished) == ["a", "b"]
    values = sorted(r.value for r in info.value.result.nodes if r.state == "done")
    assert values == ["a", "b"]


def _cancel_workflow(await_sibling: bool):  # type: ignore[no-untyped-def]
    observed: list[str] = []

    @plait.tool
    async def long(name: str) -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            observed.append(name)
            raise
        return name

    @plait.workflow
    async def wf() -> Any:
        slow = long("sibling")
        await asyncio.sleep(0.05)  # the sibling is running
        boom()
        if await_sibling:
            return await slow
        return slow

    return wf, observed


@pytest.mark.parametrize("await_sibling", [False, True], ids=["returns-ref", "awaits-sibling"])
def test_failure_cancel_cancels_a_long_running_sibling(await_sibling: bool) -> None:
    wf, observed = _cancel_workflow(await_sibling)
    t0 = time.perf_counter()
    with pytest.raises(RunError) as info:
        run_bounded(plait.arun(wf, on_error="cancel"), limit=5)
    assert time.perf_counter() - t0 < 2.0
    assert observed == ["sibling"]
    states = {r.tool: r.state for r in info.value.result.nodes}
    assert states == {"long": "cancelled", "boom": "failed"}


def test_failure_continue_runs_independent_branches() -> None:
    @plait.workflow
    async def wf() -> list:
        bad = boom()
        dependent = step("dependent", after=bad)
        grand = step("grand", after=[dependent])
        a = step("a", 0.05)
        b = step("b", 0.01, after=a)
        return [a, b, dependent, grand]

    result = plait.run(wf, on_error="continue", raise_on_error=False)
    assert result.status == "failed"
    by_value = {r.value: r.state for r in result.nodes if r.state == "done"}
    assert by_value == {"a": "done", "b": "done"}
    assert [r.state for r in result.nodes] == ["failed", "skipped", "skipped", "done", "done"]
    with pytest.raises(RunError):
        plait.run(wf, on_error="continue")


def test_awaiting_a_failed_node_raises_node_error_in_the_body() -> None:
    caught: list[NodeError] = []

    @plait.workflow
    async def wf() -> str:
        bad = boom("inner")
        try:
            await bad
        except NodeError as exc:
            caught.append(exc)
        return "handled"

    with pytest.raises(RunError):
        plait.run(wf, on_error="continue")
    (exc,) = caught
    assert (exc.node, exc.tool) == (0, "boom")
    assert isinstance(exc.__cause__, ValueError) and "inner" in str(exc)


def test_body_exception_fails_the_run_but_keeps_finished_results() -> None:
    @plait.workflow
    async def wf() -> None:
        a = number(1)
        assert await a == 1
        step("running", 0.1)
        raise KeyError("body broke")

    with pytest.raises(RunError) as info:
        plait.run(wf)
    result = info.value.result
    assert isinstance(result.error, KeyError)
    assert info.value.__cause__ is result.error
    assert [(r.state, r.value) for r in result.nodes] == [("done", 1), ("done", "running")]


# ---------------------------------------------------------- loop & cancellation


def test_sync_run_inside_a_running_loop_is_a_clear_error() -> None:
    @plait.workflow
    async def wf() -> int:
        return 1

    async def main() -> None:
        with pytest.raises(RuntimeError, match="arun"):
            plait.run(wf)
        with pytest.raises(RuntimeError, match="arun"):
            plait.run_graph(Graph(()), [])
        assert (await plait.arun(wf)).value == 1

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited"
        asyncio.run(main())
        gc.collect()


@pytest.mark.parametrize("body_waits", [False, True], ids=["body-returned", "body-awaiting"])
def test_cancelling_arun_cancels_running_nodes_and_leaves_no_tasks(body_waits: bool) -> None:
    observed: list[str] = []
    thread_done = threading.Event()

    @plait.tool
    async def long(name: str) -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            observed.append(name)
            raise
        return name

    @plait.tool
    def blocking() -> str:
        time.sleep(0.1)
        thread_done.set()
        return "b"

    @plait.workflow
    async def wf() -> Any:
        refs = [long("x"), long("y"), blocking()]
        if body_waits:
            await refs[0]
        return refs

    async def main() -> None:
        t0 = time.perf_counter()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(plait.arun(wf), 0.05)
        assert time.perf_counter() - t0 < 1.0
        assert sorted(observed) == ["x", "y"]
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(main())
    assert thread_done.wait(2)


def test_cancelled_run_emits_run_finished_cancelled() -> None:
    events = Events()

    @plait.workflow
    async def wf() -> Ref:
        return step("x", 30)

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(plait.arun(wf, listeners=[events]), 0.05)

    asyncio.run(main())
    assert type(events[-1]) is plait.RunFinished and events[-1].status == "cancelled"


def test_cancelling_a_run_during_a_retry_backoff_leaves_nothing_behind() -> None:
    calls: list[int] = []

    @plait.tool(retries=3, backoff=0.2, jitter=0.0)
    async def flaky() -> str:
        calls.append(1)
        raise ConnectionError("down")

    @plait.workflow
    async def wf() -> Ref:
        return flaky()

    async def main() -> None:
        problems: list[dict] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: problems.append(ctx))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(plait.arun(wf), 0.05)  # cancelled while backing off
        assert calls == [1]
        await asyncio.sleep(0.35)  # past the backoff: a stray timer would fire now
        assert calls == [1], "the cancelled run started its node again"
        assert problems == []
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(main())


# --------------------------------------------------------------- static graphs


def test_run_graph_values_by_graph_node_id() -> None:
    # Listed children first: the run must order it, the values stay by graph id.
    g = Graph.build(
        [
            ("add", {"a": Ref(1), "b": Ref(2)}),
            ("number", {"x": 10}),
            ("add", {"a": Ref(1), "b": 5}),
            ("echo", {"text": Template(("sum=", Ref(0)))}),
        ]
    )
    result = plait.run_graph(g, [add, number, echo])
    assert result.value == [25, 10, 15, "sum=25"]


def test_run_graph_records_use_the_graph_node_ids() -> None:
    events = Events()
    g = Graph.build(
        [
            ("number", {"x": 1}),
            ("number", {"x": 2}),
            ("add", {"a": Ref(0), "b": Ref(1)}),
            ("add", {"a": Ref(2), "b": 100}),
        ]
    )
    result = plait.run_graph(g, [number, add], listeners=[events])
    assert result.value == [1, 2, 3, 103]
    assert [(r.id, r.tool, r.parents, r.value) for r in result.nodes] == [
        (0, "number", (), 1),
        (1, "number", (), 2),
        (2, "add", (0, 1), 3),
        (3, "add", (2,), 103),
    ]
    assert result.critical_path[-1] == 3
    assert {e.node: e.tool for e in events.of(NodeStarted)} == {
        0: "number",
        1: "number",
        2: "add",
        3: "add",
    }


def test_run_graph_errors_are_keyed_by_graph_node_id() -> None:
    g = Graph.build([("number", {"x": 1}), ("number", {"x": 2}), ("boom", {"after": Ref(1)})])
    with pytest.raises(RunError) as info:
        plait.run_graph(g, [number, boom])
    assert list(info.value.result.errors) == [2]


def test_run_graph_emits_node_added_for_every_node() -> None:
    events = Events()
    g = Graph.build([("number", {"x": 1}), ("add", {"a": Ref(0), "b": 1})])
    plait.run_graph(g, [number, add], listeners=[events])
    added = events.of(plait.NodeAdded)
    assert sorted(e.node for e in added) == [0, 1]
    for e in added:
        assert events.index(e) < events.index_of(NodeStarted, e.node)


def test_run_graph_rejects_an_invalid_graph_with_graph_error() -> None:
    g = Graph.build([("number", {"x": Ref(0)})])  # a self-loop
    with pytest.raises(GraphError, match="cycle"):
        plait.run_graph(g, [number])
    with pytest.raises(GraphError, match="unknown tool"):
        plait.run_graph(Graph.build([("nope", {})]), [number])


def test_run_graph_needs_plait_tools() -> None:
    with pytest.raises(TypeError):
        plait.run_graph(Graph(()), [lambda x: x])  # type: ignore[list-item]


def test_run_graph_failure_stop_keeps_finished_values() -> None:
    g = Graph.build(
        [
            ("step", {"name": "slow", "seconds": 0.1}),
            ("boom", {}),
            ("step", {"name": "child", "after": Ref(1)}),
        ]
    )
    result = plait.run_graph(g, [step, boom], raise_on_error=False)
    assert result.status == "failed"
    states = sorted((r.tool, r.state, r.value) for r in result.nodes)
    assert states == [
        ("boom", "failed", None),
        ("step", "done", "slow"),
        ("step", "skipped", None),
    ]


def test_arun_graph_from_async_code() -> None:
    g = Graph.build([("number", {"x": 3}), ("add", {"a": Ref(0), "b": Ref(0)})])
    result = asyncio.run(plait.arun_graph(g, [number, add], max_concurrency=1))
    assert result.value == [3, 6]
