"""`plait.reason` end to end on the sim, whose script answers each call from its
prefill (the context it continues): the parent, each thread, each continuation."""

from __future__ import annotations

import contextlib
import json
import re

import plait
from plait.journal import open_journal
from plait.llm import SimLLM
from plait.reason import APR, Multiverse, ThreadWeaver
from plait.reason._formats import Thread as Joined

TW_BLOCK = ("Let me split this into parts.\n<Parallel>\n<Outlines>\n"
            "<Outline>1: the tens</Outline>\n"
            "<Outline>2: the units</Outline>\n<Outline>3: the check</Outline>\n</Outlines>")
TW_THREADS = {"1": " 12 x 10 = 120\n", "2": " 12 x 3 = 36\n", "3": " 13 x 12 = 156\n"}
TW_END = "</Parallel>\nSo 12 x 13 = 156."


def tw_script(messages, role, prefill):
    context = prefill or ""
    if role == "thread":
        number = re.search(r"<Thread>\n(\d+):$", context).group(1)
        return TW_THREADS[number] + "</Thread> this is cut by the stop"
    return TW_END if "</Outlines>" in context else TW_BLOCK + "\nnever seen"


def test_threadweaver_trajectory_is_joined_as_the_reference_does(tmp_path) -> None:
    journal = str(tmp_path / "runs.db")
    llm = SimLLM(tw_script, ttft=0.05, tps=200)
    r = plait.reason("What is 12 x 13?", model=llm, fork=ThreadWeaver(), journal=journal,
                     run_id="tw")
    joined = ThreadWeaver().joined(TW_BLOCK, [Joined(n, t) for n, t in TW_THREADS.items()])
    assert r.text == joined + TW_END
    assert r.text == (TW_BLOCK + "\n<Thread>\n1: 12 x 10 = 120\n</Thread><Thread>\n2: 12 x 3 = 36"
                      "\n</Thread><Thread>\n3: 13 x 12 = 156\n</Thread>\n" + TW_END)
    (block,) = r.blocks
    assert [t.text for t in block.threads] == list(TW_THREADS.values())
    # The three threads ran at once: each started before any of them ended.
    assert max(t.start for t in block.threads) < min(t.end for t in block.threads)
    assert r.calls == 5 and r.problems == () and r.status == "done"
    assert r.critical_path_tokens < r.tokens
    assert r.critical_path_bound(0.05, 200) > 0

    # A thread's request names its parent by node key, not by text: the parent's
    # words are journaled once (in its own result), never in a thread's arguments.
    with open_journal(journal) as j:
        state = j.load("tw")
    threads = [i for i in state.intents.values() if i.tool == "thread"]
    assert len(threads) == 3
    for intent in threads:
        assert "split this into parts" not in json.dumps(intent.arguments)

    again = plait.reason("What is 12 x 13?", model=SimLLM(tw_script), fork=ThreadWeaver(),
                         journal=journal, run_id="tw")
    assert again.text == r.text and again.calls == 0 and again.replayed == 5
    assert [t.text for t in again.blocks[0].threads] == list(TW_THREADS.values())


MV_BLOCK = ("Split.\n<Parallel>\n<Goal>\n<Outline>\n1: left\n</Outline>\n<Outline>\n2: right\n"
            "</Outline>\n</Goal>")
MV_NESTED = (" left has two parts\n<Parallel>\n<Goal>\n<Outline>\n1.1: a\n</Outline>\n<Outline>\n"
             "1.2: b\n</Outline>\n</Goal>")


def mv_script(messages, role, prefill):
    context = prefill or ""
    if role == "thread":
        head = re.search(r"<Path>\n([\d.]+):$", context)
        if head is None:  # path 1 continues after its nested block
            return "<Conclusion>\nleft done\n</Conclusion>\n</Parallel>\n</Path>"
        number = head.group(1)
        if number == "1":
            return MV_NESTED
        return f" path {number}\n</Path>"
    return ("<Conclusion>\nall done\n</Conclusion>\n</Parallel>" if "<Path>" in context
            else MV_BLOCK)


