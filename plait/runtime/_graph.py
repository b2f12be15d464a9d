"""Nodes, refs and edges as typed, frozen data; validation; a JSON form.

A node's arguments are plain values in which a `Ref` (the value of another node)
or a `Template` (a string with node values formatted in) may stand, also inside
lists, tuples and dicts. Those references are the graph's edges.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush
from typing import TYPE_CHECKING, Any

from plait._errors import GraphError, RefMisuseError, ToolArgumentError

if TYPE_CHECKING:
    from plait.runtime._tools import Tool

# Values that can hold no reference: checked by exact type, the hot path of every call.
ATOMS = frozenset({str, int, float, bool, type(None), bytes})


def _refuse(what: str) -> Callable[..., Any]:
    def refuse(self: Ref, *args: Any) -> Any:
        raise self._misuse(what)

    return refuse


@dataclass(frozen=True, slots=True, eq=False)
class Ref:
    """The future value of node `node`. `await ref` inside a workflow gives the value.

    A Ref is not the value: formatting, testing, comparing or computing with it
    raises RefMisuseError naming the call (a workflow that forgot an `await` would
    otherwise go on with "Ref($0)" as text, or a condition that is always true).
    `repr` and equality between Refs (by node) stay, for logs and dicts.
    """

    node: int
    _run: Any = field(default=None, repr=False)

    def __await__(self) -> Generator[Any, None, Any]:
        if self._run is None:
            raise GraphError(f"{self!r} is not part of a running workflow")
        return self._run.value_of(self.node)

    def __repr__(self) -> str:
        call = self._call_text()
        return f"Ref(${self.node})" if call is None else f"Ref(${self.node} {call})"

    def __hash__(self) -> int:
        # Not hash(node): an int key of the same value would then be compared with it.
        return hash((Ref, self.node))

    def __eq__(self, other: object) -> bool:
        if type(other) is Ref:
            return self.node == other.node
        if self._run is None:  # a graph's Ref is plain data (a parsed plan, a JSON graph)
            return NotImplemented
        raise self._misuse("`==`")

    def __ne__(self, other: object) -> bool:
        if type(other) is Ref:
            return self.node != other.node
        if self._run is None:
            return NotImplemented
        raise self._misuse("`!=`")

    def __getattr__(self, name: str) -> Any:
        # Only for names a Ref lacks: `ref.strip()` on a forgotten await. Private and
        # dunder names stay plain AttributeErrors, for protocols that probe for them.
        if name.startswith("_"):
            raise AttributeError(name)
        raise RefAttributeError(self._misuse(f"`.{name}`"))

    def _call_text(self) -> str | None:
        """The tool call this Ref stands for, shortened (`search("K2")`), if known."""
        try:
            node = self._run.nodes[self.node]
            positional = self._run.node_tools[self.node]._positional
        except Exception:  # no run (a graph's Ref), or a run that does not know the node
            return None
        shown = []
        for i, (name, value) in enumerate(node.arguments.items()):
            text = _short(map_refs(value, lambda r: _Shown(f"${r.node}")))
            keyword = i >= len(positional) or positional[i] != name
            shown.append(f"{name}={text}" if keyword else text)
        return f"{node.tool}({', '.join(shown)})"

    def _misuse(self, what: str) -> RefMisuseError:
        call = self._call_text()
        if call is None:
            return RefMisuseError(
                f"{what} on {self!r}, the future value of node ${self.node}: await it "
                "inside a workflow (value = await ref), or pass the ref to another tool")
        return RefMisuseError(
            f"{what} on the result of {call}, which inside a workflow is a Ref (the "
            "call's future value, not the value). Await it for the value "
            "(value = await ref), or pass the ref as an argument to another tool")

    __str__ = _refuse("str()")
    __format__ = _refuse("an f-string or format()")
    __bool__ = _refuse("a truth test (`if`, `and`, `or`, bool())")
    __lt__ = _refuse("`<`")
    __le__ = _refuse("`<=`")
    __gt__ = _refuse("`>`")
    __ge__ = _refuse("`>=`")
    __add__ = __radd__ = _refuse("`+`")
    __sub__ = __rsub__ = _refuse("`-`")
    __mul__ = __rmul__ = _refuse("`*`")
    __matmul__ = __rmatmul__ = _refuse("`@`")
    __truediv__ = __rtruediv__ = _refuse("`/`")
    __floordiv__ = __rfloordiv__ = _refuse("`//`")
    __mod__ = __rmod__ = _refuse("`%`")
    __divmod__ = __rdivmod__ = _refuse("divmod()")
    __pow__ = __rpow__ = _refuse("`**`")
    __and__ = __rand__ = _refuse("`&`")
    __or__ = __ror__ = _refuse("`|`")
    __xor__ = __rxor__ = _refuse("`^`")
    __lshift__ = __rlshift__ = _refuse("`<<`")
    __rshift__ = __rrshift__ = _refuse("`>>`")
    __neg__ = _refuse("unary `-`")
    __pos__ = _refuse("unary `+`")
    __abs__ = _refuse("abs()")
    __invert__ = _refuse("`~`")
    __round__ = _refuse("round()")
    __int__ = _refuse("int()")
    __float__ = _refuse("float()")
    __complex__ = _refuse("complex()")
    __index__ = _refuse("use as an index or integer")
    __len__ = _refuse("len()")
    __iter__ = _refuse("iteration (a for loop, unpacking, list())")
    __getitem__ = _refuse("indexing (`ref[...]`)")
    __contains__ = _refuse("`in`")


class RefAttributeError(RefMisuseError, AttributeError):
    """An attribute of the value (`ref.strip()`) asked of its Ref."""

    def __init__(self, misuse: RefMisuseError) -> None:
        super().__init__(str(misuse))


@dataclass(frozen=True, slots=True)
class _Shown:
    """A value shown as the given text in a call's arguments (`$0` for a Ref)."""

    text: str

    def __repr__(self) -> str:
        return self.text


