"""A node's identity: a content key, and the canonical JSON it is computed from.

A node's key is what the journal stores, what resume matches on and what a tool
receives as its idempotency key. It is computed from content only:

    sha256("plait-node-v1" + tool + canonical arguments + occurrence)[:32]

* canonical arguments: JSON with sorted keys, no whitespace, ASCII only. Tuples
  are written as lists, so ``(1, 2)`` and ``[1, 2]`` give the same key; ``1``,
  ``1.0``, ``True`` and ``"1"`` all differ.
* a reference to an upstream node is written as ``{"$ref": <upstream key>}``,
  never by its run-local id, so a resumed run whose node ids differ (because
  unrelated code changed) still finds its finished calls. A template (a string
  with node values formatted in) is ``{"$template": [...parts...]}``. A literal
  dict key that starts with ``$`` is escaped by doubling the ``$``, so no user
  value can collide with a reference.
* occurrence: identical calls in one run (same tool, same canonical arguments)
  are told apart by counting them, 0 for the first; see `Occurrences`. This makes
  keys depend on the order identical calls are made in, which is deterministic for
  a given workflow.

References are recognized by duck typing, so this module does not import the
graph: an object with an integer attribute ``node`` is a reference (as
`plait.Ref`), an object with a tuple attribute ``parts`` is a template (as
`plait.Template`). Anything else that is not JSON-able raises `NotCanonicalError`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from plait._errors import PlaitError

__all__ = [
    "KEY_LENGTH",
    "NotCanonicalError",
    "Occurrences",
    "canonical_arguments",
    "canonical_json",
    "key_of",
    "row_key_of",
    "node_key",
]

KEY_LENGTH = 32  # hex characters of sha256 kept: 128 bits
_SCHEME = "plait-node-v1"
_ROW_SCHEME = "plait-row-node-v1"

ParentKeys = Mapping[int, str] | Callable[[int], str]

_SCALARS_EXACT = frozenset({str, int, float, bool, type(None)})
_ENCODER = json.JSONEncoder(
    ensure_ascii=True, sort_keys=True, separators=(",", ":"), allow_nan=True
)


def _fast_encoder() -> Callable[[Any], str]:
    """`_ENCODER.encode`, the same text, without building a C encoder per call (half
    the cost for a small dict; every journaled call encodes several). Without
    circular-reference markers: what it encodes is always a fresh copy made by
    `_plain`/`_with_refs` (a cycle fails there) or a scalar."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # a Python without the C accelerator
        return _ENCODER.encode
    try:
        chunks = make(None, _ENCODER.default, json.encoder.encode_basestring_ascii, None,
                      ":", ",", True, False, True)
        if "".join(chunks({"b": [1, 2.5, None, True], "a": "\xe9"}, 0)) != (
            '{"a":"\\u00e9","b":[1,2.5,null,true]}'
        ):
            return _ENCODER.encode  # the private constructor changed: the public path
    except (TypeError, ValueError):
        return _ENCODER.encode

    def encode(value: Any) -> str:
        if type(value) is str:
            return json.encoder.encode_basestring_ascii(value)
        return "".join(chunks(value, 0))

    return encode


_encode = _fast_encoder()


class NotCanonicalError(PlaitError, TypeError):
    """A value with no canonical JSON form: a set, an object, a dict with non-str keys.

    `path` says where inside the value (``value['a'][2]``), `type_name` what it was.
    """

    def __init__(self, path: str, type_name: str, reason: str = ""):
        self.path = path
        self.type_name = type_name
        detail = reason or (
            f"{path} has type {type_name}; only str, int, float, bool, None, list, tuple "
            "and dict with str keys can be journaled"
        )
        super().__init__(detail)


def canonical_json(value: Any, *, root: str = "value") -> str:
    """`value` as canonical JSON text (sorted keys, no spaces, ASCII).

    Tuples become lists; subclasses of str/int/float become the base type.
    References are not allowed here (see `canonical_arguments`).
    """
    if type(value) in _SCALARS_EXACT:
        return _ENCODER.encode(value)
    return _encode(_plain(value, root))


def _plain(value: Any, path: str) -> Any:
    """A copy of `value` with only JSON types, checking as it goes."""
    kind = type(value)
    if kind in _SCALARS_EXACT:
        return value
    if kind is list or kind is tuple:
        return [
            v if type(v) in _SCALARS_EXACT else _plain(v, f"{path}[{i}]")
            for i, v in enumerate(value)
        ]
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                if not isinstance(k, str):
                    raise NotCanonicalError(
                        path,
                        "dict",
                        f"{path} has a key {k!r} of type {type(k).__name__}; "
                        "journaled dicts need str keys",
                    )
                k = str.__str__(k)
            out[k] = v if type(v) in _SCALARS_EXACT else _plain(v, f"{path}[{k!r}]")
        return out
    # Subclasses (str enums, int enums, numpy-free float subclasses) become the base type.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (list, tuple)):
        return _plain(list(value), path)
    if isinstance(value, dict):
        return _plain(dict(value), path)
    raise NotCanonicalError(path, type(value).__name__)


