"""Random DAGs through `run_graph` and through a workflow match a sequential evaluation."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import plait
from plait import Graph, NodeFinished, NodeStarted, Ref

MOD = 2**61 - 1


def combine(i: int, xs: list[int]) -> int:
    """The value of node `i` whose parents' values are `xs` (order matters)."""
    acc = (i + 1) * 1_000_003
    for k, x in enumerate(xs):
        acc = (acc * 31 + (k + 1) * 7919 * x + 17) % MOD
    return acc


class Gauge:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    def reset(self) -> None:
        self.now.clear()
        self.peak.clear()

    def enter(self, tool: str) -> None:
        with self.lock:
            for k in ("*", tool):
                self.now[k] += 1
                self.peak[k] = max(self.peak[k], self.now[k])

    def exit(self, tool: str) -> None:
        with self.lock:
            self.now["*"] -= 1
            self.now[tool] -= 1


GAUGE = Gauge()


def _async_tool(name: str, concurrency: int | None) -> plait.Tool:
    async def fn(i: int, xs: list[int], delay: float = 0.0) -> int:
        GAUGE.enter(name)
        try:
            if delay:
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
            return combine(i, xs)
        finally:
            GAUGE.exit(name)

    return plait.tool(name=name, concurrency=concurrency)(fn)


def _sync_tool(name: str, concurrency: int | None) -> plait.Tool:
    def fn(i: int, xs: list[int], delay: float = 0.0) -> int:
        GAUGE.enter(name)
        try:
            if delay:
                time.sleep(delay)
            return combine(i, xs)
        finally:
            GAUGE.exit(name)

    return plait.tool(name=name, concurrency=concurrency)(fn)


TOOLS = {
    t.name: t
    for t in (
        _async_tool("free", None),
        _async_tool("one", 1),
        _async_tool("two", 2),
        _sync_tool("sync_free", None),
        _sync_tool("sync_two", 2),
    )
}


@st.composite
def dags(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 40))
    parents = []
    for i in range(n):
        # Ordered, distinct parents among earlier nodes; the order is part of the value.
        ps = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=min(i, 4))) if i else []
        parents.append(ps)
    return {
        "parents": parents,
        "tools": [draw(st.sampled_from(sorted(TOOLS))) for _ in range(n)],
        "delays": [draw(st.sampled_from([0.0, 0.0, 0.0, 0.001, 0.003])) for _ in range(n)],
        "cap": draw(st.sampled_from([None, 1, 2, 5])),
        "perm": draw(st.permutations(range(n))),
        "awaits": draw(st.sets(st.integers(0, n - 1), max_size=3)),
    }


def reference(parents: list[list[int]]) -> list[int]:
    values: list[int] = []
    for i, ps in enumerate(parents):
        values.append(combine(i, [values[p] for p in ps]))
    return values


def check_events(events: list, result: plait.RunResult) -> None:
    pos_start: dict[int, int] = {}
    pos_end: dict[int, int] = {}
    for k, e in enumerate(events):
        if type(e) is NodeStarted:
            assert e.node not in pos_start, f"node {e.node} started twice"
            pos_start[e.node] = k
        elif type(e) is NodeFinished:
            assert e.node not in pos_end, f"node {e.node} finished twice"
            pos_end[e.node] = k
    assert sorted(pos_start) == sorted(pos_end) == [r.id for r in result.nodes]
    for r in result.nodes:
        for p in r.parents:
            assert pos_end[p] < pos_start[r.id], f"node {r.id} started before input {p} finished"
        assert pos_start[r.id] < pos_end[r.id]


def check_limits(cap: int | None) -> None:
    assert cap is None or GAUGE.peak["*"] <= cap, f"{GAUGE.peak['*']} in flight, cap {cap}"
    for name, tool in TOOLS.items():
        limit = tool.policy.concurrency
        assert limit is None or GAUGE.peak[name] <= limit, f"{name}: {GAUGE.peak[name]} > {limit}"


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_random_dags_match_a_sequential_evaluation(d: dict) -> None:
    parents, tools, delays, cap = d["parents"], d["tools"], d["delays"], d["cap"]
    n = len(parents)
    want = reference(parents)

    # --- as a static graph, its nodes listed in a random order (graph id = perm[i])
    perm = d["perm"]
    at: list[tuple[str, dict] | None] = [None] * n
    for i in range(n):
        args = {"i": i, "xs": [Ref(perm[p]) for p in parents[i]], "delay": delays[i]}
        at[perm[i]] = (tools[i], args)
    graph = Graph.build(at)  # type: ignore[arg-type]
    GAUGE.reset()
    events: list = []
    result = plait.run_graph(graph, TOOLS.values(), max_concurrency=cap, listeners=[events.append])
    assert result.value == [want[i] for i in sorted(range(n), key=lambda i: perm[i])]
    assert all(r.state == "done" and r.attempts == 1 for r in result.nodes)
    check_events(events, result)
    check_limits(cap)

    # --- as a workflow that adds nodes while earlier ones run, awaiting a few
    @plait.workflow
    async def wf() -> list:
        refs: list[Ref] = []
        seen: list[int] = []
        for i in range(n):
            refs.append(
                TOOLS[tools[i]](i, [refs[p] for p in parents[i]], delay=delays[i])
            )
            if i in d["awaits"]:
                seen.append(await refs[i])
        assert seen == [want[i] for i in sorted(d["awaits"])]
        return refs

    GAUGE.reset()
    events = []
    result = plait.run(wf, max_concurrency=cap, listeners=[events.append])
    assert result.value == want
    assert [r.parents for r in result.nodes] == [tuple(ps) for ps in parents]
    check_events(events, result)
    check_limits(cap)
