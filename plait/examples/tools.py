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
from typing import Any, Literal

import plait

# Worked examples for the prompts (`ask` takes them from this module). The
# planner sees each one's question and plan; a grounded joiner (small models)
# also sees its results and answer. `ask` shows the few closest to the question
# asked. Their entities are not in the encyclopedia on purpose: a small model
# copies the shape of an example, never its names or numbers.
PLAN_EXAMPLES = [
    'Question: Which river is longer, the Rhine or the Seine?\n'
    '1. lookup("Rhine", "length") -> 1233\n'
    '2. lookup("Seine", "length") -> 777\n'
    '3. join()\n'
    'Answer: Rhine',
    'Question: Which is taller, Ben Nevis or Mount Rainier?\n'
    '1. lookup("Ben Nevis", "height") -> 1345\n'
    '2. lookup("Mount Rainier", "height") -> 4392\n'
    '3. join()\n'
    'Answer: Mount Rainier',
    'Question: Which is older, the Sagrada Familia or the Chrysler Building?\n'
    '1. lookup("Sagrada Familia", "year") -> 1882\n'
    '2. lookup("Chrysler Building", "year") -> 1930\n'
    '3. join()\n'
    'Answer: Sagrada Familia',
    'Question: Which was climbed first, Mount Kenya or Mount Cook?\n'
    '1. lookup("Mount Kenya", "year") -> 1899\n'
    '2. lookup("Mount Cook", "year") -> 1894\n'
    '3. join()\n'
    'Answer: Mount Cook',
    'Question: Which city has more people, Madrid or Rome?\n'
    '1. lookup("Madrid", "population") -> 3300000\n'
    '2. lookup("Rome", "population") -> 2800000\n'
    '3. join()\n'
    'Answer: Madrid',
    'Question: Which lake is deeper, Lake Tahoe or Lake Geneva?\n'
    '1. lookup("Lake Tahoe", "depth") -> 501\n'
    '2. lookup("Lake Geneva", "depth") -> 310\n'
    '3. join()\n'
    'Answer: Lake Tahoe',
    'Question: Which is shorter, the Volga or the Loire?\n'
    '1. lookup("Volga", "length") -> 3531\n'
    '2. lookup("Loire", "length") -> 1006\n'
    '3. join()\n'
    'Answer: Loire',
    'Question: Which city has fewer people, Oslo or Vienna?\n'
    '1. lookup("Oslo", "population") -> 700000\n'
    '2. lookup("Vienna", "population") -> 2000000\n'
    '3. join()\n'
    'Answer: Oslo',
    'Question: Which is newer, the Shard or the Chrysler Building?\n'
    '1. lookup("Shard", "year") -> 2012\n'
    '2. lookup("Chrysler Building", "year") -> 1930\n'
    '3. join()\n'
    'Answer: Shard',
    'Question: Which is smaller, Mars or Venus?\n'
    '1. lookup("Mars", "diameter") -> 6779\n'
    '2. lookup("Venus", "diameter") -> 12104\n'
    '3. join()\n'
    'Answer: Mars',
    'Question: Which has the largest area, Lake Erie, Lake Victoria or Lake Ladoga?\n'
    '1. lookup("Lake Erie", "area") -> 25700\n'
    '2. lookup("Lake Victoria", "area") -> 68800\n'
    '3. lookup("Lake Ladoga", "area") -> 17700\n'
    '4. join()\n'
    'Answer: Lake Victoria',
    'Question: Which is bigger, Mars or Venus?\n'
    '1. lookup("Mars", "diameter") -> 6779\n'
    '2. lookup("Venus", "diameter") -> 12104\n'
    '3. join()\n'
    'Answer: Venus',
    'Question: How much taller is the Chrysler Building than the Flatiron Building?\n'
    '1. lookup("Chrysler Building", "height") -> 319\n'
    '2. lookup("Flatiron Building", "height") -> 87\n'
    '3. calculator("${1} - ${2}") -> 232\n'
    '4. join()\n'
    'Answer: 232',
    'Question: How many years after the Sagrada Familia was begun did the Chrysler '
    'Building open?\n'
    '1. lookup("Chrysler Building", "year") -> 1930\n'
    '2. lookup("Sagrada Familia", "year") -> 1882\n'
    '3. calculator("${1} - ${2}") -> 48\n'
    '4. join()\n'
    'Answer: 48',
    'Question: What is the combined population of Madrid and Rome?\n'
    '1. lookup("Madrid", "population") -> 3300000\n'
    '2. lookup("Rome", "population") -> 2800000\n'
    '3. calculator("${1} + ${2}") -> 6100000\n'
    '4. join()\n'
    'Answer: 6100000',
    'Question: What is the difference in length between the Rhine and the Seine?\n'
    '1. lookup("Rhine", "length") -> 1233\n'
    '2. lookup("Seine", "length") -> 777\n'
    '3. calculator("${1} - ${2}") -> 456\n'
    '4. join()\n'
    'Answer: 456',
    'Question: What is the total height of Ben Nevis and Mount Rainier?\n'
    '1. lookup("Ben Nevis", "height") -> 1345\n'
    '2. lookup("Mount Rainier", "height") -> 4392\n'
    '3. calculator("${1} + ${2}") -> 5737\n'
    '4. join()\n'
    'Answer: 5737',
    'Question: How tall is Ben Nevis?\n'
    '1. lookup("Ben Nevis", "height") -> 1345\n'
    '2. join()\n'
    'Answer: 1345',
    'Question: What is the population of Madrid?\n'
    '1. lookup("Madrid", "population") -> 3300000\n'
    '2. join()\n'
    'Answer: 3300000',
    'Question: When was the Chrysler Building opened?\n'
    '1. lookup("Chrysler Building", "year") -> 1930\n'
    '2. join()\n'
    'Answer: 1930',
    'Question: What is the Rhine?\n'
    '1. search("Rhine") -> Rhine: a river of Europe that flows into the North Sea.\n'
    '2. join()\n'
    'Answer: Rhine: a river of Europe that flows into the North Sea.',
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


@plait.tool(timeout=10.0, idempotent=True, speculate=True)
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


Attribute = Literal[
    "height", "population", "year", "length", "depth", "area", "diameter", "atomic_number"
]


@plait.tool(timeout=10.0, idempotent=True, speculate=True)
async def lookup(entity: str, attribute: Attribute) -> float:
    """One number about an entity: its height (m), population, year (built, opened
    or first climbed), length (km), depth (m), area (km2), diameter (km)...

    Args:
        entity: what to look up, e.g. "K2"
        attribute: which number
    """
    await _delay(entity)
    entry = find(entity)
    if entry is None:
        raise ValueError(f"no entry for {entity!r}")
    if attribute in entry.facts:
        return float(entry.facts[attribute])
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


@plait.tool(idempotent=True, speculate=True)
def calculator(expression: str) -> float:
    """Evaluate arithmetic: numbers with + - * / ** and parentheses, e.g. "(8849 - 8611) / 2".

    Args:
        expression: the arithmetic expression
    """
    return calculate(expression)


TOOLS = (search, lookup, calculator)

# `ask(..., speculate="question")`: before the plan's first line, search each name
# the question gives. Read-only, so a guess the plan never writes costs a slot, not
# a side effect; lookups are left out (one per attribute would guess eight calls
# per name).
QUESTION_TEMPLATES = ('search("{}")',)