def canonical_arguments(arguments: Mapping[str, Any], parent_keys: ParentKeys) -> str:
    """Canonical JSON of a call's arguments, upstream nodes written by their keys.

    `parent_keys` maps a run-local node id to that node's key: a mapping or a
    function. References are objects with an int attribute ``node``.
    """
    lookup = parent_keys.__getitem__ if isinstance(parent_keys, Mapping) else parent_keys
    body = {}
    for name, value in arguments.items():
        if type(name) is not str:
            raise NotCanonicalError("arguments", "dict", f"argument name {name!r} is not a str")
        body[_escape(name)] = (
            value if type(value) in _SCALARS_EXACT else _with_refs(value, lookup, name)
        )
    return _encode(body)


def _escape(key: str) -> str:
    return "$" + key if key.startswith("$") else key


def _with_refs(value: Any, lookup: Callable[[int], str], path: str) -> Any:
    kind = type(value)
    if kind in _SCALARS_EXACT:
        return value
    if kind is list or kind is tuple:
        return [_with_refs(v, lookup, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind is dict:
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise NotCanonicalError(
                    path,
                    "dict",
                    f"{path} has a key {k!r} of type {type(k).__name__}; "
                    "dicts in arguments need str keys",
                )
            out[_escape(str.__str__(k))] = _with_refs(v, lookup, f"{path}[{k!r}]")
        return out
    node = getattr(value, "node", None)
    if type(node) is int:
        return {"$ref": _key_of_parent(lookup, node, path)}
    parts = getattr(value, "parts", None)
    if type(parts) is tuple:
        return {"$template": [_with_refs(p, lookup, f"{path}.parts") for p in parts]}
    return _plain(value, path)


def _key_of_parent(lookup: Callable[[int], str], node: int, path: str) -> str:
    try:
        key = lookup(node)
    except (KeyError, IndexError, LookupError):
        key = None
    if not isinstance(key, str):
        raise NotCanonicalError(
            path, "Ref", f"{path} refers to node ${node}, whose key is not known yet"
        )
    return key


def key_of(tool: str, canonical: str, occurrence: int = 0) -> str:
    """The key for `tool` called with canonical arguments `canonical`, n-th time."""
    text = _encode([_SCHEME, tool, canonical, occurrence])
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:KEY_LENGTH]


def row_key_of(row_key: str, tool: str, canonical: str, occurrence: int = 0) -> str:
    """The key of a call within one row of a dataset job: `key_of` with the row's
    key folded in (one hash), so two rows with the same call are two calls. The
    fields are NUL-separated; a row key holds no NUL and canonical JSON none either,
    so no two different calls give the same text."""
    text = f"{_ROW_SCHEME}\x00{row_key}\x00{occurrence}\x00{canonical}\x00{tool}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:KEY_LENGTH]


def node_key(
    tool: str,
    arguments: Mapping[str, Any],
    parent_keys: ParentKeys,
    occurrence: int = 0,
) -> str:
    """A node's content key: tool + canonical arguments (parents by key) + occurrence."""
    return key_of(tool, canonical_arguments(arguments, parent_keys), occurrence)


class Occurrences:
    """Counts identical calls in one run, so the n-th one gets occurrence n (from 0).

    >>> seen = Occurrences()
    >>> a = seen.key("search", {"q": "x"}, {})
    >>> b = seen.key("search", {"q": "x"}, {})
    >>> a != b
    True

    Not thread-safe: one run's graph is built on one thread (the event loop's).
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}

    def next(self, tool: str, canonical: str) -> int:
        """The occurrence number for one more call of `tool` with `canonical` arguments."""
        pair = (tool, canonical)
        n = self._counts.get(pair, 0)
        self._counts[pair] = n + 1
        return n

    def key(self, tool: str, arguments: Mapping[str, Any], parent_keys: ParentKeys) -> str:
        """Key for one more call: canonicalizes once, counts, hashes."""
        canonical = canonical_arguments(arguments, parent_keys)
        return key_of(tool, canonical, self.next(tool, canonical))

    def __len__(self) -> int:
        return len(self._counts)
