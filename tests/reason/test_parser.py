"""The fork parser: any split of a trajectory into deltas gives the same block and text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from plait.reason import APR, ForkParser, Multiverse, ThreadWeaver
from plait.reason._parser import parse

TRAJECTORIES = [
    (ThreadWeaver(), "Think.\n<Parallel>\n<Outlines>\n<Outline>1: a</Outline>\n<Outline>2: b"
                     "</Outline>\n</Outlines>\n<Thread>\n1: junk the server should have cut"),
    (ThreadWeaver(), "no block at all, just <Outline>1: text</Outline> and <Thread> tags"),
    (ThreadWeaver(), "<Parallel>\n<Outlines>\n<Outline>1: a</Outline>\n<Outline>1: a"),
    (Multiverse(), "<Parallel>\n<Goal>\n<Outline>\n1: x\n</Outline>\n<Outline>\n2.1: y\n"
                   "</Outline>\n</Goal>\n"),
    (APR(), "Moving to Node #1\n<Calling Sub Searches>\n<Start Sub Search 0 at level 1> "
            "Moving to Node #1,0\n<End Calling Sub Searches>\nafter"),
]


def _split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    out, last = [], 0
    for p in points + [len(text)]:
        out.append(text[last:p])
        last = p
    return out


@settings(max_examples=150, deadline=None)
@given(which=st.integers(0, len(TRAJECTORIES) - 1),
       cuts=st.lists(st.integers(0, 10_000), max_size=40),
       finish=st.sampled_from(["stop", "length", None]))
def test_any_split_gives_the_same_block_and_text(which: int, cuts: list[int],
                                                 finish: str | None) -> None:
    fork, text = TRAJECTORIES[which]
    whole = parse(fork, text, finish)
    parser = ForkParser(fork)
    found = None
    for delta in _split(text, cuts):
        got = parser.feed(delta)
        found = found or got
    end = parser.close(finish)
    assert parser.block == whole.block
    assert parser.text == whole.text
    if found is not None:  # reported at the delta that completed the trigger
        assert found == whole.block and end == found


def test_trigger_in_text_cuts_there() -> None:
    fork, text = TRAJECTORIES[0]
    p = parse(fork, text)
    assert p.block is not None and p.block.numbers == ("1", "2")
    assert p.text.endswith("</Outlines>") and "junk" not in p.text


def test_length_cut_inside_an_open_list_is_no_block() -> None:
    fork, text = TRAJECTORIES[2]
    assert parse(fork, text, "length").block is None
    stopped = parse(fork, text, "stop")
    assert stopped.block is not None and stopped.block.numbers == ("1",)
    assert stopped.block.duplicated


def test_feed_is_linear() -> None:
    # A million characters in one-character deltas: each is searched once (with a
    # fixed overlap), so this takes well under a second; a quadratic parser would not end.
    parser = ForkParser(ThreadWeaver())
    for ch in "abc <Outline" * 50_000:
        parser.feed(ch)
    assert parser.close("length") is None and len(parser.text) == 600_000


def test_a_piece_of_the_trigger_let_through_is_the_trigger() -> None:
    # llama-cpp-python's stream may send "</Outlines" before it stops at "</Outlines>".
    fork = ThreadWeaver()
    text = "<Parallel>\n<Outlines>\n<Outline>1: a</Outline>\n</Outlines"
    p = parse(fork, text, "stop")
    assert p.text == text + ">" and p.block is not None and p.block.numbers == ("1",)
    assert parse(fork, text[:-1] + "x", "stop").text == text[:-1] + "x</Outlines>"
