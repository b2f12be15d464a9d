"""Malformed blocks never hang: each degrades to sequential text, recorded as a problem.

Scripts answer by the call's role ("reason": the trajectory's own calls, "thread"),
so these hold whatever the model is told of its prefix.
"""

from __future__ import annotations

import time

import pytest

import plait
from plait.llm._sim import SimLLM
from plait.reason import ThreadWeaver
from plait.reason._parser import (
    BUDGET,
    DUPLICATES,
    NO_ITEMS,
    THREAD_CUT,
    THREAD_FAILED,
    TOO_MANY,
)

HEAD = "Split.\n<Parallel>\n<Outlines>\n"


def _block(*numbers: str) -> str:
    return HEAD + "".join(f"<Outline>{n}: part {n}</Outline>\n" for n in numbers) + "</Outlines>"


def _sim(parent: str, thread: object = " done\n</Thread>",
         tail: str = "\n</Parallel>\nend") -> SimLLM:
    rules = [{"role": "reason", "reply": parent, "times": 1},
             {"role": "thread", **(thread if isinstance(thread, dict) else {"reply": thread})},
             {"role": "reason", "reply": tail}]
    return SimLLM(rules, ttft=0.001, tps=2000)


def test_a_block_without_items_continues_sequentially() -> None:
    r = plait.reason("q", model=_sim(HEAD + "no outlines here\n</Outlines>"), fork=ThreadWeaver())
    assert r.text == HEAD + "no outlines here\n</Outlines>" + "\n</Parallel>\nend"
    assert [p for p, _ in r.problems] == [NO_ITEMS]
    assert r.blocks[0].threads == () and r.blocks[0].problems == (NO_ITEMS,)


def test_too_many_threads_are_not_forked() -> None:
    r = plait.reason("q", model=_sim(_block("1", "2", "3")), fork=ThreadWeaver(max_threads=2))
    assert [p for p, _ in r.problems] == [TOO_MANY]
    assert r.text == _block("1", "2", "3") + "\n</Parallel>\nend"
    assert r.calls == 2  # the parent and its sequential continuation


def test_duplicate_outlines_are_forked_once_each() -> None:
    r = plait.reason("q", model=_sim(_block("1", "2", "1")), fork=ThreadWeaver())
    assert [t.number for t in r.blocks[0].threads] == ["1", "2"]
    assert [p for p, _ in r.problems] == [DUPLICATES]
    assert r.text == (_block("1", "2", "1") + "\n<Thread>\n1: done\n</Thread><Thread>\n2: done\n"
                      "</Thread>\n" + "\n</Parallel>\nend")


def test_a_failed_thread_degrades_the_block() -> None:
    r = plait.reason("q", model=_sim(_block("1", "2"), {"fault": {"status": 400}}),
                     fork=ThreadWeaver())
    assert THREAD_FAILED in [p for p, _ in r.problems]
    assert r.text == _block("1", "2") + "\n</Parallel>\nend"  # continued from the parent


def test_a_hanging_thread_times_out_and_degrades() -> None:
    started = time.perf_counter()
    r = plait.reason("q", model=_sim(_block("1"), {"fault": {"hang": True}}),
                     fork=ThreadWeaver(), timeout=0.2)
    assert THREAD_FAILED in [p for p, _ in r.problems]
    assert r.text.endswith("</Outlines>\n</Parallel>\nend")
    assert time.perf_counter() - started < 10  # three tries of 0.2 s and two backoffs


def test_the_budget_ends_the_trajectory() -> None:
    # Every call writes a block; the budget (tokens of all calls) ends it, recorded.
    llm = SimLLM([{"role": "reason", "reply": _block("1")},
                  {"role": "thread", "reply": " t\n</Thread>"}], ttft=0.001, tps=5000)
    r = plait.reason("q", model=llm, fork=ThreadWeaver(), max_tokens=64, budget=60)
    assert BUDGET in [p for p, _ in r.problems]
    assert 60 <= r.tokens <= 60 + 64


def test_a_model_that_forks_forever_is_bounded_by_max_blocks() -> None:
    llm = SimLLM([{"role": "reason", "reply": _block("1")},
                  {"role": "thread", "reply": " t\n</Thread>"}], ttft=0.001, tps=5000)
    r = plait.reason("q", model=llm, fork=ThreadWeaver(max_blocks=3), budget=100_000)
    assert sum(b.forked for b in r.blocks) == 3
    assert len(r.blocks) <= 2 * 3 + 2


def test_a_failed_parent_raises() -> None:
    llm = SimLLM([{"role": "reason", "fault": {"status": 400}}], ttft=0.001)
    with pytest.raises(plait.PlaitError):
        plait.reason("q", model=llm)


def test_a_thread_cut_by_its_length_bound_is_closed_and_ends_the_trajectory() -> None:
    llm = SimLLM([{"role": "reason", "reply": _block("1", "2"), "times": 1},
                  {"role": "thread", "reply": "".join(f" w{i}" for i in range(40)) + "</Thread>"},
                  {"role": "reason", "reply": "never asked"}], ttft=0.001, tps=5000)
    r = plait.reason("q", model=llm, fork=ThreadWeaver(), max_tokens=20)
    cut = "".join(f" w{i}" for i in range(20))
    # The rollout's closing: "\n</Thread>" after the cut thread, "\n</Parallel>" after
    # the block, and no continuation.
    assert r.text == (_block("1", "2") + f"\n<Thread>\n1:{cut}\n</Thread><Thread>\n2:{cut}"
                      "\n</Thread>\n</Parallel>")
    assert r.status == "cut" and THREAD_CUT in [p for p, _ in r.problems]
    assert all(t.cut for t in r.blocks[0].threads)