def _short(value: Any, limit: int = 40) -> str:
    """A value as a call's argument, cut to about `limit` characters."""
    text = json.dumps(value, ensure_ascii=False) if type(value) is str else repr(value)
    if len(text) <= limit:
        return text
    return text[: limit - 4] + ("...\"" if type(value) is str else "...")


@dataclass(frozen=True, slots=True)
class Template:
    """A string with node values formatted in, as `"population of $1"` in a plan."""

    parts: tuple[str | Ref, ...]

    def render(self, values: Sequence[Any]) -> str:
        return "".join(p if isinstance(p, str) else _text(values[p.node]) for p in self.parts)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    """One call: `tool(**arguments)`. `parents` are the nodes its arguments reference."""

    id: int
    tool: str
    arguments: Mapping[str, Any]
    parents: tuple[int, ...] = ()


def parents_of(arguments: Mapping[str, Any]) -> tuple[int, ...]:
    """Distinct node ids referenced anywhere in `arguments`, in first-seen order."""
    found: list[int] = []
    for value in arguments.values():
        if type(value) not in ATOMS:
            _collect(value, found)
    if len(found) > 1:
        found = list(dict.fromkeys(found))
    return tuple(found)


def refs_in(value: Any) -> list[Ref]:
    """Every Ref inside `value` (in Templates, lists, tuples and dicts too)."""
    found: list[Ref] = []
    if type(value) not in ATOMS:
        _collect(value, found, node_ids=False)
    return found


def _collect(value: Any, found: list[Any], node_ids: bool = True) -> None:
    kind = type(value)
    if kind in ATOMS:
        return
    if kind is Ref:
        found.append(value.node if node_ids else value)
    elif kind is Template:
        found.extend(p.node if node_ids else p for p in value.parts if type(p) is Ref)
    elif kind is list or kind is tuple:
        for v in value:
            _collect(v, found, node_ids)
    elif kind is dict:
        for v in value.values():
            _collect(v, found, node_ids)


def resolve(value: Any, values: Sequence[Any]) -> Any:
    """`value` with every Ref replaced by its node's value and every Template rendered."""
    kind = type(value)
    if kind in ATOMS:
        return value
    if kind is Ref:
        return values[value.node]
    if kind is Template:
        return value.render(values)
    # A Ref directly in a container is resolved inline: the common argument shape.
    if kind is dict:
        return {k: values[v.node] if type(v) is Ref else resolve(v, values)
                for k, v in value.items()}
    if kind is list:
        return [values[v.node] if type(v) is Ref else resolve(v, values) for v in value]
    if kind is tuple:
        return tuple(resolve(v, values) for v in value)
    return value


