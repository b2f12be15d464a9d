"""Graph data: frozen nodes and refs, validation, topological order, JSON form."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import plait
from plait import Graph, GraphError, Node, Ref, Template


@plait.tool
def echo(x: Any) -> Any:
    return x


@plait.tool
def pair(a: Any, b: Any = None) -> list:
    return [a, b]


TOOLS = {"echo": echo, "pair": pair}


def structure(graph: Graph) -> list[tuple]:
    return [(n.id, n.tool, _typed(dict(n.arguments)), tuple(n.parents)) for n in graph.nodes]


def _typed(value: Any) -> Any:
    """A form of `value` in which equal means equal types too (1 != 1.0 != True, () != [])."""
    if isinstance(value, Ref):
        return ("ref", value.node)
    if isinstance(value, Template):
        return ("template", tuple(_typed(p) for p in value.parts))
    if isinstance(value, list):
        return ("list", tuple(_typed(v) for v in value))
    if isinstance(value, tuple):
        return ("tuple", tuple(_typed(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((k, _typed(v)) for k, v in value.items()))
    return (type(value).__name__, value)


# ------------------------------------------------------------------ frozen data


def test_node_ref_template_graph_are_frozen() -> None:
    node = Node(0, "echo", {"x": 1})
    ref = Ref(3)
    tpl = Template(("a", Ref(0)))
    graph = Graph((node,))
    for obj, attr, value in (
        (node, "tool", "other"),
        (node, "parents", (1,)),
        (ref, "node", 4),
        (tpl, "parts", ()),
        (graph, "nodes", ()),
    ):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, attr, value)


def test_ref_equality_ignores_the_run_and_is_hashable() -> None:
    assert Ref(2) == Ref(2, object())
    assert Ref(2) != Ref(3)
    assert len({Ref(2), Ref(2, object()), Ref(3)}) == 2
    assert repr(Ref(7)) == "Ref($7)"


def test_awaiting_a_ref_outside_a_run_is_an_error() -> None:
    import asyncio

    async def main() -> None:
        await Ref(0)

    with pytest.raises(GraphError):
        asyncio.run(main())


def test_build_finds_parents_anywhere_in_the_arguments_in_first_seen_order() -> None:
    g = Graph.build(
        [
            ("echo", {"x": 1}),
            ("echo", {"x": 2}),
            ("echo", {"x": 3}),
            (
                "pair",
                {
                    "a": {"k": [Ref(2), (Ref(0),)], "t": Template(("v=", Ref(1), "!"))},
                    "b": [Ref(2), Ref(0)],
                },
            ),
        ]
    )
    assert [n.id for n in g.nodes] == [0, 1, 2, 3]
    assert g.nodes[3].parents == (2, 0, 1)
    assert all(n.parents == () for n in g.nodes[:3])
    g.validate(TOOLS)


def test_template_renders_strings_as_is_and_other_values_as_json() -> None:
    tpl = Template(("a=", Ref(0), ", b=", Ref(1), ", c=", Ref(2)))
    assert tpl.render(["x y", 42, {"k": [1, None]}]) == 'a=x y, b=42, c={"k": [1, null]}'


# ------------------------------------------------------------------- validation


def test_validate_accepts_a_good_graph() -> None:
    g = Graph.build([("echo", {"x": 1}), ("pair", {"a": Ref(0), "b": [Ref(0)]})])
    g.validate(TOOLS)  # no error


def test_validate_unknown_tool() -> None:
    g = Graph.build([("echo", {"x": 1}), ("frobnicate", {"x": Ref(0)})])
    with pytest.raises(GraphError, match=r"node 1: unknown tool 'frobnicate'"):
        g.validate(TOOLS)


@pytest.mark.parametrize(
    "arguments, argument",
    [({}, "x"), ({"x": 1, "y": 2}, "y")],
    ids=["missing", "unknown-keyword"],
)
def test_validate_bad_arity(arguments: dict, argument: str) -> None:
    g = Graph.build([("echo", {"x": 0}), ("echo", arguments)])
    with pytest.raises(GraphError) as info:
        g.validate(TOOLS)
    text = str(info.value)
    assert "node 1" in text and "echo" in text and repr(argument) in text


@pytest.mark.parametrize("target", [5, -1])
def test_validate_dangling_ref(target: int) -> None:
    g = Graph.build([("echo", {"x": 0}), ("echo", {"x": [Ref(target)]})])
    with pytest.raises(GraphError, match=rf"node 1: reference to missing node \${target}"):
        g.validate(TOOLS)


def test_validate_parents_must_match_references() -> None:
    g = Graph((Node(0, "echo", {"x": 1}), Node(1, "echo", {"x": 2}, parents=(0,))))
    with pytest.raises(GraphError, match="node 1"):
        g.validate(TOOLS)


def test_validate_ids_must_be_positions() -> None:
    g = Graph((Node(0, "echo", {"x": 1}), Node(5, "echo", {"x": 2})))
    with pytest.raises(GraphError, match="position 1"):
        g.validate(TOOLS)


def _cycle_in(message: str) -> list[int]:
    assert message.startswith("cycle: ")
    return [int(x) for x in re.findall(r"\$(\d+)", message)]


def test_validate_names_the_cycle_and_only_the_cycle() -> None:
    # 0 is a root feeding 1; 1 -> 2 -> 3 -> 1 is the cycle; 4 hangs off it.
    g = Graph.build(
        [
            ("echo", {"x": 0}),
            ("pair", {"a": Ref(0), "b": Ref(3)}),
            ("echo", {"x": Ref(1)}),
            ("echo", {"x": Ref(2)}),
            ("echo", {"x": Ref(3)}),
        ]
    )
    with pytest.raises(GraphError) as info:
        g.validate(TOOLS)
    cycle = _cycle_in(str(info.value))
    assert cycle[0] == cycle[-1]
    assert sorted(cycle[:-1]) == [1, 2, 3]
    edges = {(p, n.id) for n in g.nodes for p in n.parents}
    steps = list(zip(cycle, cycle[1:]))
    # Every step is an edge, all in the same direction.
    assert all((a, b) in edges for a, b in steps) or all((b, a) in edges for a, b in steps)
    with pytest.raises(GraphError, match="cycle"):
        g.topological()


def test_validate_self_loop() -> None:
    g = Graph.build([("echo", {"x": Ref(0)})])
    with pytest.raises(GraphError) as info:
        g.validate(TOOLS)
    assert _cycle_in(str(info.value)) == [0, 0]


def test_topological_puts_parents_first_whatever_the_ids() -> None:
    # Children listed before their parents (as a replanner may emit them).
    g = Graph.build(
        [
            ("pair", {"a": Ref(2), "b": Ref(3)}),
            ("echo", {"x": Ref(0)}),
            ("echo", {"x": 1}),
            ("echo", {"x": Ref(2)}),
        ]
    )
    g.validate(TOOLS)
    order = g.topological()
    assert sorted(order) == [0, 1, 2, 3]
    pos = {n: k for k, n in enumerate(order)}
    for n in g.nodes:
        assert all(pos[p] < pos[n.id] for p in n.parents)


# --------------------------------------------------------------------- JSON form


def test_json_round_trip_keeps_structure() -> None:
    g = Graph.build(
        [
            ("echo", {"x": "plain $string"}),
            ("echo", {"x": [1, 2.5, True, None, "s", [], {}, ()]}),
            (
                "pair",
                {
                    "a": {"nested": [Ref(0), (Ref(1), "t", (1, [2]))], "n": {"m": {"o": Ref(0)}}},
                    "b": Template(("population of ", Ref(1), " in ", Ref(0), "")),
                },
            ),
            (
                "pair",
                {
                    # literal dicts that look like encoded values
                    "a": {"$ref": 0, "$tuple": [1], "other": 1},
                    "b": [{"$ref": 1}, {"$dict": {"$template": "x"}}, {"$tuple": [Ref(2)]}],
                },
            ),
        ]
    )
    text = g.to_json()
    json.loads(text)  # valid JSON
    back = Graph.from_json(text)
    assert structure(back) == structure(g)
    back.validate(TOOLS)
    assert back.to_json() == text


# Values that arguments may hold: JSON atoms, lists, tuples, dicts (keys that look
# like the encoding's markers included), refs and templates.
_keys = st.one_of(
    st.sampled_from(["$ref", "$tuple", "$dict", "$template", "$", "a", "ref"]), st.text(max_size=4)
)
_atoms = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
_refs = st.builds(Ref, st.integers(0, 3))
_templates = st.builds(Template, st.lists(st.one_of(st.text(max_size=4), _refs), max_size=4).map(tuple))
_values = st.recursive(
    st.one_of(_atoms, _refs, _templates),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(_keys, inner, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b"]), _values, max_size=2), min_size=1, max_size=4))
def test_json_round_trip_property(argument_lists: list[dict]) -> None:
    g = Graph.build(("pair", args) for args in argument_lists)
    back = Graph.from_json(g.to_json())
    assert structure(back) == structure(g)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[1, 2",
        "[]",
        "{}",
        "null",
        '{"nodes": 5}',
        '{"nodes": [5]}',
        '{"nodes": [{"tool": "echo", "arguments": {}}]}',
        '{"nodes": [{"id": 0, "arguments": {}}]}',
        '{"nodes": [{"id": 0, "tool": "echo"}]}',
        '{"nodes": [{"id": "zero", "tool": "echo", "arguments": {}}]}',
        '{"nodes": [{"id": 0, "tool": "echo", "arguments": []}]}',
        '{"nodes": [{"id": 0, "tool": "echo", "arguments": "x"}]}',
        '{"nodes": [{"id": 0, "tool": "echo", "arguments": {"x": {"$ref": "zero"}}}]}',
        '{"nodes": [{"id": 0, "tool": "echo", "arguments": {"x": {"$ref": null}}}]}',
        '{"nodes": [{"id": 0, "tool": "echo", "arguments": {"x": {"$tuple": 5}}}]}',
        '{"nodes": [{"id": 0, "tool": "echo", "arguments": {"x": {"$template": 5}}}]}',
        '{"nodes": [{"id": 0, "tool": "echo", "arguments": {"x": {"$dict": 5}}}]}',
        '{"nodes": [{"id": 0, "tool": "echo", "arguments": {"x": {"$dict": [1, 2]}}}]}',
        '{"nodes": [{"id": 0, "tool": "echo", "arguments": {"x": {"$template": [5]}}}]}',
    ],
)
def test_garbage_json_is_a_graph_error(text: str) -> None:
    with pytest.raises(GraphError):
        Graph.from_json(text)
