"""Example tools that work offline: an encyclopedia search, a fact lookup, a calculator.

    plait ask "Which is taller, Mount Everest or K2?"        # uses these by default

The encyclopedia is a small bundled JSON file (`encyclopedia.json`) of short,
rounded entries written for demos and tests. `search` and `lookup` wait a
little, standing in for a remote call, so a plan's parallel lookups are visible.
"""

from __future__ import annotations

import ast
import asyncio
import difflib
import json
import math
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import plait

# Example plans for the planner prompt (`ask` takes them from this module).
PLAN_EXAMPLES = [
    'Question: Which river is longer, the Danube or the Thames?\n'
    '1. search("Danube")\n'
    '2. search("Thames")\n'
    '3. join()',
    'Question: How much taller is the Eiffel Tower than the Statue of Liberty?\n'
    '1. lookup("Eiffel Tower", "height")\n'
    '2. lookup("Statue of Liberty", "height")\n'
    '3. calculator("${1} - ${2}")\n'
    '4. join()',
]

LATENCY = (0.2, 0.5)  # seconds a search or lookup takes, spread by the entity name


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    aliases: tuple[str, ...]
    text: str
    facts: dict[str, float]


def _norm(text: str) -> str:
    text = text.lower().replace("&", " and ")
    text = re.sub(r"[^\w\s]", " ", text)
    words = [w for w in text.split() if w not in ("the", "a", "an", "of")]
    return " ".join(words)


@lru_cache(maxsize=1)
def encyclopedia() -> tuple[Entry, ...]:
    raw = resources.files("plait.examples").joinpath("encyclopedia.json").read_text("utf-8")
    return tuple(
        Entry(e["name"], tuple(e.get("aliases", ())), e["text"], dict(e.get("facts", {})))
        for e in json.loads(raw)["entries"]
    )


@lru_cache(maxsize=1)
def _index() -> dict[str, Entry]:
    index: dict[str, Entry] = {}
    for entry in encyclopedia():
        for key in (entry.name, *entry.aliases):
            index.setdefault(_norm(key), entry)
    return index


def find(entity: str) -> Entry | None:
    """The entry for `entity`: exact name or alias, then close spellings, then
    a name that contains the query (or is contained in it)."""
    query = _norm(entity)[:200]
    if not query:
        return None
    index = _index()
    if query in index:
        return index[query]
    compact = {k.replace(" ", ""): e for k, e in index.items()}
    if query.replace(" ", "") in compact:
        return compact[query.replace(" ", "")]
    close = difflib.get_close_matches(query, list(index), n=1, cutoff=0.82)
    if close:
        return index[close[0]]
    words = set(query.split())
    best: tuple[float, Entry] | None = None
    for key, entry in index.items():
        kw = set(key.split())
        overlap = len(words & kw) / len(words | kw)
        if key in query or query in key:
            overlap = max(overlap, 0.6)
        if overlap >= 0.5 and (best is None or overlap > best[0]):
            best = (overlap, entry)
    return best[1] if best else None


def _suggest(entity: str) -> list[str]:
    names = [e.name for e in encyclopedia()]
    return difflib.get_close_matches(entity, names, n=3, cutoff=0.5)


async def _delay(entity: str) -> None:
    lo, hi = LATENCY
    spread = (zlib.crc32(entity.encode()) % 1000) / 1000
    await asyncio.sleep(lo + (hi - lo) * spread)


@plait.tool(timeout=10.0, idempotent=True)
async def search(entity: str) -> str:
    """The encyclopedia entry about an entity (a place, building, mountain, river...).

    Args:
        entity: what to look up, e.g. "Mount Everest"
    """
    await _delay(entity)
    entry = find(entity)
    if entry is None:
        hint = _suggest(entity)
        more = f" Similar entries: {', '.join(hint)}." if hint else ""
        return f'No entry found for "{entity}".{more}'
    return f"{entry.name}: {entry.text}"


_ATTRIBUTES = {
    "height": ("height", "tall", "high", "elevation", "altitude"),
    "population": ("population", "people", "inhabitants", "residents"),
    "year": ("year", "built", "opened", "founded", "completed", "climbed", "date"),
    "length": ("length", "long"),
    "depth": ("depth", "deep"),
    "area": ("area", "size", "surface"),
    "diameter": ("diameter", "width", "wide"),
    "atomic_number": ("atomic number", "atomic_number"),
}


@plait.tool(timeout=10.0, idempotent=True)
async def lookup(entity: str, attribute: str) -> float:
    """One number about an entity: height (m), population, year, length (km),
    depth (m), area (km2) or diameter (km).

    Args:
        entity: what to look up, e.g. "K2"
        attribute: which number, e.g. "height"
    """
    await _delay(entity)
    entry = find(entity)
    if entry is None:
        raise ValueError(f"no entry for {entity!r}")
    wanted = _norm(attribute)
    for key, words in _ATTRIBUTES.items():
        if any(w in wanted for w in words) and key in entry.facts:
            return float(entry.facts[key])
    known = ", ".join(sorted(entry.facts)) or "none"
    raise ValueError(f"{entry.name} has no {attribute!r} (it has: {known})")


# ---------------------------------------------------------------- calculator

_OPS: dict[type[ast.AST], Any] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}
MAX_EXPRESSION = 300


def calculate(expression: str) -> float:
    """Arithmetic on numbers with + - * / ** and parentheses. Parsed, never evaluated
    as code: the syntax tree is walked and only those nodes are accepted."""
    text = expression.strip()
    if len(text) > MAX_EXPRESSION:
        raise ValueError(f"expression longer than {MAX_EXPRESSION} characters")
    text = text.replace("×", "*").replace("÷", "/").replace("^", "**").replace("−", "-")
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)  # 8,849 -> 8849
    text = text.rstrip("= ")
    if not text:
        raise ValueError("empty expression")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ValueError(f"not an arithmetic expression: {expression!r}") from None
    try:
        value = _walk(tree.body, 0)
    except ZeroDivisionError:
        raise ValueError("division by zero") from None
    except OverflowError:
        raise ValueError("result too large") from None
    if isinstance(value, complex) or not math.isfinite(value):
        raise ValueError("result is not a finite real number")
    return float(value)


def _walk(node: ast.AST, depth: int) -> float:
    if depth > 50:
        raise ValueError("expression nested too deeply")
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _walk(node.operand, depth + 1)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left = _walk(node.left, depth + 1)
        right = _walk(node.right, depth + 1)
        if isinstance(node.op, ast.Pow) and (abs(right) > 100 or abs(left) > 1e9):
            raise ValueError("exponent or base too large")
        return _OPS[type(node.op)](left, right)
    raise ValueError(f"only numbers, + - * / ** and parentheses are allowed, not {_what(node)}")


def _what(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"the name {node.id!r}"
    if isinstance(node, ast.Constant):
        return repr(node.value)
    return type(node).__name__


@plait.tool(idempotent=True)
def calculator(expression: str) -> float:
    """Evaluate arithmetic: numbers with + - * / ** and parentheses, e.g. "(8849 - 8611) / 2".

    Args:
        expression: the arithmetic expression
    """
    return calculate(expression)


TOOLS = (search, lookup, calculator)
