"""The scheduler as a pure state machine: events in, actions out, no event loop."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plait import ToolArgumentError, ToolPolicy
from plait.runtime._scheduler import (
    Cancel,
    Failed,
    Queued,
    RetryLater,
    RunDone,
    Scheduler,
    Skip,
    Start,
)


def starts(actions: Sequence[object]) -> list[int]:
    return [a.node for a in actions if isinstance(a, Start)]


def skips(actions: Sequence[object]) -> dict[int, int]:
    return {a.node: a.cause for a in actions if isinstance(a, Skip)}


def of(actions: Sequence[object], kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def build(
    sched: Scheduler,
    parents: Sequence[Sequence[int]],
    tools: Sequence[str] | None = None,
    policies: dict[str, ToolPolicy] | None = None,
) -> list:
    tools = tools or ["t"] * len(parents)
    policies = policies or {}
    return sched.add_many(
        (i, tools[i], tuple(ps), policies.get(tools[i])) for i, ps in enumerate(parents)
    )


# ------------------------------------------------------------------ dependencies


def test_a_node_starts_only_when_every_parent_is_done() -> None:
    s = Scheduler()
    # diamond: 0 -> 1, 0 -> 2, (1, 2) -> 3
    assert starts(build(s, [[], [0], [0], [1, 2]])) == [0]
    assert sorted(starts(s.finish(0))) == [1, 2]
    assert starts(s.finish(1)) == []
    assert s.state_name(3) == "pending"
    assert starts(s.finish(2)) == [3]


def test_a_node_added_after_its_parents_finished_starts_at_once() -> None:
    s = Scheduler()
    assert starts(s.add(0, "t", ())) == [0]
    s.finish(0)
    assert starts(s.add(1, "t", (0,))) == [1]
    assert starts(s.add(2, "t", (0, 1))) == []  # 1 is still running
    assert starts(s.finish(1)) == [2]


@pytest.mark.parametrize(
    "kwargs, policies",
    [
        ({}, {}),
        ({"max_concurrency": 1}, {}),
        ({}, {"t": ToolPolicy(concurrency=1)}),
    ],
    ids=["unlimited", "max_concurrency=1", "tool-concurrency=1"],
)
def test_child_starts_in_the_transition_that_finishes_its_last_parent(kwargs, policies) -> None:
    s = Scheduler(**kwargs)
    assert starts(build(s, [[], [0], [1]], policies=policies)) == [0]
    actions = s.finish(0)
    assert actions and starts(actions) == [1]
    assert [a.attempt for a in of(actions, Start)] == [1]
    assert starts(s.finish(1)) == [2]


# ----------------------------------------------------------------------- limits


def test_max_concurrency_caps_running_nodes() -> None:
    s = Scheduler(max_concurrency=2)
    actions = build(s, [[]] * 5)
    assert len(starts(actions)) == 2
    assert s.running == 2
    assert sorted(a.node for a in of(actions, Queued)) == [0, 1, 2, 3, 4]
    first = starts(actions)
    nxt = starts(s.finish(first[0]))
    assert len(nxt) == 1 and nxt[0] not in first


def test_tool_concurrency_caps_running_nodes_of_that_tool() -> None:
    s = Scheduler()
    tools = ["a", "a", "a", "b", "b", "b"]
    actions = build(s, [[]] * 6, tools, {"a": ToolPolicy(concurrency=1)})
    started = starts(actions)
    assert sorted(tools[i] for i in started) == ["a", "b", "b", "b"]
    (a0,) = [i for i in started if tools[i] == "a"]
    nxt = starts(s.finish(a0))
    assert len(nxt) == 1 and tools[nxt[0]] == "a"
    # Finishing a "b" frees no "a" slot.
    assert starts(s.finish(3)) == []


def test_tool_and_global_limits_together() -> None:
    s = Scheduler(max_concurrency=2)
    tools = ["a", "a", "a", "b"]
    started = starts(build(s, [[]] * 4, tools, {"a": ToolPolicy(concurrency=1)}))
    # Only one "a" may run, so the second slot goes to "b" although "a" nodes are older.
    assert sorted(started) == [0, 3]
    assert starts(s.finish(3)) == []  # the free slot cannot go to an "a" node
    assert starts(s.finish(0)) == [1]


# --------------------------------------------------------------------- priority


def test_longest_remaining_path_starts_first_when_slots_are_scarce() -> None:
    s = Scheduler(max_concurrency=1)
    # node 0: a lone leaf; node 1 heads a chain 1 -> 2 -> 3 -> 4.
    order = starts(build(s, [[], [], [1], [2], [3]]))
    assert order == [1]
    for _ in range(4):
        (nxt,) = starts(s.finish(order[-1]))
        order.append(nxt)
    # 4 and 0 both have one node left to run: the tie goes to the older node.
    assert order == [1, 2, 3, 0, 4]


def test_priority_also_orders_nodes_waiting_for_a_tool_slot() -> None:
    s = Scheduler()
    tools = ["t", "t", "u", "u"]  # 0: lone leaf; 1 -> 2 -> 3 a chain
    actions = build(s, [[], [], [1], [2]], tools, {"t": ToolPolicy(concurrency=1)})
    assert starts(actions) == [1]


def test_ties_go_to_the_older_node() -> None:
    s = Scheduler(max_concurrency=1)
    order = starts(build(s, [[], [], []]))
    for _ in range(2):
        order += starts(s.finish(order[-1]))
    assert order == [0, 1, 2]


# ---------------------------------------------------------------------- retries


def test_retries_back_off_doubling_up_to_the_cap_then_fail() -> None:
    policy = ToolPolicy(retries=3, backoff=0.1, max_backoff=0.3, jitter=0.0)
    s = Scheduler()
    s.add(0, "t", (), policy)
    s.close()
    delays = []
    for attempt in (1, 2, 3):
        error = RuntimeError(f"boom {attempt}")
        actions = s.fail(0, error)
        (retry,) = of(actions, RetryLater)
        assert (retry.node, retry.attempt, retry.error) == (0, attempt + 1, error)
        assert not of(actions, Failed) and not of(actions, RunDone)
        assert s.state_name(0) == "retry_wait"
        delays.append(retry.delay)
        assert [(a.node, a.attempt) for a in of(s.retry_due(0), Start)] == [(0, attempt + 1)]
    assert delays == pytest.approx([0.1, 0.2, 0.3])
    last = RuntimeError("final")
    actions = s.fail(0, last)
    assert [(a.node, a.error) for a in of(actions, Failed)] == [(0, last)]
    assert not of(actions, RetryLater)
    assert len(of(actions, RunDone)) == 1
    assert s.state_name(0) == "failed"
    assert s.attempts[0] == 4


def _retry_delays(seed: int, policy: ToolPolicy) -> list[float]:
    s = Scheduler(seed=seed)
    s.add(0, "t", (), policy)
    delays = []
    for _ in range(policy.retries):
        (retry,) = of(s.fail(0, RuntimeError()), RetryLater)
        delays.append(retry.delay)
        s.retry_due(0)
    return delays


def test_retry_delays_grow_within_jitter_bounds_and_are_seeded() -> None:
    policy = ToolPolicy(retries=6, backoff=0.1, max_backoff=100.0, jitter=0.5)
    delays = _retry_delays(7, policy)
    for k, d in enumerate(delays):
        base = 0.1 * 2**k
        assert base * 0.5 <= d <= base * 1.5
    assert delays[-1] > delays[0]
    assert _retry_delays(7, policy) == delays  # same seed, same delays
    assert _retry_delays(8, policy) != delays
    assert len(set(delays)) == len(delays)  # jitter is applied per attempt


def test_only_errors_in_retry_on_are_retried() -> None:
    s = Scheduler()
    s.add(0, "t", (), ToolPolicy(retries=5, retry_on=(TimeoutError,)))
    assert of(s.fail(0, TimeoutError()), RetryLater)
    s.retry_due(0)
    actions = s.fail(0, KeyError("x"))
    assert of(actions, Failed) and not of(actions, RetryLater)


def test_argument_errors_are_never_retried() -> None:
    s = Scheduler()
    s.add(0, "t", (), ToolPolicy(retries=5))
    actions = s.fail(0, ToolArgumentError("t", "x", "an integer", "y"))
    assert of(actions, Failed) and not of(actions, RetryLater)


def test_a_node_waiting_to_retry_frees_its_slot() -> None:
    s = Scheduler(max_concurrency=1)
    build(s, [[], []], policies={"t": ToolPolicy(retries=1)})
    actions = s.fail(0, RuntimeError())
    assert of(actions, RetryLater) and starts(actions) == [1]
    actions = s.retry_due(0)
    assert starts(actions) == [] and [a.node for a in of(actions, Queued)] == [0]  # no slot yet
    assert starts(s.finish(1)) == [0]


def test_retry_due_for_a_node_not_waiting_does_nothing() -> None:
    s = Scheduler()
    s.add(0, "t", ())
    assert s.retry_due(0) == []
    s.finish(0)
    assert s.retry_due(0) == []


# ------------------------------------------------------------------- on_error


def _running_pair_with_pending(on_error: str) -> tuple[Scheduler, list]:
    """0 and 1 running; 2 child of 0; 3 child of 1; 4 queued for a slot."""
    s = Scheduler(max_concurrency=2, on_error=on_error)  # type: ignore[arg-type]
    actions = build(s, [[], [], [0], [1], []])
    s.close()
    assert sorted(starts(actions)) == [0, 1]
    return s, actions


def test_on_error_stop_skips_pending_and_ready_lets_running_finish() -> None:
    s, _ = _running_pair_with_pending("stop")
    err = RuntimeError("x")
    actions = s.fail(0, err)
    assert [(a.node, a.error) for a in of(actions, Failed)] == [(0, err)]
    assert skips(actions) == {2: -1, 3: -1, 4: -1}
    assert not of(actions, Cancel) and not starts(actions) and not of(actions, RunDone)
    assert s.state_name(1) == "running"
    actions = s.finish(1)
    assert not starts(actions)
    assert len(of(actions, RunDone)) == 1
    assert s.state_name(1) == "done"


def test_on_error_cancel_cancels_running_nodes() -> None:
    s, _ = _running_pair_with_pending("cancel")
    actions = s.fail(0, RuntimeError("x"))
    assert [a.node for a in of(actions, Cancel)] == [1]
    assert skips(actions) == {2: -1, 3: -1, 4: -1}
    assert not of(actions, RunDone)
    actions = s.cancelled(1)
    assert len(of(actions, RunDone)) == 1
    assert s.state_name(1) == "cancelled"


def test_on_error_continue_skips_only_descendants() -> None:
    s = Scheduler(on_error="continue")
    # 0 -> 2 -> 4 ; 1 -> 3 ; (0, 1) -> 5 ; 6 independent of everything
    build(s, [[], [], [0], [1], [2], [0, 1], []])
    s.close()
    actions = s.fail(0, RuntimeError("x"))
    assert skips(actions) == {2: 0, 4: 0, 5: 0}
    assert not of(actions, Cancel) and not of(actions, RunDone)
    assert starts(s.finish(1)) == [3]
    s.finish(6)
    actions = s.finish(3)
    assert len(of(actions, RunDone)) == 1
    states = [s.state_name(i) for i in range(7)]
    assert states == ["failed", "done", "skipped", "done", "skipped", "skipped", "done"]


def test_a_second_failure_under_stop_is_reported_too() -> None:
    s, _ = _running_pair_with_pending("stop")
    s.fail(0, RuntimeError("first"))
    actions = s.fail(1, RuntimeError("second"))
    assert [a.node for a in of(actions, Failed)] == [1]
    assert len(of(actions, RunDone)) == 1


@pytest.mark.parametrize("on_error", ["stop", "cancel", "continue"])
def test_adding_a_node_whose_parent_failed_skips_it(on_error: str) -> None:
    s = Scheduler(on_error=on_error)  # type: ignore[arg-type]
    s.add(0, "t", ())
    s.add(1, "t", ())
    s.fail(0, RuntimeError())
    actions = s.add(2, "t", (1, 0))
    assert list(skips(actions)) == [2]
    assert not starts(actions)
    assert s.state_name(2) == "skipped"
    if on_error == "continue":
        assert skips(actions) == {2: 0}


def test_skip_cause_names_the_failed_node_not_a_skipped_one() -> None:
    """NodeSkipped.cause is "the failed node it depended on"."""
    s = Scheduler(on_error="continue")
    s.add(0, "t", ())
    s.add(1, "t", (0,))
    s.fail(0, RuntimeError())  # 1 is skipped because of 0
    assert s.state_name(1) == "skipped"
    actions = s.add(2, "t", (1,))
    assert skips(actions) == {2: 0}


def test_adding_a_node_whose_parent_was_cancelled_skips_it() -> None:
    s = Scheduler(on_error="continue")
    s.add(0, "t", ())
    assert s.cancelled(0) == []
    assert s.state_name(0) == "cancelled"
    assert list(skips(s.add(1, "t", (0,)))) == [1]


def test_stop_from_outside_cancels_running_if_asked() -> None:
    s = Scheduler(max_concurrency=1)
    build(s, [[], []])
    actions = s.stop(cancel_running=True)
    assert [a.node for a in of(actions, Cancel)] == [0]
    assert skips(actions) == {1: -1}
    assert len(of(s.cancelled(0), RunDone)) == 1
    with pytest.raises(RuntimeError):
        s.add(2, "t", ())


def test_stop_skips_nodes_waiting_to_retry() -> None:
    s = Scheduler()
    build(s, [[], []], policies={"t": ToolPolicy(retries=3)})
    s.close()
    assert of(s.fail(0, RuntimeError()), RetryLater)
    actions = s.stop(cancel_running=False)
    assert skips(actions) == {0: -1}
    assert s.retry_due(0) == []
    assert len(of(s.finish(1), RunDone)) == 1


# ------------------------------------------------------------ run end & misuse


def test_run_done_only_after_close_and_exactly_once() -> None:
    s = Scheduler()
    s.add(0, "t", ())
    assert not of(s.finish(0), RunDone)  # not closed: more nodes may come
    assert len(of(s.close(), RunDone)) == 1
    assert s.close() == []
    e = Scheduler()
    assert len(of(e.close(), RunDone)) == 1  # an empty run ends at once


def test_misuse_is_rejected() -> None:
    with pytest.raises(ValueError):
        Scheduler(max_concurrency=0)
    with pytest.raises(ValueError):
        Scheduler(on_error="ignore")  # type: ignore[arg-type]
    s = Scheduler()
    with pytest.raises(ValueError):
        s.add(1, "t", ())  # ids are dense
    s.add(0, "t", ())
    with pytest.raises(ValueError):
        s.add(1, "t", (1,))  # parent must be earlier
    with pytest.raises(ValueError):
        s.add(1, "t", (5,))
    s2 = Scheduler()
    s2.add(0, "t", ())
    s2.add(1, "t", (0,))
    with pytest.raises(ValueError):
        s2.finish(1)  # pending, not running
    s2.finish(0)
    with pytest.raises(ValueError):
        s2.finish(0)  # already done
    s2.close()
    with pytest.raises(RuntimeError):
        s2.add(2, "t", ())


# ---------------------------------------------------------- property: limits


TOOL_NAMES = ("a", "b", "c", "d")


@st.composite
def workloads(draw: st.DrawFn, failures: bool) -> dict:
    n = draw(st.integers(1, 40))
    parents = [
        sorted(draw(st.sets(st.integers(0, i - 1), max_size=min(i, 3)))) if i else []
        for i in range(n)
    ]
    tools = [draw(st.sampled_from(TOOL_NAMES)) for _ in range(n)]
    policies = {
        t: ToolPolicy(
            concurrency=draw(st.sampled_from([None, None, 1, 2, 3])),
            retries=draw(st.integers(0, 2)) if failures else 0,
            backoff=0.1,
            jitter=0.5,
        )
        for t in TOOL_NAMES
    }
    fails = (
        [draw(st.sampled_from([0, 0, 0, 0, 1, 2, 3])) for _ in range(n)] if failures else [0] * n
    )
    return {
        "parents": parents,
        "tools": tools,
        "policies": policies,
        "fails": fails,
        "cap": draw(st.sampled_from([None, 1, 2, 5])),
        "rng": draw(st.randoms(use_true_random=False)),
        "seed": draw(st.integers(0, 2**16)),
    }


class Model:
    """Drives a Scheduler like a driver would, checking every action against the rules."""

    def __init__(self, w: dict, on_error: str = "stop") -> None:
        self.w = w
        self.sched = Scheduler(max_concurrency=w["cap"], on_error=on_error, seed=w["seed"])  # type: ignore[arg-type]
        self.added = 0
        self.running: set[int] = set()
        self.waiting_retry: set[int] = set()
        self.terminal: dict[int, str] = {}
        self.starts: Counter[int] = Counter()
        self.fails_left = list(w["fails"])
        self.run_done = 0
        self.closed = False

    def apply(self, actions: list) -> None:
        w = self.w
        for a in actions:
            assert self.run_done == 0, f"{a} after RunDone"
            if isinstance(a, Start):
                i = a.node
                assert i < self.added and i not in self.running and i not in self.terminal
                assert all(self.terminal.get(p) == "done" for p in w["parents"][i]), (
                    f"node {i} started before its parents were done"
                )
                self.starts[i] += 1
                assert a.attempt == self.starts[i]
                self.waiting_retry.discard(i)
                self.running.add(i)
            elif isinstance(a, Queued):
                assert all(self.terminal.get(p) == "done" for p in w["parents"][a.node])
            elif isinstance(a, RetryLater):
                i = a.node
                assert i not in self.running and i not in self.terminal
                policy = w["policies"][w["tools"][i]]
                assert a.attempt == self.starts[i] + 1 <= policy.retries + 1
                base = min(policy.max_backoff, policy.backoff * 2 ** (a.attempt - 2))
                assert base * (1 - policy.jitter) <= a.delay <= base * (1 + policy.jitter)
                self.waiting_retry.add(i)
            elif isinstance(a, Failed):
                assert a.node not in self.terminal
                self.terminal[a.node] = "failed"
            elif isinstance(a, Skip):
                assert a.node not in self.terminal and a.node not in self.running
                self.terminal[a.node] = "skipped"
                self.skip_causes[a.node] = a.cause
            elif isinstance(a, RunDone):
                assert self.closed
                self.run_done += 1
            else:
                raise AssertionError(f"unexpected action {a}")
        self.check_limits()

    skip_causes: dict[int, int]

    def check_limits(self) -> None:
        w, cap = self.w, self.w["cap"]
        assert cap is None or len(self.running) <= cap
        by_tool = Counter(w["tools"][i] for i in self.running)
        for t, count in by_tool.items():
            limit = w["policies"][t].concurrency
            assert limit is None or count <= limit
        # Work-conserving: a node whose inputs are done is held back only by a limit.
        for i in range(self.added):
            if i in self.running or i in self.terminal or i in self.waiting_retry:
                continue
            if all(self.terminal.get(p) == "done" for p in w["parents"][i]):
                t = w["tools"][i]
                limit = w["policies"][t].concurrency
                assert (cap is not None and len(self.running) >= cap) or (
                    limit is not None and by_tool[t] >= limit
                ), f"node {i} is ready and a slot is free, but it did not start"

    def drive(self) -> None:
        w, rng, n = self.w, self.w["rng"], len(self.w["parents"])
        self.skip_causes = {}
        while True:
            choices = []
            if self.added < n:
                choices.append("add")
            if self.running:
                choices.append("end")
            if self.waiting_retry:
                choices.append("retry")
            if not choices:
                break
            what = rng.choice(choices)
            if what == "add":
                k = rng.randint(1, min(8, n - self.added))
                batch = [
                    (i, w["tools"][i], tuple(w["parents"][i]), w["policies"][w["tools"][i]])
                    for i in range(self.added, self.added + k)
                ]
                self.added += k
                if k == 1 and rng.random() < 0.5:
                    actions = self.sched.add(*batch[0])
                else:
                    actions = self.sched.add_many(batch)
                self.apply(actions)
                if self.added == n:
                    self.closed = True
                    self.apply(self.sched.close())
            elif what == "end":
                i = rng.choice(sorted(self.running))
                self.running.discard(i)
                if self.fails_left[i] > 0:
                    self.fails_left[i] -= 1
                    self.apply(self.sched.fail(i, RuntimeError(f"fail {i}")))
                else:
                    self.terminal[i] = "done"
                    self.apply(self.sched.finish(i))
            else:
                i = rng.choice(sorted(self.waiting_retry))
                self.waiting_retry.discard(i)
                self.apply(self.sched.retry_due(i))  # starts now or queues for a slot


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(failures=False))
def test_property_random_dags_respect_dependencies_and_limits(w: dict) -> None:
    m = Model(w)
    m.drive()
    n = len(w["parents"])
    assert m.terminal == {i: "done" for i in range(n)}, "every node finishes"
    assert all(m.starts[i] == 1 for i in range(n))
    assert m.run_done == 1, "RunDone exactly once"
    assert m.sched.running == 0 and not m.running


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(failures=True))
def test_property_failures_and_retries_under_continue(w: dict) -> None:
    m = Model(w, on_error="continue")
    m.drive()
    n = len(w["parents"])
    expected: dict[int, str] = {}
    for i in range(n):
        retries = w["policies"][w["tools"][i]].retries
        if any(expected[p] != "done" for p in w["parents"][i]):
            expected[i] = "skipped"
        elif w["fails"][i] > retries:
            expected[i] = "failed"
        else:
            expected[i] = "done"
    assert m.terminal == expected
    for i in range(n):
        retries = w["policies"][w["tools"][i]].retries
        want = {"done": w["fails"][i] + 1, "failed": retries + 1, "skipped": 0}[expected[i]]
        assert m.starts[i] == want, f"node {i} ({expected[i]}) attempts"
        assert m.sched.state_name(i) == expected[i]
    ancestors: dict[int, set[int]] = {}
    for i in range(n):
        ancestors[i] = set(w["parents"][i]).union(*(ancestors[p] for p in w["parents"][i]))
    for i, cause in m.skip_causes.items():
        assert expected.get(cause) == "failed" and cause in ancestors[i], (
            f"node {i} skipped with cause {cause}, not a failed ancestor"
        )
    assert m.run_done == 1


def test_model_drives_a_trivial_run() -> None:
    """The property tests' model itself: a 2-node chain runs to RunDone."""
    w = {
        "parents": [[], [0]],
        "tools": ["a", "a"],
        "policies": {t: ToolPolicy() for t in TOOL_NAMES},
        "fails": [0, 0],
        "cap": 1,
        "rng": random.Random(0),
        "seed": 0,
    }
    m = Model(w)
    m.drive()
    assert m.terminal == {0: "done", 1: "done"} and m.run_done == 1
