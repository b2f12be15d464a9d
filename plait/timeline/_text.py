"""A call's arguments and value as text for a person: redacted, cut to size.

Secrets never reach the page: every string goes through the redaction the
journal uses for its own messages and `plait show` for its output (a password
in a URL or a `password=` option becomes ``***``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from plait.journal._postgres import redact_all


clean = redact_all  # every string in a value redacted (see the module doc)


_COMPACT = json.JSONEncoder(ensure_ascii=False).encode


def cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def value_text(value: Any, limit: int) -> str:
    """A value: text as it is, anything else as JSON."""
    if isinstance(value, str):
        return cut(clean(value), limit)
    if value is None or isinstance(value, (bool, int, float)):
        return _COMPACT(value)
    return cut(json.dumps(clean(value), ensure_ascii=False, indent=1, default=str), limit)


def arguments_text(arguments: Any, number: Mapping[str, int], limit: int) -> str:
    """A call's journaled (canonical) arguments: one `name = value` line each, an
    upstream call's value as `$N` (its number), an LLM request as its model and
    messages."""
    if not isinstance(arguments, dict):
        return value_text(arguments, limit)
    request = arguments.get("request") if len(arguments) == 1 else None
    if isinstance(request, dict) and "messages" in request:
        return cut(_request_text(request, number, limit), limit)
    lines = [f"{_name(k)} = {_show(v, number)}" for k, v in arguments.items()]
    return cut(clean("\n".join(lines)), limit)


def _request_text(request: dict[str, Any], number: Mapping[str, int], limit: int) -> str:
    head = [f"model: {request.get('model')}"]
    for option in ("temperature", "max_tokens", "seed", "sample"):
        if request.get(option) is not None:
            head.append(f"{option}: {request[option]}")
    if request.get("grammar"):
        head.append("grammar: (constrained)")
    if request.get("json_schema"):
        head.append("json_schema: (structured)")
    parts = [", ".join(head)]
    each = max(120, limit // max(1, len(request.get("messages") or ())))
    for message in request.get("messages") or ():
        if isinstance(message, list) and len(message) == 2:
            role, content = message
            text = content if isinstance(content, str) else _show(content, number)
            parts.append(f"[{role}] {cut(text, each)}")
    prefill = request.get("prefill")
    if prefill is not None:  # the assistant prefix the reply continues
        text = prefill if isinstance(prefill, str) else _show(prefill, number)
        parts.append(f"[assistant, continued] {cut(text, each)}")
    return clean("\n".join(parts))


def _name(key: str) -> str:
    # A literal key starting with "$" is journaled with the "$" doubled.
    return key[1:] if key.startswith("$$") else key


def _show(value: Any, number: Mapping[str, int]) -> str:
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("$ref"), str):
            return f"${number.get(value['$ref'], '?')}"
        if len(value) == 1 and isinstance(value.get("$template"), list):
            parts = value["$template"]
            if len(parts) == 1 and not isinstance(parts[0], str):  # a value as text
                return _show(parts[0], number)
            return "".join(p if isinstance(p, str) else "{" + _show(p, number) + "}"
                           for p in value["$template"])
        return "{" + ", ".join(f"{json.dumps(_name(k))}: {_show(v, number)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v, number) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, default=str)
