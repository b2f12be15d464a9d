"""The joiner's reply: one line, `Finish: <answer>` or `Replan: <what is missing>`."""

from __future__ import annotations

import random

import pytest

from plait.compiler import aask, decision_grammar, joiner_messages, parse_decision
from plait.compiler._grammar import Chars, Grammar, Rep, alt, seq
from plait.compiler._prompt import Shown

from .conftest import TOOLS, scripted


@pytest.mark.parametrize(
    ("text", "action", "answer", "thought"),
    [
        ("Finish: Mount Everest", "finish", "Mount Everest", ""),
        ("Replan: the height of K2 is missing", "replan", "the height of K2 is missing", ""),
        ("Thought: both are known.\nFinish: 8,849 m", "finish", "8,849 m", "both are known."),
        ("  finish:   K2  ", "finish", "K2", ""),
        ("Action: Finish: K2", "finish", "K2", ""),
        # The older formats still parse: JSON, LLMCompiler's, and bare text.
        ('{"action": "finish", "answer": "done"}', "finish", "done", ""),
        ('{"thought": "t", "action": "replan", "answer": "more"}', "replan", "more", "t"),
        ("Action: Finish(K2)", "finish", "K2", ""),
        ("K2 is taller.", "finish", "K2 is taller.", ""),
    ],
)
def test_replies_parse(text, action, answer, thought):
    d = parse_decision(text)
    assert (d.action, d.answer, d.thought) == (action, answer, thought)


def test_a_replan_that_may_not_be_is_a_finish():
    d = parse_decision("Replan: need more", may_replan=False)
    assert (d.action, d.answer) == ("finish", "need more")


def test_the_prompt_asks_for_one_line_and_no_thought():
    shown = [Shown(1, 'search("K2")', "K2: 8611 m")]
    system = joiner_messages("How tall is K2?", shown, may_replan=True)[0].content
    assert "`Finish: <the answer, short>`" in system and "`Replan: <what is missing>`" in system
    assert "thought" not in system.lower()
    finish_only = joiner_messages("How tall is K2?", shown, may_replan=False)[0].content
    assert "Replan" not in finish_only


def test_the_grammar_writes_replies_that_parse():
    # The rendered GBNF is this tree's: sample the tree, parse what it gives.
    for may_replan, heads in ((True, ("Finish: ", "Replan: ")), (False, ("Finish: ",))):
        g = Grammar()
        g.define("root", seq(alt(*heads), Rep(Chars("\n", negated=True), 1, 300)))
        assert g.render() == decision_grammar(may_replan)
        rng = random.Random(3)
        for _ in range(100):
            reply = g.sample(rng)
            d = parse_decision(reply, may_replan=may_replan)
            head = reply[:8]
            assert d.action == head[:6].lower()
            assert d.answer == (reply[8:].strip() or
                                ("" if d.action == "finish" else "the results were not enough"))


async def test_a_one_line_finish_is_the_answer():
    llm = scripted({"plan": '1. search("a")\n2. join()', "joiner": "Finish: a is here"})
    answer = await aask("q", TOOLS.values(), model=llm)
    assert answer.text == "a is here" and answer.decisions[-1].raw == "Finish: a is here"
