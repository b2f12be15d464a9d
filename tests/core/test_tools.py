"""`@plait.tool`: schema, policy, argument checking, sync tools in threads."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import plait
from plait import ToolArgumentError, ToolPolicy


@plait.tool
def search(query: str, limit: int = 5, tags: list[str] | None = None, *, lang: str) -> list[str]:
    """Search the index.

    Returns at most `limit` hits.

    Args:
        query: what to look for
        limit: how many hits at most
        tags: only hits with these tags
        lang: a language code
    """
    return [f"{query}/{limit}/{tags}/{lang}"]


@plait.tool(retries=3, timeout=2.5, concurrency=2, backoff=0.5, jitter=0.0, name="fetch_page")
async def fetch(url: str, retries_left: int = 0) -> str:
    """Fetch a page."""
    await asyncio.sleep(0)
    return f"<{url}:{retries_left}>"


# --------------------------------------------------------------------- schema


def test_schema_types_and_descriptions_come_from_hints_and_docstring() -> None:
    schema = search.parameters
    assert schema["type"] == "object"
    assert schema["title"] == "search"
    props = schema["properties"]
    assert list(props) == ["query", "limit", "tags", "lang"]
    assert props["query"]["type"] == "string"
    assert props["limit"]["type"] == "integer"
    assert {"type": "null"} in props["tags"]["anyOf"]
    assert {"type": "array", "items": {"type": "string"}} in props["tags"]["anyOf"]
    assert props["lang"]["type"] == "string"
    # Google-style `Args:` descriptions end up in the parameters' schema.
    assert props["query"]["description"] == "what to look for"
    assert props["limit"]["description"] == "how many hits at most"
    assert props["tags"]["description"] == "only hits with these tags"
    assert props["lang"]["description"] == "a language code"
    # The description is the docstring without the Args section.
    assert search.description == "Search the index.\n\nReturns at most `limit` hits."
    assert schema["description"] == search.description
    assert "Args" not in search.description and "what to look for" not in search.description


def test_required_versus_optional() -> None:
    assert search.required == frozenset({"query", "lang"})  # keyword-only without default too
    assert sorted(search.parameters["required"]) == ["lang", "query"]
    assert search.param_names == ("query", "limit", "tags", "lang")
    assert fetch.required == frozenset({"url"})
    assert fetch.parameters["required"] == ["url"]


def test_schema_rejects_extra_properties_and_lists_no_undocumented_descriptions() -> None:
    @plait.tool
    def plain(a: int, b: float = 1.0) -> float:
        return a * b

    assert plain.parameters.get("additionalProperties") is False
    assert "description" not in plain.parameters  # no docstring, no made-up description
    assert "description" not in plain.parameters["properties"]["a"]
    assert plain.parameters["properties"]["b"]["type"] == "number"
    assert plain.description == ""


class Blob:
    pass


def test_untyped_and_arbitrary_typed_parameters() -> None:
    @plait.tool
    def take(x, blob: Blob) -> str:  # type: ignore[no-untyped-def]
        """Take things.

        Args:
            x: anything at all
        """
        return type(blob).__name__

    assert set(take.parameters["properties"]) == {"x", "blob"}
    assert take.required == frozenset({"x", "blob"})
    assert take(1, Blob()) == "Blob"
    with pytest.raises(ToolArgumentError) as info:
        take(1, "not a blob")
    assert info.value.argument == "blob"


def test_sync_and_async_tools() -> None:
    assert search.is_async is False
    assert fetch.is_async is True
    assert search("q", lang="en") == ["q/5/None/en"]
    coro = fetch("http://x")
    assert asyncio.iscoroutine(coro)
    assert asyncio.run(coro) == "<http://x:0>"


def test_decorator_without_options_uses_default_policy() -> None:
    assert isinstance(search, plait.Tool)
    assert search.name == "search"
    assert search.policy == ToolPolicy()
    assert search.policy.retries == 0 and search.policy.timeout is None
    assert search.policy.concurrency is None


def test_decorator_with_options() -> None:
    assert isinstance(fetch, plait.Tool)
    assert fetch.name == "fetch_page"
    assert fetch.parameters["title"] == "fetch_page"
    p = fetch.policy
    assert (p.retries, p.timeout, p.concurrency, p.backoff, p.jitter) == (3, 2.5, 2, 0.5, 0.0)



def test_signature_shows_plain_type_names() -> None:
    # This module uses `from __future__ import annotations`, as much user code does:
    # the planner must still see `url: str`, not a quoted string annotation.
    assert fetch.signature == "fetch_page(url: str, retries_left: int = 0) -> str"
    assert search.signature == (
        "search(query: str, limit: int = 5, tags: list[str] | None = None, *, lang: str)"
        " -> list[str]"
    )


def test_decorator_called_directly_and_rewrapping_a_tool() -> None:
    def double(x: int) -> int:
        """Twice x."""
        return 2 * x

    t1 = plait.tool(double)
    t2 = plait.tool(retries=2)(t1)
    assert t1(4) == 8 and t2(4) == 8
    assert t2.fn is double  # re-wrapping a tool wraps its function, not the tool
    assert t1.policy.retries == 0 and t2.policy.retries == 2


@pytest.mark.parametrize(
    "options",
    [
        {"retries": -1},
        {"concurrency": 0},
        {"concurrency": -3},
        {"timeout": 0},
        {"timeout": -1.0},
        {"jitter": -0.1},
        {"jitter": 1.5},
        {"backoff": -1.0},
        {"max_backoff": -1.0},
        {"retry_on": ("ValueError",)},
        {"retry_on": (42,)},
    ],
    ids=lambda o: "-".join(f"{k}={v!r}" for k, v in o.items()),
)
def test_bad_policy_values_are_rejected(options: dict) -> None:
    def f(x: int) -> int:
        return x

    with pytest.raises((ValueError, TypeError)):
        plait.tool(**options)(f)
    with pytest.raises((ValueError, TypeError)):
        ToolPolicy(**options)


@pytest.mark.parametrize("name", ["has space", "1abc", "a-b"])
def test_bad_tool_names_are_rejected(name: str) -> None:
    def f(x: int) -> int:
        return x

    with pytest.raises(ValueError):
        plait.tool(name=name)(f)


def test_parameters_that_cannot_be_named_are_rejected() -> None:
    def star(*args: int) -> int:
        return 0

    def kw(**kwargs: int) -> int:
        return 0

    def posonly(a: int, /) -> int:
        return a

    for f, param in ((star, "args"), (kw, "kwargs"), (posonly, "a")):
        with pytest.raises(TypeError, match=repr(param)):
            plait.tool(f)
    with pytest.raises(TypeError):
        plait.tool(42)  # type: ignore[arg-type]


# ------------------------------------------------- argument errors, direct call


def _arg_error(call) -> ToolArgumentError:  # type: ignore[no-untyped-def]
    with pytest.raises(ToolArgumentError) as info:
        call()
    err = info.value
    assert isinstance(err, plait.PlaitError) and isinstance(err, TypeError)
    return err


def test_direct_call_wrong_type_names_tool_argument_and_expectation() -> None:
    err = _arg_error(lambda: search("q", limit="many", lang="en"))
    assert (err.tool, err.argument, err.got) == ("search", "limit", "many")
    assert "integer" in err.expected
    text = str(err)
    assert "search" in text and "limit" in text and "integer" in text and "many" in text


def test_direct_call_wrong_type_inside_a_container_names_the_parameter() -> None:
    err = _arg_error(lambda: search("q", tags=["ok", 7], lang="en"))
    assert (err.tool, err.argument) == ("search", "tags")
    assert "string" in err.expected


def test_direct_call_missing_argument() -> None:
    err = _arg_error(lambda: search(lang="en"))
    assert (err.tool, err.argument) == ("search", "query")
    assert "required" in err.expected
    err = _arg_error(lambda: search("q"))  # keyword-only, no default
    assert (err.tool, err.argument) == ("search", "lang")


def test_direct_call_unknown_keyword() -> None:
    err = _arg_error(lambda: search("q", lang="en", colour="red"))
    assert (err.tool, err.argument) == ("search", "colour")
    for name in ("query", "limit", "tags", "lang"):
        assert name in err.expected


def test_direct_call_too_many_positional() -> None:
    err = _arg_error(lambda: search("q", 1, None, "en", lang="en"))
    assert err.tool == "search"
    assert "at most 3 positional" in err.expected
    assert "search" in str(err)
    err = _arg_error(lambda: fetch("u", 1, 2))
    assert err.tool == "fetch_page" and "at most 2 positional" in err.expected


def test_direct_call_same_argument_twice() -> None:
    err = _arg_error(lambda: search("q", query="again", lang="en"))
    assert (err.tool, err.argument) == ("search", "query")


def test_direct_call_of_async_tool_checks_arguments_before_any_await() -> None:
    err = _arg_error(lambda: fetch(url=123))
    assert (err.tool, err.argument) == ("fetch_page", "url")


def test_direct_call_coerces_lax_values() -> None:
    assert search("q", limit="7", lang="en") == ["q/7/None/en"]


# ------------------------------------------------ argument errors, in a workflow


def test_argument_error_in_a_workflow_is_raised_at_the_call_site() -> None:
    seen: list[ToolArgumentError] = []

    @plait.workflow
    async def wf() -> str:
        for bad in (
            lambda: search(123, lang="en"),  # wrong type
            lambda: search(lang="en"),  # missing
            lambda: search("q", lang="en", colour=1),  # unknown keyword
            lambda: search("q", 1, None, "x", 5),  # too many positional
        ):
            try:
                bad()
            except ToolArgumentError as exc:
                seen.append(exc)
        return "body went on"

    result = plait.run(wf)
    assert result.value == "body went on"
    assert [(e.tool, e.argument) for e in seen] == [
        ("search", "query"),
        ("search", "query"),
        ("search", "colour"),
        ("search", None),
    ]
    assert all(e.expected and e.expected in str(e) for e in seen)
    assert result.nodes == ()  # no bad call became a node


@plait.tool
async def word(text: str) -> str:
    return text


@plait.tool
async def number(x: int) -> int:
    return x


@plait.tool
def add(a: int, b: int) -> int:
    """a + b"""
    return a + b


def test_wrong_literal_next_to_a_ref_is_raised_at_the_call_site() -> None:
    """Only ref-derived values must wait for dispatch; a bad literal is known at the call."""
    seen: list[ToolArgumentError] = []

    @plait.workflow
    async def wf() -> int:
        n = number(1)
        try:
            add(n, "not a number")
        except ToolArgumentError as exc:
            seen.append(exc)
        return await n

    result = plait.run(wf)
    assert result.value == 1
    assert [(e.tool, e.argument) for e in seen] == [("add", "b")]


def test_ref_derived_bad_value_fails_the_node_at_dispatch_without_retries() -> None:
    calls = []

    @plait.tool(retries=3, backoff=0.01)
    def strict(x: int) -> int:
        calls.append(x)
        return x

    @plait.workflow
    async def wf() -> None:
        w = word("not a number")
        strict(w)  # the value is only known when `w` is done

    with pytest.raises(plait.RunError) as info:
        plait.run(wf)
    result = info.value.result
    (node,) = [r for r in result.nodes if r.tool == "strict"]
    assert node.state == "failed"
    assert node.attempts == 1  # argument errors are never retried
    assert isinstance(node.error, ToolArgumentError)
    assert (node.error.tool, node.error.argument, node.error.got) == ("strict", "x", "not a number")
    assert "integer" in node.error.expected
    assert result.errors[node.id] is node.error
    assert calls == []


def test_ref_derived_bad_value_in_a_static_graph_fails_at_dispatch() -> None:
    @plait.tool(retries=2, backoff=0.01)
    def strict(x: int) -> int:
        return x

    graph = plait.Graph.build([("word", {"text": "nope"}), ("strict", {"x": plait.Ref(0)})])
    events: list[plait.Event] = []
    with pytest.raises(plait.RunError) as info:
        plait.run_graph(graph, [word, strict], listeners=[events.append])
    result = info.value.result
    errors = list(result.errors.values())
    assert len(errors) == 1 and isinstance(errors[0], ToolArgumentError)
    assert (errors[0].tool, errors[0].argument) == ("strict", "x")
    assert not any(isinstance(e, plait.NodeRetried) for e in events)
    assert sum(isinstance(e, plait.NodeStarted) and e.tool == "strict" for e in events) == 1


# ------------------------------------------------------- sync tools in threads


def test_sync_tool_runs_in_a_thread_and_does_not_block_the_loop() -> None:
    marks: list[tuple[str, float]] = []
    lock = threading.Lock()
    main_thread = threading.get_ident()
    tool_threads: list[int] = []

    @plait.tool
    def blocking(seconds: float) -> str:
        tool_threads.append(threading.get_ident())
        with lock:
            marks.append(("sync-start", time.perf_counter()))
        time.sleep(seconds)
        with lock:
            marks.append(("sync-end", time.perf_counter()))
        return "slept"

    @plait.tool
    async def ticker(n: int) -> int:
        for _ in range(n):
            await asyncio.sleep(0.02)
            with lock:
                marks.append(("tick", time.perf_counter()))
        return n

    @plait.workflow
    async def wf() -> list:
        return [blocking(0.3), ticker(8)]

    result = plait.run(wf)
    assert result.value == ["slept", 8]
    assert tool_threads and tool_threads[0] != main_thread
    names = [m for m, _ in sorted(marks, key=lambda m: m[1])]
    start, end = names.index("sync-start"), names.index("sync-end")
    # The loop kept ticking while the sync tool slept.
    assert names[start:end].count("tick") >= 3


def test_two_sync_tools_overlap_in_time() -> None:
    spans: dict[str, tuple[float, float]] = {}

    @plait.tool
    def nap(name: str) -> str:
        t0 = time.perf_counter()
        time.sleep(0.25)
        spans[name] = (t0, time.perf_counter())
        return name

    @plait.workflow
    async def wf() -> list:
        return [nap("a"), nap("b")]

    assert plait.run(wf).value == ["a", "b"]
    (a0, a1), (b0, b1) = spans["a"], spans["b"]
    assert a0 < b1 and b0 < a1  # the two calls were in flight at the same time


def test_a_tool_the_planner_cannot_read_is_warned_about_at_registration() -> None:
    with pytest.warns(plait.ToolWarning) as caught:
        @plait.tool
        def bare(city, when: int):
            return city

    message = str(caught[0].message)
    assert "'bare'" in message and "no docstring" in message
    assert "no type hint on city" in message and "when" not in message.split("hint on")[1]


def test_a_documented_typed_tool_registers_silently() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")

        @plait.tool
        def fine(city: str) -> str:
            """The weather in a city."""
            return city

    assert fine.name == "fine"
