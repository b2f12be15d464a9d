"""The bundled example tools: offline search, lookup and a safe calculator."""

from __future__ import annotations

import pytest

import plait

from plait.examples import tools as ex


@pytest.fixture(autouse=True)
def no_latency(monkeypatch):
    monkeypatch.setattr(ex, "LATENCY", (0.0, 0.0))


async def test_search_is_case_insensitive_and_fuzzy():
    for query in ("Mount Everest", "mount everest", "EVEREST", "the Everest", "Mount Evrest"):
        assert (await ex.search.fn(query)).startswith("Mount Everest:"), query
    assert (await ex.search.fn("k 2")).startswith("K2:")
    assert (await ex.search.fn("Eifel Tower")).startswith("Eiffel Tower:")
    assert (await ex.search.fn("New York")).startswith("New York City:")


async def test_search_says_clearly_when_nothing_is_found():
    text = await ex.search.fn("Atlantis")
    assert text.startswith('No entry found for "Atlantis".')
    assert "Similar" in await ex.search.fn("Mont Blank Tower Thing")


async def test_lookup_numbers():
    assert await ex.lookup.fn("K2", "height") == 8611.0
    assert await ex.lookup.fn("Tokyo", "population") == 14_000_000.0
    assert await ex.lookup.fn("Eiffel Tower", "year") == 1889.0
    # The attribute is a closed set: the schema says which, so a plan grammar allows
    # only those and a call with another is refused before it runs.
    assert ex.lookup.parameters["properties"]["attribute"]["enum"][:3] == [
        "height", "population", "year"]
    with pytest.raises(plait.ToolArgumentError, match="attribute"):
        ex.lookup.validate({"entity": "Tokyo", "attribute": "how many people"})
    with pytest.raises(ValueError, match="no entry"):
        await ex.lookup.fn("Atlantis", "height")
    with pytest.raises(ValueError, match="has no"):
        await ex.lookup.fn("K2", "population")


def test_the_encyclopedia_is_well_formed():
    entries = ex.encyclopedia()
    assert len(entries) >= 30
    names = [e.name for e in entries]
    assert len(set(names)) == len(names)
    for e in entries:
        assert e.text and all(isinstance(v, (int, float)) for v in e.facts.values())


@pytest.mark.parametrize("expression,value", [
    ("1 + 2 * 3", 7.0), ("(8849 - 8611) / 2", 119.0), ("8,849 - 8,611", 238.0),
    ("2 ** 10", 1024.0), ("2^3", 8.0), ("-(-3)", 3.0), ("+4", 4.0), ("1.5e3", 1500.0),
    ("6 × 7", 42.0), ("10 = ", 10.0),
])
def test_calculator(expression, value):
    assert ex.calculate(expression) == value
    assert ex.calculator.fn(expression) == value


@pytest.mark.parametrize("expression", [
    "__import__('os').system('true')", "open('x')", "a + 1", "1 if 1 else 2", "[1, 2]",
    "1 / 0", "9 ** 9 ** 9", "10 ** 1000", "(-8) ** 0.5", "", "1 +", "(" * 300 + "1" + ")" * 300,
    "True + 1", "'a' * 3", "1 % 2", "1 // 2", "x" * 400,
])
def test_calculator_refuses_everything_else(expression):
    with pytest.raises(ValueError):
        ex.calculate(expression)


def test_the_module_offers_tools_and_examples():
    from plait.compiler import parse_plan, tools_of
    from plait.compiler._prompt import Example, Shown, answer_choices, literal_names

    tools, examples = tools_of(ex)
    assert [t.name for t in tools] == ["search", "lookup", "calculator"]
    table = {t.name: t for t in tools}
    for text in examples:
        example = Example.parse(text)
        tasks, errors, joined = parse_plan(example.plan, table)
        assert tasks and not errors and joined, text
        # a worked example: each call's result, and an answer the results give
        assert len(example.results) == len(tasks) and example.answer, text
        shown = [Shown(i, call, float(v) if v.isdigit() else v, tool=call.split("(")[0],
                       names=literal_names(call, tools))
                 for i, (call, v) in enumerate(example.results, 1)]
        assert example.answer in answer_choices(shown).values(), text