def test_multiverse_paths_may_nest_a_block() -> None:
    r = plait.reason("q", model=SimLLM(mv_script, ttft=0.01, tps=500), fork=Multiverse())
    inner = ("\n<Path>\n1.1: path 1.1\n</Path>\n<Path>\n1.2: path 1.2\n</Path>\n")
    path1 = MV_NESTED + inner + "<Conclusion>\nleft done\n</Conclusion>\n</Parallel>\n"
    assert r.text == (MV_BLOCK + "\n<Path>\n1:" + path1 + "</Path>\n<Path>\n2: path 2\n</Path>\n"
                      + "<Conclusion>\nall done\n</Conclusion>\n</Parallel>")
    outer, nested = r.blocks
    assert outer.depth == 0 and nested.depth == 1
    assert [t.number for t in nested.threads] == ["1.1", "1.2"]
    # Paths at max_depth (2) do not fork again: their stop is </Path> only.
    assert r.problems == ()


APR_PARENT = ("Moving to Node #1\nCurrent State: 10:[4, 6], Operations: []\n"
              "<Calling Sub Searches>\n<Start Sub Search 0 at level 1> Moving to Node #1,0\n"
              "<Start Sub Search 1 at level 1> Moving to Node #1,1\n<End Calling Sub Searches>")


def apr_script(messages, role, prefill):
    context = prefill or ""
    if role == "thread":  # a child sees its spawn line only (an isolated context)
        assert "Current State: 10" not in context
        if context.endswith("#1,0"):
            return "\n4+6=10\n10,10 equal: Goal Reached\nGoal Reached\n4+6=10"
        return "\nno luck"
    return "solved" if "<Sub Searches>" in context else APR_PARENT


def test_apr_children_run_isolated_and_report_results() -> None:
    r = plait.reason("q", model=SimLLM(apr_script, ttft=0.01, tps=500), fork=APR())
    # apr_script's continuation sees the results block and writes "solved".
    assert r.text.startswith("Moving to Node #1\nCurrent State: 10:[4, 6], Operations: []\n"
                             "<Sub Searches>\n"
                             "<Goal Reached in Sub Search 0 at level 1 at Node #1,0>\n"
                             "Goal Reached\n4+6=10\n"
                             "<No Solution in Sub Search 1 at level 1 at Node #1,1>\n"
                             "<End Sub Searches>\nsolved")
    assert r.text.count("<Calling Sub Searches>") == 0  # the call block is replaced


def test_a_server_that_cannot_continue_a_prefix_gets_it_quoted(tmp_path) -> None:
    from plait.llm import OpenAILLM, SimServer
    from plait.reason._run import QUOTE

    seen: list[str] = []

    def quoted(messages, role, prefill):
        assert prefill is None  # the OpenAI dialect cannot continue a prefix
        last = messages[-1].content
        context = last[len(QUOTE):] if last.startswith(QUOTE) else None
        seen.append(role)
        return tw_script(messages, role, context)

    with SimServer(quoted, ttft=0.0, tps=2000.0) as server:
        llm = OpenAILLM("sim", base_url=server.base_url, dialect="openai")
        r = plait.reason("What is 12 x 13?", model=llm, fork=ThreadWeaver())
    joined = ThreadWeaver().joined(TW_BLOCK, [Joined(n, t) for n, t in TW_THREADS.items()])
    assert r.text == joined + TW_END  # the same trajectory, each call re-prompted
    assert sorted(seen) == ["reason", "reason", "thread", "thread", "thread"]


def test_a_stopped_reasoning_resumes_paying_only_what_did_not_finish(tmp_path) -> None:
    import asyncio

    journal = str(tmp_path / "runs.db")
    slow = SimLLM([{"role": "reason", "prefill": "</Outlines>", "reply": TW_END},
                   {"role": "reason", "reply": TW_BLOCK},
                   {"role": "thread", "fault": {"hang": True}}], ttft=0.01, tps=500)

    async def stopped() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(plait.areason("What is 12 x 13?", model=slow,
                                                 journal=journal, run_id="cut"), 1.0)

    asyncio.run(stopped())
    assert slow.stats.received == 4  # the parent and the three threads started
    llm = SimLLM(tw_script, ttft=0.01, tps=500)
    r = plait.reason("What is 12 x 13?", model=llm, journal=journal, run_id="cut")
    assert r.replayed == 1 and r.calls == 4  # the parent replayed; threads and the rest paid
    assert r.text.startswith(TW_BLOCK + "\n<Thread>\n1: 12 x 10 = 120\n</Thread>")
