"""Tools from a JSON schema and from OpenAI function definitions: checked by
jsonschema with errors naming the tool and the argument, shown to a planner as a
signature, expressible in the plan grammar, and run by plans like Python tools."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import pytest

import plait
from plait.compiler._grammar import plan_grammar_tree
from plait.compiler._parser import parse_plan
from plait.compiler._prompt import tool_list
from plait.llm import Message, SimLLM

WEATHER = {
    "type": "object",
    "properties": {
        "where": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 1},
                "country": {"type": "string", "default": "FR"},
            },
            "required": ["city"],
        },
        "unit": {"type": "string", "enum": ["c", "f"], "default": "c"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["where"],
    "additionalProperties": False,
}

# As pydantic emits it: the nested model in $defs, an optional as anyOf with null.
PYDANTIC_STYLE = {
    "$defs": {
        "Place": {
            "properties": {"city": {"title": "City", "type": "string"},
                           "kind": {"enum": ["town", "peak"], "title": "Kind", "type": "string"}},
            "required": ["city", "kind"],
            "title": "Place",
            "type": "object",
        }
    },
    "properties": {
        "place": {"$ref": "#/$defs/Place"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
    },
    "required": ["place"],
    "title": "visit",
    "type": "object",
}


def weather_tool(seen: list[dict[str, Any]] | None = None) -> plait.Tool:
    def call(**arguments: Any) -> str:
        if seen is not None:
            seen.append(arguments)
        return f"{arguments['where']['city']}: 20{arguments['unit']}"

    return plait.Tool.from_schema("weather", "The weather forecast.", WEATHER, call,
                                  retries=1, timeout=5.0)


def test_good_calls_are_checked_and_completed_with_defaults():
    t = weather_tool()
    assert t.validate({"where": {"city": "Paris"}}) == {
        "where": {"city": "Paris", "country": "FR"}, "unit": "c"}
    assert t.validate({"where": {"city": "Oslo", "country": "NO"}, "unit": "f", "days": 3,
                       "tags": ["a"]}) == {
        "where": {"city": "Oslo", "country": "NO"}, "unit": "f", "days": 3, "tags": ["a"]}
    assert t.policy.retries == 1 and t.policy.timeout == 5.0
    assert t.param_names == ("where", "unit", "days", "tags") and t.required == {"where"}


@pytest.mark.parametrize("arguments,argument,expected", [
    ({"where": {"city": "Paris"}, "unit": "kelvin"}, "unit", "one of 'c', 'f'"),
    ({"where": {"city": "Paris"}, "days": 9}, "days", "9 is greater than the maximum of 7"),
    ({"where": {"city": "Paris"}, "days": "3"}, "days", "a value of type integer"),
    ({"where": {"city": 3}}, "where", "city: a value of type string"),
    ({"where": {"country": "FR"}}, "where", "a value for 'city' (it is required)"),
    ({"where": {"city": ""}}, "where", "city: '' should be non-empty"),
    ({"where": {"city": "Paris"}, "tags": ["a", 2]}, "tags", "1: a value of type string"),
    ({"unit": "c"}, "where", "a value (it is required)"),
])
def test_bad_calls_name_the_tool_and_the_argument(arguments, argument, expected):
    t = weather_tool()
    with pytest.raises(plait.ToolArgumentError) as info:
        t.validate(arguments)
    err = info.value
    assert (err.tool, err.argument) == ("weather", argument), str(err)
    assert err.expected == expected, str(err)
    assert str(err).startswith(f"tool 'weather': argument '{argument}': expected {expected}")


def test_partial_checks_only_the_values_given():
    t = weather_tool()
    assert t.validate({"unit": "f"}, partial=True) == {"unit": "f"}  # `where` not known yet
    with pytest.raises(plait.ToolArgumentError) as info:
        t.validate({"unit": "x"}, partial=True)
    assert info.value.argument == "unit"


def test_refs_defs_and_any_of_as_pydantic_emits_them():
    t = plait.Tool.from_schema("visit", "Visit a place.", PYDANTIC_STYLE, lambda **a: a)
    assert t.validate({"place": {"city": "Lyon", "kind": "town"}}) == {
        "place": {"city": "Lyon", "kind": "town"}, "note": None}
    with pytest.raises(plait.ToolArgumentError) as info:
        t.validate({"place": {"city": "Lyon", "kind": "lake"}})
    assert (info.value.argument, info.value.expected) == ("place", "kind: one of 'town', 'peak'")
    assert t.signature == ('visit(place: {"city": str, "kind": Literal[\'town\', \'peak\']}, *, '
                           "note: str | None = None)")


def test_the_planner_sees_a_signature_made_from_the_schema():
    t = weather_tool()
    assert t.signature == (
        'weather(where: {"city": str, "country"?: str}, *, unit: Literal[\'c\', \'f\'] = \'c\', '
        "days: int = ..., tags: list[str] = ...)")
    assert tool_list([t]) == f"1. {t.signature}\n   The forecast.".replace(
        "The forecast.", "The weather forecast.")


@pytest.mark.parametrize("schema,construct", [
    ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "construct 'not'"),
    ({"type": "object", "properties": {"a": {"type": "object",
                                             "patternProperties": {"x": {}}}}},
     "construct 'patternProperties'"),
    ({"type": "object", "properties": {"a": {"allOf": [{"type": "string"}, {"minLength": 2}]}}},
     "construct 'allOf' with more than one schema"),
    ({"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}},
     "$ref 'https://example.com/s.json'"),
    ({"type": "object", "properties": {"a": {"type": "array",
                                             "items": [{"type": "string"}]}}},
     "construct 'items' as a list"),
    ({"type": "object", "properties": {"a": {"if": {"type": "string"}}}}, "construct 'if'"),
    ({"type": "object", "properties": {"a": {"type": "text"}}}, "type 'text'"),
])
def test_unsupported_constructs_are_refused_naming_them_and_the_tool(schema, construct):
    with pytest.raises(ValueError) as info:
        plait.Tool.from_schema("lookup", "", schema, lambda **a: a)
    message = str(info.value)
    assert message.startswith("tool 'lookup': parameter 'a': JSON-schema "), message
    assert construct in message, message


def test_schemas_that_cannot_describe_arguments_are_refused():
    with pytest.raises(ValueError, match="type 'object'"):
        plait.Tool.from_schema("f", "", {"type": "string"}, lambda **a: a)
    with pytest.raises(ValueError, match="parameter 'a-b' is not an identifier"):
        plait.Tool.from_schema("f", "", {"type": "object", "properties": {"a-b": {}}},
                               lambda **a: a)
    with pytest.raises(ValueError, match="required parameter 'b' is not among"):
        plait.Tool.from_schema("f", "", {"type": "object", "properties": {"a": {}},
                                         "required": ["b"]}, lambda **a: a)
    with pytest.raises(ValueError, match="invalid JSON schema at properties/a/minimum"):
        plait.Tool.from_schema("f", "", {"type": "object",
                                         "properties": {"a": {"minimum": "x"}}}, lambda **a: a)
    with pytest.raises(TypeError, match="unexpected keyword argument 'retrys'"):
        plait.Tool.from_schema("f", "", None, lambda **a: a, retrys=2)


OPENAI_DEFS = [
    {"type": "function", "function": {
        "name": "get-weather", "description": "Weather in a city.", "strict": True,
        "parameters": {"type": "object",
                       "properties": {"city": {"type": "string"},
                                      "unit": {"type": "string", "enum": ["c", "f"]}},
                       "required": ["city", "unit"], "additionalProperties": False}}},
    {"name": "add", "description": "Add two numbers.",
     "parameters": {"type": "object", "properties": {"a": {"type": "number"},
                                                     "b": {"type": "number"}},
                    "required": ["a", "b"]}},
    {"name": "now"},  # no parameters at all
]


def test_openai_definitions_with_one_dispatcher_sync_and_async():
    calls: list[tuple[str, dict[str, Any]]] = []

    def dispatch(name: str, arguments: dict[str, Any]) -> Any:
        calls.append((name, arguments))
        return {"get-weather": "sunny", "add": 3, "now": "noon"}[name]

    tools = plait.tools_from_openai(OPENAI_DEFS, dispatch, idempotent=True)
    assert [t.name for t in tools] == ["get_weather", "add", "now"]
    assert all(t.policy.idempotent and not t.is_async for t in tools)
    weather, add, now = tools
    assert weather("Paris", "c") == "sunny" and add(1, 2) == 3 and now() == "noon"
    # The dispatcher hears the definition's own name.
    assert calls == [("get-weather", {"city": "Paris", "unit": "c"}),
                     ("add", {"a": 1, "b": 2}), ("now", {})]
    with pytest.raises(plait.ToolArgumentError, match="tool 'get_weather': argument 'unit'"):
        weather("Paris", "kelvin")

    async def adispatch(name: str, arguments: dict[str, Any]) -> Any:
        return name

    atools = plait.tools_from_openai(OPENAI_DEFS, adispatch)
    assert all(t.is_async for t in atools)
    assert asyncio.run(atools[0].fn(city="x", unit="c")) == "get-weather"


def test_openai_definitions_with_a_function_per_name():
    tools = plait.tools_from_openai(
        OPENAI_DEFS, {"get-weather": lambda city, unit: f"{city} {unit}",
                      "add": lambda a, b: a + b, "now": lambda: "noon"})
    assert tools[0]("Oslo", unit="f") == "Oslo f"
    with pytest.raises(ValueError, match="no function for tool 'now'"):
        plait.tools_from_openai(OPENAI_DEFS, {"get-weather": print, "add": print})
    with pytest.raises(ValueError, match="needs a 'name'"):
        plait.tools_from_openai([{"type": "function", "function": {}}], print)


def test_sampled_plans_of_the_grammar_parse_and_check():
    """Every plan the grammar allows (nested dicts and enums included) parses, and
    its literal arguments pass the schema tools' checks. (The grammar bounds shapes,
    not numeric ranges: here `days` has none; out of range, the check catches it.)"""
    visit = plait.Tool.from_schema("visit", "Visit a place.", PYDANTIC_STYLE, lambda **a: a)
    unbounded = {**WEATHER, "properties": {**WEATHER["properties"], "days": {"type": "integer"}}}
    weather = plait.Tool.from_schema("weather", "", unbounded, lambda **a: a)
    tree = plan_grammar_tree([weather, visit], max_tasks=4, thoughts=False)
    rng = random.Random(7)
    dicts = 0
    for _ in range(200):
        text = tree.sample(rng)
        tasks, errors, joined = parse_plan(text, {t.name: t for t in (weather, visit)})
        assert tasks and not errors and joined, (text, errors)
        dicts += text.count('{"')
    assert dicts > 100  # the nested objects were written as dicts, not as anything


@pytest.mark.timeout(60)
def test_a_plan_calling_schema_tools_runs_in_parallel():
    """A scripted planner calls an async schema tool twice and a sync one: the
    two slow calls overlap (node times), the answer comes from the joiner."""
    seen: list[dict[str, Any]] = []

    async def forecast(**arguments: Any) -> str:
        seen.append(arguments)
        await asyncio.sleep(0.4)
        return f"{arguments['where']['city']}: 20{arguments['unit']}"

    weather = plait.Tool.from_schema("weather", "The weather forecast.", WEATHER, forecast)
    plan = ('1. weather({"city": "Paris"})\n'
            '2. weather({"city": "Oslo", "country": "NO"}, unit="f")\n3. join()')

    def script(messages: list[Message]) -> str:
        if "Results:" in messages[-1].content:
            return json.dumps({"action": "finish", "answer": "Paris is warmer"})
        return plan

    started = time.perf_counter()
    answer = plait.ask("Where is it warmer?", tools=[weather], model=SimLLM(script, ttft=0))
    elapsed = time.perf_counter() - started
    assert answer.text == "Paris is warmer"
    assert [t.value for t in answer.tasks] == ["Paris: 20c", "Oslo: 20f"]
    assert sorted(seen, key=lambda a: a["where"]["city"]) == [
        {"where": {"city": "Oslo", "country": "NO"}, "unit": "f"},
        {"where": {"city": "Paris", "country": "FR"}, "unit": "c"}]
    a, b = answer.tasks
    assert a.started_at < b.finished_at and b.started_at < a.finished_at  # they overlapped
    assert elapsed < 0.75, elapsed


@pytest.mark.timeout(60)
def test_a_bad_literal_argument_is_a_plan_error_before_anything_runs():
    ran: list[Any] = []
    weather = plait.Tool.from_schema("weather", "", WEATHER, lambda **a: ran.append(a))
    plan = '1. weather({"city": "Paris"}, unit="kelvin")\n2. join()'

    def script(messages: list[Message]) -> str:
        if "Results:" in messages[-1].content:
            return json.dumps({"action": "finish", "answer": "none"})
        return plan

    answer = plait.ask("q", tools=[weather], model=SimLLM(script, ttft=0), max_repairs=0)
    assert ran == []
    assert any("tool 'weather': argument 'unit': expected one of 'c', 'f'" in str(e)
               for e in answer.unresolved), answer.unresolved


@pytest.mark.timeout(240)
def test_the_bundled_model_plans_with_a_schema_tool():
    """The bundled model, constrained by the grammar built from a JSON schema (here
    the one pydantic made for the example `lookup`, enum and all), writes a plan
    calling the schema tool; the calls run and the question is answered."""
    import importlib.util

    from plait.examples import tools as example_tools

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("needs the local extra: pip install 'plait[local]'")
    seen: list[dict[str, Any]] = []

    async def call(**arguments: Any) -> float:
        seen.append(arguments)
        return await example_tools.lookup.fn(**arguments)

    schema = dict(example_tools.lookup.parameters)
    lookup = plait.Tool.from_schema("lookup", example_tools.lookup.description, schema, call)
    answer = plait.ask("Which is taller, Mount Everest or K2?", tools=[lookup], model="local",
                       examples=example_tools.PLAN_EXAMPLES, max_replans=1, timeout=200)
    first = answer.plans[0]
    assert first.constrained and first.errors == () and first.tasks, first
    assert seen and all(t.state == "done" for t in answer.tasks), answer.tasks
    attributes = schema["properties"]["attribute"]
    allowed = attributes.get("enum") or next(
        d["enum"] for d in schema.get("$defs", {}).values() if "enum" in d)
    assert all(a["attribute"] in allowed for a in seen), seen
    assert answer.text == "Mount Everest"
