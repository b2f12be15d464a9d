"""Grounded prompts for small models: examples chosen per question, plans that quote
the question, and an answer chosen among what the results give."""

from __future__ import annotations

import random

import pytest

from plait.compiler import aask
from plait.compiler._prompt import (
    Example,
    Shown,
    answer_choices,
    closest_examples,
    grounded_messages,
    joiner_messages,
    literal_names,
    planner_messages,
    slot_uses,
)
from plait.examples import tools as example_tools
from plait.examples.tools import PLAN_EXAMPLES, TOOLS

from .conftest import scripted


def _shown(*calls: tuple[str, object]) -> list[Shown]:
    return [Shown(i, call, value, tool=call.split("(")[0], names=literal_names(call, TOOLS))
            for i, (call, value) in enumerate(calls, 1)]


@pytest.mark.parametrize("question,kind", [
    ("Which is older, Big Ben or the Eiffel Tower?", "Which is older"),
    ("How much taller is Mount Everest than K2?", "How much taller"),
    ("Which city has fewer people, Paris or Reykjavik?", "fewer people"),
    ("What is the combined population of Tokyo and Cairo?", "combined population"),
])
def test_the_closest_example_is_of_the_same_kind_and_comes_last(question, kind):
    chosen = closest_examples(question, PLAN_EXAMPLES, 3)
    assert len(chosen) == 3
    assert kind in chosen[-1].question


def test_an_example_splits_into_plan_results_and_answer():
    e = Example.parse(PLAN_EXAMPLES[0])
    assert e.question.startswith("Which river is longer")
    assert "->" not in e.plan and "Answer" not in e.plan and e.plan.endswith("join()")
    assert e.results[0] == ('lookup("Rhine", "length")', "1233")
    assert e.answer == "Rhine"


def test_prompts_show_no_example_answer_to_copy():
    question = "Which is taller, Mount Everest or K2?"
    system = planner_messages(question, TOOLS, examples=PLAN_EXAMPLES)[0].content
    assert system.count("Question:") == 3  # the three closest examples, as plans only
    shown = system.split("Examples:")[1]
    assert "->" not in shown and "Answer:" not in shown
    free = joiner_messages(question, [], may_replan=True)
    assert "Question:" not in free[0].content  # no worked example a model could copy


def test_the_examples_say_what_each_tool_takes_first():
    assert slot_uses(PLAN_EXAMPLES) == {"lookup": {"name"}, "search": {"name"},
                                        "calculator": {"computed"}}


def test_a_grounded_plan_gives_each_tool_only_what_the_examples_give_it():
    from plait.compiler._grammar import plan_grammar_tree, question_names

    names = question_names("What is the total length of the Danube and the Thames?")
    tree = plan_grammar_tree(TOOLS, thoughts=False, spans=names, uses=slot_uses(PLAN_EXAMPLES))
    rng = random.Random(5)
    for _ in range(100):
        text = tree.sample(rng)
        assert 'calculator("Danube")' not in text and 'calculator("Thames")' not in text
        assert "lookup(\"${" not in text and "search(\"${" not in text, text


def test_choices_offer_the_highest_and_lowest_by_name_and_other_results():
    shown = _shown(('lookup("Mount Everest", "height")', 8849.0),
                   ('lookup("K2", "height")', 8611.0),
                   ('calculator("${1} - ${2}")', 238.0))
    assert answer_choices(shown) == {"Highest: Mount Everest (8849)": "Mount Everest",
                                     "Lowest: K2 (8611)": "K2", "Difference: 238": "238",
                                     "Sum: 17460": "17460", "238": "238"}
    years = _shown(('lookup("Big Ben", "year")', 1859.0), ('lookup("CN Tower", "year")', 1976.0))
    assert list(answer_choices(years))[:2] == ["Latest: CN Tower (1976)",
                                               "Earliest: Big Ben (1859)"]
    one = _shown(('lookup("K2", "height")', 8611.0))
    assert answer_choices(one) == {"8611": "8611", "K2": "K2"}


def test_the_journaled_reply_alone_gives_the_answer_of_each_choice():
    from plait.compiler._joiner import parse_decision

    shown = _shown(('lookup("Statue of Liberty", "height")', 93.0),
                   ('lookup("Big Ben (London)", "height")', 96.0),
                   ('calculator("${1} - ${2}")', -3.0), ('search("x")', "a (b) c"))
    for choice, answer in answer_choices(shown).items():
        decision = parse_decision(f"Answer: {choice}")  # what `plait show` reads back
        assert (decision.action, decision.answer) == ("finish", answer), choice


def test_grounded_messages_turn_examples_into_worked_turns():
    shown = _shown(('lookup("Big Ben", "year")', 1859.0), ('lookup("CN Tower", "year")', 1976.0))
    messages = grounded_messages("Which is older, Big Ben or the CN Tower?", shown, TOOLS,
                                 PLAN_EXAMPLES)
    replies = [m.content for m in messages if m.role == "assistant"]
    assert replies and all(r.startswith("Answer: ") for r in replies)
    assert "Answer: Earliest: Sagrada Familia (1882)" in replies  # its answer, as a choice
    assert messages[-1].role == "user" and messages[-1].content.endswith(
        "Question: Which is older, Big Ben or the CN Tower?")


async def test_a_grounded_answer_is_what_the_chosen_choice_gives():
    calls: list = []
    llm = scripted({"plan": '1. lookup("Mount Everest", "height")\n2. lookup("K2", "height")\n'
                            "3. join()",
                    "joiner": "Answer: Highest: Mount Everest (8849)"}, calls=calls)
    answer = await aask("Which is taller, Mount Everest or K2?", example_tools, model=llm,
                        grounded=True)
    assert answer.text == "Mount Everest"
    assert [role for role, _ in calls] == ["plan", "joiner"]


async def test_a_grounded_joiner_replans_a_failed_call_without_asking():
    calls: list = []
    llm = scripted({"plan": '1. lookup("Atlantis", "height")\n2. join()',
                    "replan": '2. lookup("K2", "height")\n3. join()',
                    "joiner": "Answer: 8611"}, calls=calls)
    answer = await aask("How tall is K2?", example_tools, model=llm, grounded=True)
    assert answer.text == "8611"
    roles = [role for role, _ in calls]
    assert roles == ["plan", "replan", "joiner"]  # the failed lookup: no joiner call
    assert answer.decisions[0].action == "replan" and "Atlantis" in answer.decisions[0].answer


async def test_a_grounded_joiner_with_nothing_to_choose_from_does_not_ask():
    calls: list = []
    llm = scripted({"plan": '1. lookup("Atlantis", "height")\n2. join()',
                    "replan": '2. lookup("Atlantis", "height")\n3. join()'}, calls=calls)
    answer = await aask("How tall is Atlantis?", example_tools, model=llm, grounded=True,
                        max_replans=1)
    assert answer.text == ""
    assert "joiner" not in [role for role, _ in calls]


def test_a_grounded_replan_cannot_repeat_a_failed_call():
    from plait.compiler._grammar import plan_grammar_tree

    failed = [("lookup", {"entity": "Lake Superior", "attribute": "height"})]
    tree = plan_grammar_tree(TOOLS, thoughts=False, spans=["Lake Superior"],
                             uses=slot_uses(PLAN_EXAMPLES), failed=failed)
    rng = random.Random(11)
    plans = [tree.sample(rng) for _ in range(200)]
    assert not any('lookup("Lake Superior", "height")' in p for p in plans)
    assert any('lookup("Lake Superior", "depth")' in p for p in plans)
