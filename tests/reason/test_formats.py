"""Joins byte for byte against each format's reference orchestrator.

The expected strings are written out from the published code (read, not run):
ThreadWeaver facebookresearch/threadweaver@2662232 threadweaver_sft/src/simple_eval.py
`branching_generate` (+ the RL rollout single_turn_agent_loop.py for de-duplication and
a cut thread), Multiverse Infini-AI-Lab/Multiverse@4cbc487 data/prompt/step3-prompt.txt
(the published block layout), APR Parallel-Reasoning/APR@5577928
tinyrl/rollout/apr_utils.py `get_main_trace_after_sub_search` / `get_search_result`.
"""

from __future__ import annotations

import pytest

from plait.reason import APR, Multiverse, ThreadWeaver
from plait.reason._formats import Thread
from plait.reason._parser import parse

TW_PARENT = ("Let me split this.\n<Parallel>\n<Outlines>\n<Outline>1: the left side</Outline>\n"
             "<Outline>2: the right side</Outline>\n</Outlines>")


def test_threadweaver_join_is_simple_evals_merge() -> None:
    fork = ThreadWeaver()
    # simple_eval: merged = outlines_full; "\n" before the first <Thread> only;
    # f"<Thread>\n{num}:{thread_content}" where the content ends with the re-appended
    # "</Thread>"; then merged += "\n".
    expected = (TW_PARENT + "\n" + "<Thread>\n1: left is 3\n</Thread>"
                + "<Thread>\n2: right is 4\n</Thread>" + "\n")
    got = fork.joined(TW_PARENT, [Thread("1", " left is 3\n"), Thread("2", " right is 4\n")])
    assert got == expected
    # A thread's own context: parent + "\n<Thread>\n{num}:" (every thread, the first too).
    assert TW_PARENT + fork.thread_header("2") == TW_PARENT + "\n<Thread>\n2:"


def test_threadweaver_outline_numbers_are_read_after_the_last_outlines_and_deduplicated() -> None:
    fork = ThreadWeaver()
    text = ("<Outlines>\n<Outline>9: old</Outline>\n</Outlines> later <Parallel>\n<Outlines>\n"
            "<Outline> 1.1 : a</Outline>\n<Outline>2: b</Outline>\n<Outline>2: again</Outline>"
            "\n<Outline>x: not a number</Outline>\n")
    # The first block was closed in the text itself: that is the block found.
    p = parse(fork, text)
    assert p.block is not None and p.block.numbers == ("9",)
    assert p.text == text[: text.index("</Outlines>") + len("</Outlines>")]
    # The server stopped at </Outlines>: the trigger is re-appended (matched_stop).
    p2 = parse(fork, text[text.index(" later"):])
    assert p2.text == text[text.index(" later"):] + "</Outlines>"
    assert p2.block is not None
    assert [n for n, _ in p2.block.items] == ["1.1", "2", "2"]
    assert p2.block.numbers == ("1.1", "2") and p2.block.duplicated  # the rollout's dict.fromkeys


def test_threadweaver_cut_thread_gets_the_rollouts_closing() -> None:
    fork = ThreadWeaver()
    got = fork.joined(TW_PARENT, [Thread("1", " a", cut=True), Thread("2", " b\n")])
    # The rollout: "\n</Thread>" after a cut thread, then "\n</Parallel>" and the end.
    assert got + fork.closing == (TW_PARENT + "\n<Thread>\n1: a\n</Thread><Thread>\n2: b\n"
                                  "</Thread>\n</Parallel>")


MV_PARENT = ("<Parallel>\n<Goal>\n<Outline>\n1: [goal 1]\n</Outline>\n<Outline>\n2: [goal 2]\n"
             "</Outline>\n</Goal>")


def test_multiverse_join_is_the_published_layout() -> None:
    fork = Multiverse()
    got = fork.joined(MV_PARENT, [Thread("1", " [path 1]\n"), Thread("2", " [path 2]\n")])
    # step3-prompt.txt: </Goal>\n<Path>\n1: ...\n</Path>\n<Path>\n2: ...\n</Path>\n<Conclusion>
    assert got == (MV_PARENT + "\n<Path>\n1: [path 1]\n</Path>\n<Path>\n2: [path 2]\n</Path>\n")
    p = parse(fork, MV_PARENT[: -len("</Goal>")])
    assert p.block is not None and p.block.numbers == ("1", "2") and p.text == MV_PARENT
    assert fork.thread_stops(1) == ["</Path>", "</Goal>"]  # a path may open a block
    assert fork.thread_stops(2) == ["</Path>"]


APR_PARENT = ("Moving to Node #1\nCurrent State: 62:[5, 50, 79, 27], Operations: []\n"
              "<Calling Sub Searches>\n<Start Sub Search 0 at level 1> Moving to Node #1,1,2\n"
              "<Start Sub Search 1 at level 1> Moving to Node #1,2,0\n<End Calling Sub Searches>")


def test_apr_join_is_get_main_trace_after_sub_search() -> None:
    fork = APR()
    p = parse(fork, APR_PARENT)
    assert p.block is not None
    assert p.block.items == (("0", "Moving to Node #1,1,2"), ("1", "Moving to Node #1,2,0"))
    found = ("\nCurrent State: 62:[12, 50], Operations: []\nExploring Operation: 12+50=62, "
             "Resulting Numbers: [62]\n62,62 equal: Goal Reached\nGoal Reached\nstep a\nstep b")
    threads = [Thread("0", found, spec="Moving to Node #1,1,2"),
               Thread("1", "\nnothing here", spec="Moving to Node #1,2,0")]
    got = fork.joined(APR_PARENT, threads)
    # get_search_result: from the second-last "Goal Reached", .strip()[13:]
    result = "Goal Reached\nGoal Reached\nstep a\nstep b"[13:]
    assert got == ("Moving to Node #1\nCurrent State: 62:[5, 50, 79, 27], Operations: []\n"
                   "<Sub Searches>\n"
                   "<Goal Reached in Sub Search 0 at level 1 at Node #1,1,2>\n" + result + "\n"
                   "<No Solution in Sub Search 1 at level 1 at Node #1,2,0>\n"
                   "<End Sub Searches>\n")


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="max_threads"):
        ThreadWeaver(max_threads=0)
    with pytest.raises(ValueError, match="max_depth"):
        Multiverse(max_depth=0)
