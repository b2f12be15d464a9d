"""Tools from OpenAI function definitions (the form of every function-calling API
and benchmark): `{"type": "function", "function": {...}}` or the bare function."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from plait.runtime._tools import Tool
from plait.tools._schema import identifier


def tools_from_openai(definitions: Iterable[Mapping[str, Any]],
                      call: Callable[[str, dict[str, Any]], Any] | Mapping[str, Callable[..., Any]],
                      **policy: Any) -> list[Tool]:
    """One `Tool` per OpenAI function definition, checked against its `parameters`.

    `call` is either a mapping from a definition's name to the function that
    runs it (receiving the arguments as keywords) or one function receiving
    `(name, arguments)` for every tool; sync or async. `policy`: `@plait.tool`'s
    keywords, for every tool. A name that is not an identifier (`get-weather`)
    becomes one (`get_weather`); `call` still receives the definition's name.
    """
    tools: dict[str, Tool] = {}
    for definition in definitions:
        spec = _function(definition)
        name = spec["name"]
        plait_name = identifier(name)
        if plait_name in tools:
            raise ValueError(f"two function definitions are named {plait_name!r}")
        tools[plait_name] = Tool.from_schema(plait_name, spec.get("description") or "",
                                             spec.get("parameters"), _caller(call, name),
                                             **policy)
    return list(tools.values())


def _function(definition: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(definition, Mapping):
        raise TypeError(f"a function definition must be a dict, got {definition!r}")
    if definition.get("type") == "function" and isinstance(definition.get("function"), Mapping):
        definition = definition["function"]
    if not isinstance(definition.get("name"), str) or not definition["name"]:
        raise ValueError("a function definition needs a 'name' (the forms: "
                         "{'type': 'function', 'function': {'name': ...}} or {'name': ...}), "
                         f"got keys {sorted(definition)}")
    return definition


def _caller(call: Callable[[str, dict[str, Any]], Any] | Mapping[str, Callable[..., Any]],
            name: str) -> Callable[..., Any]:
    if isinstance(call, Mapping):
        if name not in call:
            raise ValueError(f"no function for tool {name!r} in call (it has: "
                             f"{', '.join(sorted(call)) or 'none'})")
        return call[name]
    if not callable(call):
        raise TypeError(f"call must be a function or a mapping of them, got {call!r}")
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
            getattr(call, "__call__", None)):
        async def run_async(**arguments: Any) -> Any:
            return await call(name, arguments)
        return run_async

    def run(**arguments: Any) -> Any:
        return call(name, arguments)
    return run
