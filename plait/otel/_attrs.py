"""What a span says about a call: the GenAI semantic conventions' attributes, and the
content (arguments, values, messages) only when capture is on, secrets blanked.

GenAI attributes follow the OpenTelemetry GenAI semantic conventions (development
status, the current names: `gen_ai.provider.name`, not the older `gen_ai.system`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from plait.runtime._graph import Ref
from plait.journal._postgres import redact

# Longest captured text per attribute: a span is no place for a whole document.
MAX_CONTENT = 4096

_SECRET = re.compile(
    r"(?i)\b(api[_-]?key|access[_-]?token|auth[_-]?token|token|secret|password|passwd)"
    r"(\"?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&\"'}]+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")
_KEYLIKE = re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_-]{12,}")


def scrub(text: str) -> str:
    """`text` with credentials blanked: a password in a URL or DSN (the journal's own
    redaction), `key=value` secrets, bearer tokens, API-key-looking words."""
    text = redact(text)
    if "=" in text or ":" in text:
        text = _SECRET.sub(r"\1\2***", text)
    text = _BEARER.sub(r"\1 ***", text)
    return _KEYLIKE.sub("***", text)


def is_llm_request(arguments: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The request of an LLM-call node (`{"request": {"model", "messages", ...}}`)."""
    if arguments is None:
        return None
    request = arguments.get("request")
    if type(request) is dict and "model" in request and "messages" in request:
        return request
    return None


_PROVIDERS = {"openai": "openai", "sim": "plait.sim", "local": "plait.local"}
_models: dict[str, tuple[str, str, str]] = {}


def model_of(spec: str) -> tuple[str, str, str]:
    """(provider, model name, spec) of a model spec, scrubbed (kept per spec)."""
    found = _models.get(spec)
    if found is None:
        clean = scrub(spec)
        kind, _, rest = clean.partition(":")
        provider = _PROVIDERS.get(kind, kind or "unknown")
        name = rest.split(",")[0] if kind == "openai" and rest else clean
        found = (provider, name, clean)
        if len(_models) < 1024:
            _models[spec] = found
    return found


def llm_attributes(request: Mapping[str, Any], tokens: int, record: Mapping[str, Any] | None,
                   replayed: bool) -> dict[str, Any]:
    """The GenAI attributes of an inference span (operation `chat`)."""
    provider, name, spec = model_of(str(request.get("model")))
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": name,
        "plait.llm.spec": spec,
    }
    max_tokens = request.get("max_tokens")
    if max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = max_tokens
    temperature = request.get("temperature")
    if temperature is not None:
        attributes["gen_ai.request.temperature"] = float(temperature)
    seed = request.get("seed")
    if seed is not None:
        attributes["gen_ai.request.seed"] = seed
    if record:
        finish = record.get("finish_reason")
        if finish:
            attributes["gen_ai.response.finish_reasons"] = (str(finish),)
        ttft = record.get("ttft")
        if ttft is not None:
            attributes["plait.llm.ttft_s"] = float(ttft)
        if record.get("estimated"):
            attributes["plait.llm.tokens_estimated"] = True
        # Usage is what this call cost now: a replayed call was paid by an earlier
        # session (its tokens stay on plait.tokens), so backends do not count it twice.
        if not replayed:
            prompt = record.get("prompt_tokens")
            completion = record.get("completion_tokens")
            if prompt is not None:
                attributes["gen_ai.usage.input_tokens"] = int(prompt)
            if completion is not None:
                attributes["gen_ai.usage.output_tokens"] = int(completion)
    if tokens:
        attributes["plait.tokens"] = tokens
    return attributes


# ---------------------------------------------------------------- captured content


def content(value: Any) -> str:
    """`value` as JSON text (an upstream value as `$N`), scrubbed and cut to size."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=_plain, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    if len(text) > MAX_CONTENT:
        text = text[:MAX_CONTENT] + "..."
    return scrub(text)


def _plain(value: Any) -> Any:
    if isinstance(value, Ref):
        return f"${value.node}"
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    text = getattr(value, "text", None)  # a schema call's reply under repair
    return text if isinstance(text, str) else str(value)


def input_messages(request: Mapping[str, Any]) -> str:
    """`gen_ai.input.messages`: the request's messages in the conventions' shape."""
    return content([{"role": role, "parts": [{"type": "text", "content": _plain_text(text)}]}
                    for role, text in request.get("messages", ())])


def output_messages(value: Any, record: Mapping[str, Any] | None) -> str:
    finish = (record or {}).get("finish_reason") or "stop"
    return content([{"role": "assistant", "parts": [{"type": "text",
                                                     "content": _plain_text(value)}],
                     "finish_reason": finish}])


def _plain_text(value: Any) -> Any:
    if isinstance(value, str):
        return value
    return _plain(value) if not isinstance(value, (dict, list, int, float, bool)) else value
