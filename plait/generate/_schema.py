"""`schema=`: a pydantic model class as an LLM call's answer type.

Its JSON schema goes to the server with the request (`json_schema`: OpenAI's
`response_format`, a grammar for llama.cpp); the reply is validated into an
instance. A reply that does not validate is sent back to the model with the
validation error, at most `repairs` times, each repair a node of its own (see
`plait.generate`); after the last, the call fails with `SchemaError`.

The journal holds the reply text, never a pickled object: a replayed call
validates the journaled text again, so it gives the same type as a fresh one.
"""

from __future__ import annotations

import json
import re
import weakref
from dataclasses import dataclass
from typing import Any

import pydantic

from plait.llm import LLMError

# A reply that wraps its JSON in a Markdown fence, as chat models like to.
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n?```\s*$", re.DOTALL)
ERROR_CHARS = 1000  # of a validation error shown to the model or in an error
REPLY_CHARS = 200  # of a bad reply quoted in an error


class SchemaError(LLMError):
    """An LLM call's reply did not match its `schema=`, after every repair.

    `model`, `schema` (the class's name), `reply` (the last reply) and `error`
    (the validation error) say which call and why."""

    def __init__(self, model: str, schema: str, reply: str, error: str, repairs: int):
        self.model = model
        self.schema = schema
        self.reply = reply
        self.error = error
        tried = f" and {repairs} repair{'s' if repairs != 1 else ''}" if repairs else ""
        shown = reply[:REPLY_CHARS] + ("..." if len(reply) > REPLY_CHARS else "")
        super().__init__(
            f"model {model!r} gave no reply matching schema {schema} after its first "
            f"reply{tried}: {error}; its last reply: {shown!r}. Pass repairs= for more "
            "tries, a larger max_tokens if the reply was cut, or a stronger model")


@dataclass(frozen=True, slots=True)
class Checked:
    """A schema call's reply and its verdict, as the next repair node receives it:
    `value` is the instance when `error` is None."""

    text: str
    value: Any
    error: str | None

    def __repr__(self) -> str:
        verdict = "valid" if self.error is None else f"invalid: {self.error[:60]}"
        return f"<reply {self.text[:40]!r} {verdict}>"


# A class's schema as JSON text: pydantic takes ~0.3 ms to build one, and a schema
# call asks for it every time. Weak keys: a class made on the fly is not kept alive.
_SCHEMAS: weakref.WeakKeyDictionary[type, str] = weakref.WeakKeyDictionary()


def json_schema_of(schema: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The JSON schema sent to the server (and part of the call's identity); a
    fresh dict each time (a request's dict is its own)."""
    text = _SCHEMAS.get(schema) if isinstance(schema, type) else None
    if text is None:
        if not (isinstance(schema, type) and issubclass(schema, pydantic.BaseModel)):
            raise TypeError(f"schema= takes a pydantic model class, got {schema!r}")
        text = _SCHEMAS[schema] = json.dumps(schema.model_json_schema())
    return json.loads(text)


def check(schema: type[pydantic.BaseModel], text: str) -> Checked:
    """Validate a reply (its JSON, inside a Markdown fence or not)."""
    fenced = _FENCE.match(text)
    try:
        value = schema.model_validate_json(fenced.group(1) if fenced else text)
    except pydantic.ValidationError as exc:
        return Checked(text, None, _short(exc))
    return Checked(text, value, None)


def _short(exc: pydantic.ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err.get("loc", ())) or "the reply"
        lines.append(f"{where}: {err.get('msg', 'invalid')}")
    text = "; ".join(lines)
    return text[:ERROR_CHARS] + ("..." if len(text) > ERROR_CHARS else "")


def repair_messages(messages: list[list[str]], bad: Checked,
                    json_schema: dict[str, Any]) -> list[list[str]]:
    """The conversation that asks for a repair: the call's own messages, the
    reply that did not validate, and what was wrong with it."""
    return [*messages, ["assistant", bad.text], ["user", (
        f"That reply does not match the required JSON schema: {bad.error}.\n"
        "Reply again with only a JSON object that matches this schema, nothing else:\n"
        + json.dumps(json_schema, separators=(",", ":"))
    )]]
