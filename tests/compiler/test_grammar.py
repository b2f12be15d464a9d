"""The plan grammar: everything it allows parses; llama.cpp accepts it."""

from __future__ import annotations

import random
import re
from typing import Literal

import pytest

import plait
from plait.compiler import parse_call, parse_plan, plan_grammar, react_grammar
from plait.compiler._grammar import (
    choice_grammar,
    plan_grammar_tree,
    question_names,
    question_spans,
    react_grammar_tree,
)
from plait.compiler._react import parse_step

from .conftest import TOOLS


@plait.tool
def rich(
    x: float,
    n: int,
    flag: bool,
    names: list[str],
    mode: Literal["fast", "slow"] = "fast",
    limit: int | None = None,
    *,
    label: str = "",
    anything=None,
) -> str:
    """A tool with many parameter types."""
    return ""


ALL = {**TOOLS, "rich": rich}


@pytest.mark.parametrize("first,known", [(1, []), (4, [1, 2]), (10, [3, 7, 9])])
def test_every_sampled_plan_parses_cleanly(first, known):
    tree = plan_grammar_tree(ALL.values(), first=first, known=known, max_tasks=5)
    rng = random.Random(first)
    for _ in range(300):
        text = tree.sample(rng)
        tasks, errors, joined = parse_plan(text, ALL, known=known)
        assert errors == [] and joined, (text, errors)
        assert [t.number for t in tasks] == list(range(first, first + len(tasks)))
        assert 1 <= len(tasks) <= 5


def test_refs_only_to_tasks_that_exist():
    g = plan_grammar(TOOLS.values(), first=3, known=[1], max_tasks=3)
    # Task 3 may use $1 only (task 2 is not known); task 4 may use $1 and $3.
    assert 'ref-3 ::= "$1"\n' in g
    assert 'ref-4 ::= "$1" | "$3"\n' in g
    assert "step-6 ::= thought? \"6. join()\"" in g


def test_first_task_has_no_refs_and_names_are_gbnf_safe():
    g = plan_grammar([TOOLS["search"]], max_tasks=2, thoughts=False)
    assert "ref-1" not in g and "thought" not in g
    for line in g.strip().splitlines():
        name = line.split(" ::= ")[0]
        assert all(c.isalnum() or c == "-" for c in name), name


def test_bounds():
    with pytest.raises(ValueError):
        plan_grammar([], max_tasks=3)
    with pytest.raises(ValueError):
        plan_grammar(TOOLS.values(), max_tasks=0)
    g = plan_grammar(TOOLS.values(), max_tasks=9, max_string=20)
    assert "{1,20}" in g and "10. join()" in g and "11." not in g


def test_react_grammar_samples_are_one_step():
    tree = react_grammar_tree(ALL.values())
    rng = random.Random(3)
    for _ in range(200):
        text = tree.sample(rng)
        thought, action = parse_step(text)
        assert thought and action, text
        name, args, kwargs = parse_call(action)
        assert name in ALL or name == "finish"


def test_llama_cpp_accepts_the_grammars():
    llama_grammar = pytest.importorskip("llama_cpp").LlamaGrammar
    for text in (plan_grammar(ALL.values()), plan_grammar(ALL.values(), first=5, known=[2, 4]),
                 react_grammar(ALL.values())):
        llama_grammar.from_string(text, verbose=False)


@plait.tool
def only_optional(a: int = 1, b: str = "x", c: bool = False) -> str:
    """All parameters optional."""
    return ""


def test_tools_with_only_optional_parameters():
    tools = {"only_optional": only_optional, **TOOLS}
    tree = plan_grammar_tree(tools.values(), max_tasks=3)
    rng = random.Random(5)
    seen = set()
    for _ in range(1500):
        text = tree.sample(rng)
        tasks, errors, _ = parse_plan(text, tools)
        assert errors == [], (text, errors)
        seen.update(tuple(sorted(t.arguments)) for t in tasks if t.tool == "only_optional")
    assert {(), ("a", "b", "c"), ("b",), ("a", "c")} <= seen


QUESTION = "How much taller is the Eiffel Tower than the Statue of Liberty?"


def test_question_spans_are_runs_of_the_question_without_edge_function_words():
    spans = question_spans(QUESTION)
    assert {"Eiffel Tower", "Statue of Liberty", "taller"} <= set(spans)
    assert not any(s.split()[0].lower() in ("the", "of", "than") for s in spans)
    assert not any(s.split()[-1].lower() in ("the", "of", "than") for s in spans)
    assert all(s in QUESTION for s in spans)


def test_question_names_are_the_capitalized_runs_in_order():
    assert question_names(QUESTION) == ["Eiffel Tower", "Statue of Liberty"]
    assert question_names("Which is the tallest of Kilimanjaro, Denali and Aconcagua?") == [
        "Kilimanjaro", "Denali", "Aconcagua"]
    assert question_names("How many years passed between K2 and Mount Everest?") == [
        "K2", "Mount Everest"]
    assert "moon" in question_names("how tall is the moon?")  # no names: every span


def test_grounded_plans_quote_the_question_or_compute_on_results():
    from plait.examples.tools import TOOLS as EXAMPLE_TOOLS

    spans = question_names("Which is the tallest of Kilimanjaro, Denali and Aconcagua?")
    tree = plan_grammar_tree(EXAMPLE_TOOLS, max_tasks=4, thoughts=False, spans=spans)
    bound = tree.max_len()
    rng = random.Random(7)
    tools = {t.name: t for t in EXAMPLE_TOOLS}
    for _ in range(200):
        text = tree.sample(rng)
        assert len(text) <= bound
        tasks, errors, joined = parse_plan(text, tools)
        assert errors == [] and joined, (text, errors)
        for task in tasks:
            for value in task.arguments.values():
                if isinstance(value, str) and value not in ("height", "population", "year",
                                                            "length", "depth", "area",
                                                            "diameter", "atomic_number"):
                    assert value in spans, text  # a literal is quoted from the question
        used = [spans.index(v) for t in tasks for v in t.arguments.values() if v in spans]
        assert len(used) == len(set(used)), text  # each name at most once
        assert set(used) == set(range(len(spans))), text  # every name, before join
        assert len(tasks) <= len(spans) + 1, text
        for line in text.splitlines():  # a text with $N holds only arithmetic
            for arg in re.findall(r'"([^"]*\$\{[^"]*)"', line):
                assert re.fullmatch(r"\$\{\d+\}( [-+*/] (\$\{\d+\}|[\d.]+))+", arg), arg


def test_the_grammar_bounds_the_plan_it_allows():
    tree = plan_grammar_tree(ALL.values(), max_tasks=3, max_string=10)
    rng = random.Random(3)
    assert max(len(tree.sample(rng, max_rep=50)) for _ in range(300)) <= tree.max_len()


def test_choice_grammar_allows_exactly_the_choices():
    import llama_cpp

    text = choice_grammar("Answer: ", ["Mount Everest", 'say "hi"', "8849"])
    assert text.startswith('root ::= "Answer: " (')
    assert '"say \\"hi\\""' in text
    llama_cpp.LlamaGrammar.from_string(text, verbose=False)
    with pytest.raises(ValueError):
        choice_grammar("Answer: ", [])
