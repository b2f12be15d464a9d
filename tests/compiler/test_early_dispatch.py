"""A task is dispatched at its call's closing parenthesis, not at the newline.

The model is `plait.llm.SimLLM` streaming word by word: the token that closes a
call (` probe("one")`) comes one token before the newline (`\\n2.`), so waiting
for the newline costs a token's time per plan round.
"""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plait.compiler import ParsedTask, PlanError, PlanParser, PlanText, TaskDispatched, aask
from plait.llm import SimLLM

from .conftest import TOOLS, Clock, recording_tool, scripted

FINISH = '{"action": "finish", "answer": "done"}'


async def test_a_task_runs_though_its_newline_never_comes():
    # The planner stalls for good right after ` probe("one")`: only an early
    # dispatch can start the tool.
    clock = Clock()
    probe = recording_tool(clock, delay=0.01)
    llm = SimLLM([{"reply": '1. probe("one")\n2. join()', "fault": {"stall_after": 2}}],
                 ttft=0.0, tps=1000)
    events: list = []
    run = asyncio.create_task(aask("q", [probe], model=llm, llm_timeout=None,
                                   on_event=events.append))
    try:
        for _ in range(500):
            if "end:one" in clock.marks:
                break
            await asyncio.sleep(0.01)
        assert "end:one" in clock.marks
        text = "".join(e.text for e in events if isinstance(e, PlanText))
        assert text == '1. probe("one")'  # no newline was ever streamed
        assert [e.number for e in events if isinstance(e, TaskDispatched)] == [1]
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


async def test_a_pause_after_the_parenthesis_does_not_delay_the_task():
    # 4 tokens/s: `)` arrives at ~0.25 s, the newline at ~0.5 s.
    clock = Clock()
    probe = recording_tool(clock, delay=0.01)
    llm = scripted({"plan": '1. probe("one")\n2. probe("two")\n3. join()', "joiner": FINISH},
                   ttft=0.0, tps=4)
    events: list = []
    answer = await aask("q", [probe], model=llm, on_event=events.append)
    assert answer.text == "done" and [t.value for t in answer.tasks] == ["one", "two"]
    order = [("task", e.number) if isinstance(e, TaskDispatched) else ("text", e.text)
             for e in events if isinstance(e, (TaskDispatched, PlanText))]
    # Each task comes right after the token that closed its call, before the newline.
    assert order[:5] == [("text", "1."), ("text", ' probe("one")'), ("task", 1),
                         ("text", "\n2."), ("text", ' probe("two")')]
    assert order[5] == ("task", 2)
    newline_at = next(e.t for e in events if isinstance(e, PlanText) and "\n" in e.text)
    dispatched_at = next(e.t for e in events if isinstance(e, TaskDispatched))
    assert newline_at - dispatched_at > 0.1  # a token's time (0.25 s) earlier
    assert clock.marks["start:one"] < newline_at


def test_a_tail_after_the_call_is_reported_not_run():
    p = PlanParser(TOOLS)
    out = p.feed('1. search("a")')
    assert [t.number for t in out if isinstance(t, ParsedTask)] == [1]
    out = p.feed(" then search('b')\n2. search('c')  # why\n3. join()")
    assert [(type(o).__name__, getattr(o, "kind", None)) for o in out] == [
        ("PlanError", "ignored"), ("ParsedTask", None)]
    assert out[0].line == 1 and not out[0].repairable
    assert out[1].text == "2. search('c')" and out[1].call == "search('c')"


def test_a_call_that_closes_within_max_line_stands_however_long_its_line():
    text = '1. search("a")' + " x" * 40 + '\n2. search("b")\n3. join()'
    for cuts in ([], list(range(0, len(text), 3)), [14], [15, 30]):
        p = PlanParser(TOOLS, max_line=30)
        out, last = [], 0
        for c in [*cuts, len(text)]:
            out += p.feed(text[last:c])
            last = c
        out += p.close()
        assert [o.number for o in out if isinstance(o, ParsedTask)] == [1, 2]
        assert [o.kind for o in out if isinstance(o, PlanError)] == ["ignored"]


def test_early_tries_are_bounded():
    # Many `)` inside a string: each delta with one is a try, at most a few per line.
    p = PlanParser(TOOLS)
    assert p.feed('1. search(")') == []
    for _ in range(100):
        assert p.feed(")") == []
    assert p._tries <= 8
    out = p.feed('")\n')
    assert [o.number for o in out if isinstance(o, ParsedTask)] == [1]


# Plans whose task lines carry tails: comments, prose, results, the stop mark,
# second calls, and tails long enough to make the line overlong.
TAILS = st.sampled_from(["", " ", "  # why", " -> 42", " and more", ", search('x')",
                         "<END_OF_PLAN>", ")", " " + "t" * 90])
LINE = st.tuples(st.sampled_from(['search("a")', "add(1, 2)", 'search("${1}")',
                                  'concat(["a", ")"])', 'search("a"', "nope(1)", "add(1,"]),
                 TAILS)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LINE, min_size=1, max_size=5), st.integers(40, 120), st.data())
def test_tails_give_the_same_result_wherever_the_stream_is_cut(lines, max_line, data):
    text = "".join(f"{n}. {call}{tail}\n" for n, (call, tail) in enumerate(lines, 1))
    text += f"{len(lines) + 1}. join()"
    whole = PlanParser(TOOLS, max_line=max_line)
    expected = whole.feed(text) + whole.close()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=25)))
    p = PlanParser(TOOLS, max_line=max_line)
    out, last = [], 0
    for c in [*cuts, len(text)]:
        out += p.feed(text[last:c])
        last = c
    out += p.close()
    assert out == expected
    for n, (call, tail) in enumerate(lines, 1):
        # A whole, valid call stands, whatever follows it on its line.
        if call in ('search("a")', "add(1, 2)", 'concat(["a", ")"])') and n < 10:
            assert any(isinstance(o, ParsedTask) and o.number == n for o in out), (n, out)