def map_refs(value: Any, fn: Callable[[Ref], Any]) -> Any:
    """`value` with every Ref `r` (also inside Templates and containers) replaced by `fn(r)`."""
    kind = type(value)
    if kind in ATOMS:
        return value
    if kind is Ref:
        return fn(value)
    if kind is Template:
        return Template(tuple(fn(p) if type(p) is Ref else p for p in value.parts))
    if kind is list:
        return [map_refs(v, fn) for v in value]
    if kind is tuple:
        return tuple(map_refs(v, fn) for v in value)
    if kind is dict:
        return {k: map_refs(v, fn) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class Graph:
    """A static graph: nodes whose ids are their positions, parents before children."""

    nodes: tuple[Node, ...]

    @classmethod
    def build(cls, calls: Iterable[tuple[str, Mapping[str, Any]]]) -> Graph:
        """A graph from `(tool, arguments)` pairs; Refs in arguments name earlier pairs."""
        nodes = tuple(
            Node(i, name, dict(args), parents_of(args)) for i, (name, args) in enumerate(calls)
        )
        return cls(nodes)

    def validate(self, tools: Mapping[str, Tool]) -> None:
        """Raise GraphError for unknown tools, bad arity, dangling refs and cycles."""
        n = len(self.nodes)
        for i, node in enumerate(self.nodes):
            if node.id != i:
                raise GraphError(f"node at position {i} has id {node.id}; ids must be 0..{n - 1}")
            if node.tool not in tools:
                known = ", ".join(sorted(tools)) or "none"
                raise GraphError(f"node {i}: unknown tool {node.tool!r} (known: {known})")
            try:
                tools[node.tool].bind((), node.arguments)
            except ToolArgumentError as exc:
                raise GraphError(f"node {i}: {exc}") from None
            for p in node.parents:
                if not 0 <= p < n:
                    raise GraphError(f"node {i}: reference to missing node ${p}")
            if tuple(node.parents) != parents_of(node.arguments):
                raise GraphError(f"node {i}: parents {node.parents} differ from its references")
        cycle = find_cycle(self.nodes)
        if cycle:
            raise GraphError("cycle: " + " -> ".join(f"${c}" for c in cycle))

    def topological(self) -> list[int]:
        """Node ids in an order where every parent comes before its children."""
        order = _kahn(self.nodes)
        if len(order) != len(self.nodes):
            raise GraphError("cycle: " + " -> ".join(f"${c}" for c in find_cycle(self.nodes)))
        return order

    def to_json(self) -> str:
        return json.dumps(
            {
                "nodes": [
                    {"id": nd.id, "tool": nd.tool, "arguments": _encode(dict(nd.arguments))}
                    for nd in self.nodes
                ]
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Graph:
        try:
            data = json.loads(text)
            raw = data["nodes"]
            nodes = []
            for item in raw:
                args = _decode(item["arguments"])
                if not isinstance(args, dict):
                    raise TypeError("arguments must be an object")
                nodes.append(Node(int(item["id"]), str(item["tool"]), args, parents_of(args)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise GraphError(f"not a plait graph: {exc}") from None
        return cls(tuple(nodes))


def _kahn(nodes: Sequence[Node]) -> list[int]:
    index = {nd.id: nd for nd in nodes}
    waiting = {nd.id: sum(1 for p in nd.parents if p in index) for nd in nodes}
    children: dict[int, list[int]] = {nd.id: [] for nd in nodes}
    for nd in nodes:
        for p in nd.parents:
            if p in children:
                children[p].append(nd.id)
    # A heap keeps the order stable: a graph already in order keeps its ids.
    ready = [i for i, w in waiting.items() if w == 0]
    heapify(ready)
    order: list[int] = []
    while ready:
        i = heappop(ready)
        order.append(i)
        for c in children[i]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heappush(ready, c)
    return order


def find_cycle(nodes: Sequence[Node]) -> list[int]:
    """One cycle as a list of ids (first id repeated at the end), or [] if none."""
    parents = {nd.id: nd.parents for nd in nodes}
    color: dict[int, int] = {}  # 1 on the stack, 2 finished
    for start in parents:
        if start in color:
            continue
        stack: list[tuple[int, int]] = [(start, 0)]
        path: list[int] = [start]
        color[start] = 1
        while stack:
            node, k = stack[-1]
            ps = parents.get(node, ())
            if k < len(ps):
                stack[-1] = (node, k + 1)
                p = ps[k]
                if color.get(p) == 1:
                    return path[path.index(p) :] + [p]
                if p in parents and p not in color:
                    color[p] = 1
                    stack.append((p, 0))
                    path.append(p)
            else:
                color[node] = 2
                stack.pop()
                path.pop()
    return []


def _encode(value: Any) -> Any:
    kind = type(value)
    if kind is Ref:
        return {"$ref": value.node}
    if kind is Template:
        return {"$template": [_encode(p) for p in value.parts]}
    if kind is list:
        return [_encode(v) for v in value]
    if kind is tuple:
        return {"$tuple": [_encode(v) for v in value]}
    if kind is dict:
        body = {k: _encode(v) for k, v in value.items()}
        # A literal dict that looks like an encoded value is wrapped so it round-trips.
        return {"$dict": body} if any(str(k).startswith("$") for k in value) else body
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((k, v),) = value.items()
            if k == "$ref":
                return Ref(int(v))
            if k == "$template":
                parts = tuple(_decode(p) for p in v)
                if not all(type(p) is str or type(p) is Ref for p in parts):
                    raise TypeError("a $template holds only strings and $refs")
                return Template(parts)
            if k == "$tuple":
                return tuple(_decode(x) for x in v)
            if k == "$dict":
                return {kk: _decode(vv) for kk, vv in v.items()}
        return {k: _decode(v) for k, v in value.items()}
    return value

