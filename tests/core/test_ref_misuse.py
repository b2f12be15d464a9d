"""A Ref used as if it were its value (a forgotten `await`) raises RefMisuseError
naming the call and saying to await it; a workflow called like a function says
how to run it."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable
from typing import Any

import pytest

import plait
from plait import Ref, RefMisuseError


@plait.tool
def search(query: str, limit: int = 3) -> str:
    """Look a thing up."""
    return f"{query}: 8611 m"


@plait.tool
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


MISUSES: dict[str, Callable[[Any], Any]] = {
    "f-string": lambda r: f"{r}",
    "f-string spec": lambda r: f"{r:>10}",
    "str": str,
    "format": format,
    "percent format": lambda r: "%s" % r,
    "bool": bool,
    "if": lambda r: 1 if r else 0,
    "and": lambda r: r and 1,
    "not": lambda r: not r,
    "<": lambda r: r < 3,
    "<=": lambda r: r <= 3,
    ">": lambda r: r > 3,
    ">=": lambda r: r >= 3,
    "reversed <": lambda r: 3 < r,
    "== a value": lambda r: r == "yes",
    "!= a value": lambda r: r != "yes",
    "value ==": lambda r: "yes" == r,
    "in a list": lambda r: r in ["yes", "no"],
    "+": lambda r: r + 1,
    "radd": lambda r: 1 + r,
    "str +": lambda r: "height: " + r,
    "-": lambda r: r - 1,
    "rsub": lambda r: 1 - r,
    "*": lambda r: r * 2,
    "rmul": lambda r: 2 * r,
    "/": lambda r: r / 2,
    "rtruediv": lambda r: 2 / r,
    "//": lambda r: r // 2,
    "%": lambda r: r % 2,
    "**": lambda r: r**2,
    "rpow": lambda r: 2**r,
    "neg": operator.neg,
    "pos": operator.pos,
    "abs": abs,
    "round": round,
    "int": int,
    "float": float,
    "index": lambda r: [1, 2][r],
    "len": len,
    "iter": list,
    "for": lambda r: [x for x in r],
    "unpack": lambda r: (lambda a, b: a)(*r),
    "getitem": lambda r: r[0],
    "getitem key": lambda r: r["name"],
    "contains": lambda r: "K2" in r,
    "attribute": lambda r: r.strip(),
}


def _misused(op: Callable[[Any], Any]) -> tuple[BaseException | None, str, Any]:
    """Run `op` on a Ref inside a workflow; return what it raised, the Ref's repr, the value."""
    seen: dict[str, Any] = {}

    @plait.workflow
    async def wf() -> str:
        ref = search("K2 height in metres, from the encyclopedia", limit=5)
        seen["repr"] = repr(ref)
        try:
            op(ref)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            seen["error"] = exc
        return await ref

    result = plait.run(wf)
    return seen.get("error"), seen["repr"], result.value


@pytest.mark.parametrize("name", list(MISUSES))
def test_each_misuse_names_the_call_and_says_to_await(name: str) -> None:
    error, shown, value = _misused(MISUSES[name])
    assert isinstance(error, RefMisuseError), f"{name}: {error!r}"
    assert isinstance(error, TypeError) and isinstance(error, plait.PlaitError)
    text = str(error)
    assert 'search("K2 height in metres, from the encyc...", 5)' in text
    assert "await" in text and "value = await ref" in text
    assert "argument to another tool" in text
    assert value == "K2 height in metres, from the encyclopedia: 8611 m"  # the run goes on
    assert shown.startswith("Ref($0 search(")


def test_repr_never_raises_and_refs_stay_usable_as_keys() -> None:
    @plait.workflow
    async def wf() -> list[Any]:
        a = search("K2")
        b = shout(a)  # a Ref passed on: the intended use, no await needed
        table = {a: "first", b: "second"}
        out = [repr(a), repr(b), repr([a, b]), table[a], a == a, a != b, len({a, b, a})]
        out.append(hasattr(a, "strip"))  # an AttributeError too: hasattr and getattr work
        out.append(getattr(a, "upper", None))
        out.append(await b)
        return out

    value = plait.run(wf).value
    assert value[:3] == ['Ref($0 search("K2"))', "Ref($1 shout($0))",
                         '[Ref($0 search("K2")), Ref($1 shout($0))]']
    assert value[3:] == ["first", True, True, 2, False, None, "K2: 8611 M"]


def test_a_graphs_refs_stay_plain_data() -> None:
    # Parsed plans and JSON graphs compare their Refs with other values.
    assert Ref(2) != "x" and Ref(2) == Ref(2) and Ref(2) not in ["x", 3]
    assert repr(Ref(7)) == "Ref($7)"
    with pytest.raises(RefMisuseError, match=r"node \$7.*await"):
        str(Ref(7))


def test_a_long_argument_is_shortened() -> None:
    @plait.workflow
    async def wf() -> str:
        ref = search("x" * 10_000)
        try:
            bool(ref)
        except RefMisuseError as exc:
            return str(exc)
        return "no error"

    text = plait.run(wf).value
    assert 'search("xxxxxxxxx' in text and len(text) < 400


def test_calling_a_workflow_directly_says_how_to_run_it() -> None:
    @plait.workflow
    async def heights(name: str) -> str:
        return await search(name)

    with pytest.raises(TypeError) as info:
        heights("K2")
    text = str(info.value)
    assert isinstance(info.value, plait.PlaitError)
    assert "plait.run(heights, ...)" in text and "await plait.arun(heights, ...)" in text
    assert "plait run tests.core.test_ref_misuse:" in text
    assert "heights ARGS" in text

    async def in_a_loop() -> None:
        with pytest.raises(TypeError, match="plait.run"):
            heights("K2")

    asyncio.run(in_a_loop())


def test_a_workflow_called_from_a_workflow_joins_its_run() -> None:
    @plait.workflow
    async def inner(name: str) -> str:
        return await shout(search(name))

    @plait.workflow
    async def outer() -> list[str]:
        return [await inner("K2"), await inner("Everest")]

    result = plait.run(outer)
    assert result.value == ["K2: 8611 M", "EVEREST: 8611 M"]
    assert len(result.nodes) == 4  # the inner calls are nodes of the outer run


def test_a_tool_outside_a_workflow_is_a_plain_call() -> None:
    assert search("K2") == "K2: 8611 m"
