"""Node keys: a node's identity is its content."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum, IntEnum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.runtime._identity import (
    KEY_LENGTH,
    NotCanonicalError,
    Occurrences,
    canonical_arguments,
    canonical_json,
    key_of,
    node_key,
)


@dataclass(frozen=True)
class FakeRef:  # what plait.runtime._graph.Ref looks like to the identity module
    node: int


@dataclass(frozen=True)
class FakeTemplate:
    parts: tuple


PARENTS = {0: "a" * 32, 1: "b" * 32, 2: "c" * 32}


def key(tool="search", args=None, parents=PARENTS, occurrence=0):
    return node_key(tool, {"q": "x"} if args is None else args, parents, occurrence)


def test_same_content_same_key() -> None:
    assert key() == key()
    assert len(key()) == KEY_LENGTH and int(key(), 16) >= 0


def test_everything_that_matters_changes_the_key() -> None:
    keys = {
        key(),
        key(tool="fetch"),
        key(args={"q": "y"}),
        key(args={"query": "x"}),
        key(args={"q": "x", "n": 1}),
        key(occurrence=1),
        key(args={"q": FakeRef(0)}),
        key(args={"q": FakeRef(1)}),
        key(args={"q": FakeTemplate(("x",))}),
        key(args={"q": ["x"]}),
    }
    assert len(keys) == 10


def test_dict_order_is_irrelevant() -> None:
    assert key(args={"a": 1, "b": {"y": 2, "x": 3}}) == key(args={"b": {"x": 3, "y": 2}, "a": 1})


def test_types_are_distinguished() -> None:
    keys = {key(args={"q": v}) for v in [1, "1", 1.0, True, None, [1], {"1": 1}]}
    assert len(keys) == 7


def test_tuples_and_lists_are_the_same() -> None:
    assert key(args={"q": (1, (2, 3))}) == key(args={"q": [1, [2, 3]]})


def test_parents_appear_by_key_not_by_id() -> None:
    # Node ids differ between runs; what matters is which node (by key) is referenced.
    run1 = node_key("sum", {"x": FakeRef(0)}, {0: "k" * 32}, 0)
    run2 = node_key("sum", {"x": FakeRef(7)}, {7: "k" * 32}, 0)
    assert run1 == run2
    assert run1 != node_key("sum", {"x": FakeRef(0)}, {0: "j" * 32}, 0)


def test_refs_nested_and_in_templates() -> None:
    args = {
        "items": [FakeRef(0), {"inner": (FakeRef(1),)}],
        "text": FakeTemplate(("population of ", FakeRef(2), " in 2020")),
    }
    canon = json.loads(canonical_arguments(args, PARENTS))
    assert canon == {
        "items": [{"$ref": "a" * 32}, {"inner": [{"$ref": "b" * 32}]}],
        "text": {"$template": ["population of ", {"$ref": "c" * 32}, " in 2020"]},
    }


def test_parent_keys_may_be_a_function() -> None:
    keys = ["a" * 32, "b" * 32]
    assert node_key("t", {"x": FakeRef(1)}, keys.__getitem__) == node_key(
        "t", {"x": FakeRef(1)}, {1: "b" * 32}
    )


def test_a_literal_dict_cannot_pose_as_a_ref() -> None:
    real = key(args={"q": FakeRef(0)})
    fake = key(args={"q": {"$ref": "a" * 32}})
    assert real != fake
    assert json.loads(canonical_arguments({"$x": {"$ref": 1}}, {})) == {"$$x": {"$$ref": 1}}


def test_unknown_parent() -> None:
    with pytest.raises(NotCanonicalError, match=r"refers to node \$5"):
        key(args={"q": FakeRef(5)})


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({1, 2}, "has type set"),
        (object(), "has type object"),
        ({1: "a"}, "key 1 of type int"),
        (b"raw", "has type bytes"),
    ],
)
def test_values_without_canonical_form(value, fragment) -> None:
    with pytest.raises(NotCanonicalError, match=fragment) as info:
        key(args={"q": [value]})
    assert "q[0]" in str(info.value)
    assert isinstance(info.value, TypeError)


def test_enum_subclasses_become_their_base_values() -> None:
    class Color(str, Enum):
        RED = "red"

    class Level(IntEnum):
        HIGH = 3

    assert canonical_json({"c": Color.RED, "l": Level.HIGH}) == '{"c":"red","l":3}'
    assert key(args={"q": Color.RED}) == key(args={"q": "red"})


def test_occurrences_count_identical_calls() -> None:
    seen = Occurrences()
    a1 = seen.key("search", {"q": "x"}, {})
    b1 = seen.key("search", {"q": "y"}, {})
    a2 = seen.key("search", {"q": "x"}, {})
    a3 = seen.key("search", {"q": "x"}, {})
    assert len({a1, a2, a3, b1}) == 4
    assert a1 == node_key("search", {"q": "x"}, {}, 0)
    assert a2 == node_key("search", {"q": "x"}, {}, 1)
    # Replaying the same sequence in a new run gives the same keys.
    again = Occurrences()
    assert [again.key("search", {"q": v}, {}) for v in "xyxx"] == [a1, b1, a2, a3]


def test_key_of_matches_node_key() -> None:
    canon = canonical_arguments({"q": "x"}, {})
    assert key_of("search", canon, 2) == node_key("search", {"q": "x"}, {}, 2)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=5), st.randoms())
def test_key_ignores_insertion_order(args, rnd) -> None:
    items = list(args.items())
    rnd.shuffle(items)
    assert node_key("t", dict(items), {}) == node_key("t", args, {})


@given(json_values)
def test_canonical_json_round_trips(value) -> None:
    text = canonical_json(value)
    assert text.isascii()
    assert json.loads(text) == value
    assert canonical_json(json.loads(text)) == text
