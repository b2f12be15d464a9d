"""Speculative calls in the pure scheduler: free slots only, last in line, preempted
by any ready node, and a slot that becomes the adopting node's."""

from __future__ import annotations

from plait.runtime._scheduler import RUNNING, Preempt, Queued, Scheduler, Start
from plait.runtime._tools import ToolPolicy

READ_ONLY = ToolPolicy(speculate=True)


def moves(actions: list) -> list:
    """The actions but `Queued` (a node with a limit is queued, then started)."""
    return [a for a in actions if not isinstance(a, Queued)]


def test_a_guess_takes_only_a_free_slot() -> None:
    s = Scheduler(max_concurrency=2)
    assert moves(s.add(0, "t", [])) == [Start(0, 1)]
    assert s.speculate(0, "g", READ_ONLY)
    assert not s.speculate(1, "g", READ_ONLY)  # both slots taken
    assert s.running == 2 and list(s.speculative) == [0]


def test_a_guess_never_starts_while_a_node_waits_for_a_slot() -> None:
    s = Scheduler(max_concurrency=1)
    s.add(0, "t", [])
    assert moves(s.add(1, "t", [])) == []
    s.max_concurrency = 3  # room now, but node 1 is still queued: it goes first
    assert not s.speculate(0, "g", READ_ONLY)


def test_a_ready_node_preempts_the_youngest_guess() -> None:
    s = Scheduler(max_concurrency=3)
    s.add(0, "t", [])
    assert s.speculate(10, "g", READ_ONLY) and s.speculate(11, "g", READ_ONLY)
    actions = moves(s.add(1, "t", []))
    assert actions == [Preempt(11), Start(1, 1)]
    assert list(s.speculative) == [10] and s.running == 3
    assert moves(s.add(2, "t", [])) == [Preempt(10), Start(2, 1)]
    assert not s.speculative and s.running == 3
    assert moves(s.add(3, "t", [])) == []  # queued: no guess left to take


def test_a_tool_limit_preempts_a_guess_of_that_tool_only() -> None:
    s = Scheduler()
    one = ToolPolicy(concurrency=1, speculate=True)
    assert s.speculate(5, "other", ToolPolicy(concurrency=1, speculate=True))
    assert s.speculate(6, "lim", one)
    assert not s.speculate(7, "lim", one)  # the tool's one slot is held
    actions = s.add(0, "lim", [], one)
    assert [type(a) for a in actions] == [Queued, Preempt, Start]
    assert actions[1] == Preempt(6) and list(s.speculative) == [5]


def test_an_adopting_node_starts_in_its_guess_slot() -> None:
    s = Scheduler(max_concurrency=2)
    s.add(0, "t", [])
    assert s.speculate(3, "g", READ_ONLY)
    assert s.add(1, "g", [], READ_ONLY, adopt=3) == [Start(1, 1)]
    assert s.state[1] == RUNNING and s.running == 2 and not s.speculative
    s.finish(1)
    assert s.running == 1


def test_a_guess_that_ends_frees_its_slot_for_a_waiting_node() -> None:
    s = Scheduler(max_concurrency=1)
    assert s.speculate(0, "g", READ_ONLY)
    s.speculative.clear()  # (as if adopted elsewhere: the slot stays counted)
    s.speculative[0] = "g"
    assert s.speculation_ended(0) == [] and s.running == 0
    assert s.speculation_ended(0) == []  # twice: a no-op
    assert s.speculate(1, "g", READ_ONLY)
    s.add(0, "t", [])  # preempts guess 1 at once
    assert not s.speculative and s.running == 1


def test_stopping_preempts_every_guess() -> None:
    s = Scheduler(max_concurrency=4)
    assert s.speculate(0, "g", READ_ONLY) and s.speculate(1, "g", READ_ONLY)
    actions = s.stop(cancel_running=False)
    assert [a for a in actions if isinstance(a, Preempt)] == [Preempt(0), Preempt(1)]
    assert s.running == 0 and not s.speculate(2, "g", READ_ONLY)
