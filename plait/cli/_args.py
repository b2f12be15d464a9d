"""`plait run flow.py:wf ARGS...`: command-line text -> the workflow's arguments.

A parameter with a type hint gets its text converted and checked by pydantic
(`n: int` takes "3"; `xs: list[int]` takes "[1, 2]"; `s: str` takes any text as it
is); one without a hint gets JSON when the text parses (numbers, lists), else the
text. A mismatch, or too many or too few arguments, is one `error:` line naming
the parameter, the type it expects and the value given.
"""

from __future__ import annotations

import inspect
import json
import typing
from typing import Any

from pydantic import TypeAdapter, ValidationError

from plait._api import Workflow
from plait.cli._fail import fail

# Lists/objects nested in one argument. Far past what a command line needs, and
# far below where the runtime's own recursion (identity, refs) would give out.
MAX_ARG_DEPTH = 100
_NO_HINT = inspect.Parameter.empty


def workflow_arguments(wf: Workflow, texts: list[str]) -> list[Any]:
    """The positional arguments for `wf` from the command line's `texts`."""
    for number, text in enumerate(texts, 1):
        depth = _nesting(text)
        if depth > MAX_ARG_DEPTH:
            fail(f"argument {number} ({text[:20]}...) nests lists or objects {depth} levels "
                 f"deep; plait run takes at most {MAX_ARG_DEPTH}")
    params = _positional(wf)
    if params is None:  # no signature to check against (a builtin, say)
        return [_untyped(t) for t in texts]
    hints = _hints(wf)
    star = next((p for p in params if p.kind is p.VAR_POSITIONAL), None)
    fixed = [p for p in params if p.kind is not p.VAR_POSITIONAL]
    required = [p for p in fixed if p.default is p.empty]
    usage = f"{wf.name.rpartition(':')[2]}({', '.join(_describe(p, hints) for p in params)})"
    if len(texts) < len(required):
        missing = ", ".join(p.name for p in required[len(texts):])
        fail(f"{usage} needs {len(required)} argument(s), got {len(texts)}: "
             f"missing {missing}")
    if star is None and len(texts) > len(fixed):
        fail(f"{usage} takes {len(fixed)} argument(s), got {len(texts)}: "
             f"{' '.join(repr(t) for t in texts[len(fixed):])} too many")
    values = []
    for i, text in enumerate(texts):
        param = fixed[i] if i < len(fixed) else star
        assert param is not None
        values.append(_convert(text, param.name, hints.get(param.name, _NO_HINT), usage))
    return values


def _positional(wf: Workflow) -> list[inspect.Parameter] | None:
    """The parameters a command line can fill (keyword-only ones need defaults)."""
    try:
        signature = inspect.signature(wf.fn)
    except (TypeError, ValueError):
        return None
    params = []
    for p in signature.parameters.values():
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty:
            fail(f"{wf.name} has a keyword-only parameter {p.name!r} without a default: "
                 "plait run passes arguments by position only; run it from Python")
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL):
            params.append(p)
    return params


def _hints(wf: Workflow) -> dict[str, Any]:
    """The workflow's type hints; none when they cannot be resolved (a name only
    imported under TYPE_CHECKING): then every argument is taken as untyped."""
    try:
        return typing.get_type_hints(wf.fn)
    except Exception:
        return {}


def _convert(text: str, name: str, hint: Any, usage: str) -> Any:
    if hint is _NO_HINT or hint is Any:
        return _untyped(text)
    adapter = TypeAdapter(hint)
    try:  # the text as it is: "3" for an int, any text for a str
        return adapter.validate_python(text)
    except ValidationError:
        pass
    try:  # else as JSON: "[1, 2]" for a list, "null" for an Optional
        return adapter.validate_python(json.loads(text))
    except (ValueError, ValidationError):
        pass
    fail(f"argument {name} of {usage} expects {_type_name(hint)}, got {text!r}")


def _untyped(text: str) -> Any:
    """A command-line argument as JSON when it parses (numbers, lists), else a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _describe(param: inspect.Parameter, hints: dict[str, Any]) -> str:
    star = "*" if param.kind is param.VAR_POSITIONAL else ""
    hint = hints.get(param.name, _NO_HINT)
    return f"{star}{param.name}" + ("" if hint is _NO_HINT else f": {_type_name(hint)}")


def _type_name(hint: Any) -> str:
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__qualname__
    return str(hint).replace("typing.", "")


def _nesting(text: str) -> int:
    """How deep `[` and `{` nest in JSON text, outside strings (without recursing)."""
    if "[" not in text and "{" not in text:
        return 0
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest
