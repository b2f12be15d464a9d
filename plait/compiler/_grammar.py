"""GBNF grammars of valid plans, built from the tool registry.

With the grammar, a grammar-capable backend (llama.cpp in-process or its server)
can only write plans the parser accepts: numbered lines in order, known tool
names, each tool's parameters in order with values of the right shape, `$N`
references only to tasks that exist by then, optional `Thought:` lines, and a
final `N. join()`. Sizes are bounded (tasks per plan, characters per string)
so a small model cannot wander off.

The grammar is built as a tiny expression tree, not as text, so it can both be
rendered to GBNF and be sampled from (the tests check that every sampled plan
parses cleanly).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from plait.runtime._tools import Tool
from plait.tools._schema import inline_refs

# ---------------------------------------------------------------- expressions


class Expr:
    def render(self) -> str:
        raise NotImplementedError

    def atom(self) -> str:
        """Rendered so that a repetition suffix applies to all of it."""
        return self.render()


@dataclass(frozen=True)
class Lit(Expr):
    text: str

    def render(self) -> str:
        out = self.text.replace("\\", "\\\\").replace('"', '\\"')
        out = out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
        return f'"{out}"'


@dataclass(frozen=True)
class Chars(Expr):
    """One character from `chars`, or (negated) any character not in it."""

    chars: str
    negated: bool = False

    def render(self) -> str:
        esc = {"\\": "\\\\", "]": "\\]", "[": "\\[", "-": "\\-", "^": "\\^",
               "\n": "\\n", "\r": "\\r", "\t": "\\t"}
        body = "".join(esc.get(c, c) for c in self.chars)
        return f"[{'^' if self.negated else ''}{body}]"


@dataclass(frozen=True)
class Seq(Expr):
    items: tuple[Expr, ...]

    def render(self) -> str:
        return " ".join(i.atom() if isinstance(i, Alt) else i.render() for i in self.items)

    def atom(self) -> str:
        return f"({self.render()})" if len(self.items) > 1 else self.items[0].atom()


@dataclass(frozen=True)
class Alt(Expr):
    options: tuple[Expr, ...]

    def render(self) -> str:
        return " | ".join(o.render() for o in self.options)

    def atom(self) -> str:
        return f"({self.render()})" if len(self.options) > 1 else self.options[0].atom()


@dataclass(frozen=True)
class Rep(Expr):
    item: Expr
    lo: int
    hi: int

    def render(self) -> str:
        inner = self.item.atom()
        if (self.lo, self.hi) == (0, 1):
            return f"{inner}?"
        return f"{inner}{{{self.lo},{self.hi}}}" if self.lo != self.hi else f"{inner}{{{self.lo}}}"

    def atom(self) -> str:
        return f"({self.render()})"


@dataclass(frozen=True)
class Rule(Expr):
    name: str

    def render(self) -> str:
        return self.name


def seq(*items: Expr | str) -> Expr:
    parts = tuple(Lit(i) if isinstance(i, str) else i for i in items)
    return parts[0] if len(parts) == 1 else Seq(parts)


def alt(*options: Expr | str) -> Expr:
    opts = tuple(Lit(o) if isinstance(o, str) else o for o in options)
    return opts[0] if len(opts) == 1 else Alt(opts)


def opt(item: Expr | str) -> Expr:
    return Rep(Lit(item) if isinstance(item, str) else item, 0, 1)


class Grammar:
    """Named rules; `root` is where generation starts."""

    def __init__(self) -> None:
        self.rules: dict[str, Expr] = {}

    def define(self, name: str, expr: Expr) -> Rule:
        self.rules[name] = expr
        return Rule(name)

    def render(self) -> str:
        return "\n".join(f"{name} ::= {expr.render()}" for name, expr in self.rules.items()) + "\n"

    __str__ = render

    def max_len(self, start: str = "root") -> int:
        """The most characters a string of this grammar can have (every repetition
        is bounded, and rules do not recurse). A character class counts 2: a token
        never holds less than half a character, so this bounds tokens too."""
        memo: dict[str, int] = {}

        def size(e: Expr) -> int:
            if isinstance(e, Lit):
                return len(e.text)
            if isinstance(e, Chars):
                return 2
            if isinstance(e, Seq):
                return sum(size(i) for i in e.items)
            if isinstance(e, Alt):
                return max(size(o) for o in e.options)
            if isinstance(e, Rep):
                return e.hi * size(e.item)
            if isinstance(e, Rule):
                if e.name not in memo:
                    memo[e.name] = size(self.rules[e.name])
                return memo[e.name]
            raise TypeError(e)  # pragma: no cover

        return size(Rule(start))

    # ------------------------------------------------------------ sampling (for tests)

    _ALPHABET = (
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        " ,.()[]{}'\"$\\-+*/:;=#éü中\n"
    )

    def sample(self, rng: random.Random, start: str = "root", max_rep: int = 6) -> str:
        """A random string the grammar accepts (repetitions capped at `max_rep` extra)."""
        out: list[str] = []
        self._sample(self.rules[start], rng, out, max_rep)
        return "".join(out)

    def _sample(self, e: Expr, rng: random.Random, out: list[str], max_rep: int) -> None:
        if isinstance(e, Lit):
            out.append(e.text)
        elif isinstance(e, Chars):
            pool = [c for c in self._ALPHABET if (c in e.chars) != e.negated]
            out.append(rng.choice(pool))
        elif isinstance(e, Seq):
            for i in e.items:
                self._sample(i, rng, out, max_rep)
        elif isinstance(e, Alt):
            self._sample(rng.choice(e.options), rng, out, max_rep)
        elif isinstance(e, Rep):
            for _ in range(rng.randint(e.lo, min(e.hi, e.lo + max_rep))):
                self._sample(e.item, rng, out, max_rep)
        elif isinstance(e, Rule):
            self._sample(self.rules[e.name], rng, out, max_rep)
        else:  # pragma: no cover
            raise TypeError(e)


# ---------------------------------------------------------------- values by JSON schema

DIGIT = Chars("0123456789")
STRING_CHAR = Chars('"\\\n$', negated=True)


class _Values:
    """Value expressions for one plan position: which refs may appear there."""

    def __init__(self, g: Grammar, level: str, refs: Sequence[int], max_string: int,
                 spans: Sequence[str] | None = None) -> None:
        self.g = g
        self.level = level
        self.refs = list(refs)
        self.max_string = max_string
        self.ref: Expr | None = None
        inline: Expr | None = None
        if self.refs:
            self.ref = g.define(f"ref-{level}", alt(*(f"${n}" for n in self.refs)))
            inline = seq("${", alt(*(str(n) for n in self.refs)), "}")
            chars: Expr = g.define(f"char-{level}", alt(STRING_CHAR, inline))
        else:
            chars = STRING_CHAR
        self.computed: Expr | None = None  # grounded: text built on results, or a ref
        if spans is None:
            string = seq('"', Rep(chars, 1, max_string), '"')
        else:
            # Grounded: text quoted from the question, or text built on results.
            options: list[Expr] = [Lit(f'"{s}"') for s in grounded_spans(spans)]
            if inline is not None:  # arithmetic on results: "${1} - ${2}", "${1} * 2"
                number = seq(Rep(DIGIT, 1, 9), opt(seq(".", Rep(DIGIT, 1, 4))))
                step = seq(" ", Chars("+-*/"), " ", alt(inline, number))
                computed = seq('"', inline, Rep(step, 1, 4), '"')
                options.append(computed)
                self.computed = alt(computed, self.ref) if self.ref is not None else computed
            string = alt(*options) if options else seq('"', Rep(chars, 1, max_string), '"')
        self.string = g.define(f"str-{level}", string)
        self._generic: Rule | None = None

    def with_ref(self, e: Expr) -> Expr:
        return alt(e, self.ref) if self.ref is not None else e

    def for_schema(self, schema: Mapping[str, Any], depth: int = 0) -> Expr:
        """Values of one parameter: literals of its type, or a reference."""
        return self.with_ref(self._literal(schema, depth))

    def _literal(self, schema: Mapping[str, Any], depth: int) -> Expr:
        if "enum" in schema and schema["enum"]:
            return alt(*(Lit(_literal_text(v)) for v in schema["enum"]))
        if "const" in schema:
            return Lit(_literal_text(schema["const"]))
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self._literal(s, depth) for s in schema[key] if isinstance(s, Mapping)]
                if options:
                    return alt(*options)
        kind = schema.get("type")
        if isinstance(kind, list):
            return alt(*(self._literal({**schema, "type": k}, depth) for k in kind))
        if kind == "string":
            return self.string
        if kind == "integer":
            return self.g_int()
        if kind == "number":
            return self.g_num()
        if kind == "boolean":
            return alt("true", "false")
        if kind == "null":
            return Lit("None")
        if kind == "array" and depth < 2:
            items = schema.get("items")
            item = (self.for_schema(items, depth + 1) if isinstance(items, Mapping)
                    else self.generic())
            lo = int(schema.get("minItems", 0))
            hi = min(int(schema.get("maxItems", 8)), 8)
            if lo > hi:
                lo = hi
            if hi == 0:
                return Lit("[]")
            body = seq(item, Rep(seq(", ", item), max(lo - 1, 0), hi - 1))
            return seq("[", body if lo > 0 else opt(body), "]")
        props = schema.get("properties")
        if (kind == "object" or kind is None) and isinstance(props, Mapping) and props \
                and depth < 2:
            # `{"key": value, ...}`: required keys in order, then optional ones.
            needed = set(schema.get("required", ()))
            fields = [(k in needed, seq(Lit(_literal_text(k) + ": "),
                                         self.for_schema(v if isinstance(v, Mapping) else {},
                                                         depth + 1)))
                      for k, v in props.items() if isinstance(k, str)]
            return seq("{", *_listed([f for r, f in fields if r],
                                     [f for r, f in fields if not r]), "}")
        return self.generic()

    def g_int(self) -> Rule:
        if "int" not in self.g.rules:
            self.g.define("int", seq(opt("-"), Rep(DIGIT, 1, 12)))
        return Rule("int")

    def g_num(self) -> Rule:
        if "num" not in self.g.rules:
            self.g.define(
                "num", seq(opt("-"), Rep(DIGIT, 1, 12), opt(seq(".", Rep(DIGIT, 1, 6))))
            )
        return Rule("num")

    def generic(self) -> Expr:
        """Any scalar literal, or a flat list of them (for untyped parameters)."""
        if self._generic is None:
            scalar = alt(self.string, self.g_num(), "true", "false", "None")
            scalar = self.with_ref(scalar)
            lst = seq("[", opt(seq(scalar, Rep(seq(", ", scalar), 0, 7))), "]")
            self._generic = self.g.define(f"any-{self.level}", alt(scalar, lst))
        return self._generic


def grounded_spans(spans: Sequence[str]) -> list[str]:
    """The spans a plan string may quote: those the plan syntax takes as they are."""
    return list(dict.fromkeys(s for s in spans if s and not set(s) & set('"\\$\n')))


_FUNCTION_WORDS = frozenset(
    "the a an of or and is was are were which what who how when where why did does do "
    "in on at to by for with from than that this first much many more most".split()
)


def question_spans(question: str, longest: int = 6) -> list[str]:
    """Runs of up to `longest` words of `question`, as written, that neither begin nor
    end with a function word: "Mount Everest", "K2", "Statue of Liberty"."""
    words = [w.strip(".,;:!?()[]'\"") for w in question.split()]
    out: list[str] = []
    for i in range(len(words)):
        for j in range(i + 1, min(i + longest, len(words)) + 1):
            run = words[i:j]
            if not all(run) or run[0].lower() in _FUNCTION_WORDS \
                    or run[-1].lower() in _FUNCTION_WORDS:
                continue
            out.append(" ".join(run))
    return list(dict.fromkeys(out))


_CONNECTORS = frozenset("of the de del la le".split())


def question_names(question: str) -> list[str]:
    """The names in `question`, in its order: runs of capitalized words (or words
    with a digit), joined by small connectors ("Statue of Liberty", "K2", "Taipei
    101"); the question's first word counts only when it is not a function word.
    With none, every span of `question_spans`."""
    names: list[str] = []
    run: list[str] = []

    def named(w: str) -> bool:
        return bool(w) and (w[0].isupper() or any(c.isdigit() for c in w)) \
            and w.lower() not in _FUNCTION_WORDS

    def end() -> None:
        while run and run[-1].lower() in _CONNECTORS:
            run.pop()
        if run:
            names.append(" ".join(run))
        run.clear()

    for raw in question.split():
        w = raw.strip(".,;:!?()[]'\"")
        if named(w):
            run.append(w)
        elif run and w.lower() in _CONNECTORS:
            run.append(w)
        else:
            end()
        if raw.rstrip("'\")]").endswith((",", ";", ":", "?", "!", ".")):
            end()  # punctuation ends a name: "Kilimanjaro, Denali"
    end()
    return list(dict.fromkeys(names)) or question_spans(question)


def _literal_text(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _call(tool: Tool, values: _Values, fixed: Mapping[str, Expr] | None = None) -> Expr:
    """`name(required, ..., key=optional, ...)`: required parameters in order
    (positionally when they can be), then optional ones by keyword, in order,
    each of which may be left out. `fixed` gives some parameters' values."""
    props = _properties(tool)

    def value(name: str) -> Expr:
        if fixed is not None and name in fixed:
            return fixed[name]
        schema = props.get(name, {})
        return values.for_schema(schema if isinstance(schema, Mapping) else {})

    required: list[Expr] = []
    for name in tool.param_names:
        if name in tool.required:
            v = value(name)
            required.append(v if _positional(tool, name) else seq(f"{name}=", v))
    optional = [seq(f"{name}=", value(name)) for name in tool.param_names
                if name not in tool.required]
    return seq(Lit(f"{tool.name}("), *_listed(required, optional), Lit(")"))


def _listed(required: list[Expr], optional: list[Expr]) -> list[Expr]:
    """Comma-separated: every `required` item in order, then any of the `optional`
    ones, in order (a call's arguments, a dict's keys)."""
    parts: list[Expr] = []
    for i, r in enumerate(required):
        parts.extend([Lit(", "), r] if i else [r])
    if required:
        parts.extend(opt(seq(", ", o)) for o in optional)
    elif optional:
        # No leading comma: one of the optional ones comes first, the rest follow.
        heads = [seq(o, *(opt(seq(", ", later)) for later in optional[i + 1 :]))
                 for i, o in enumerate(optional)]
        parts.append(opt(alt(*heads)))
    return parts


def _name_slot(tool: Tool) -> str | None:
    """The first required free-text parameter: where a grounded plan puts a name."""
    props = _properties(tool)
    for name in tool.param_names:
        schema = props.get(name, {})
        if name in tool.required and isinstance(schema, Mapping) \
                and schema.get("type") == "string" and "enum" not in schema:
            return name
    return None


def _positional(tool: Tool, name: str) -> bool:
    return name in tool._positional


def _properties(tool: Tool) -> Mapping[str, Any]:
    """The schemas of `tool`'s parameters, `$ref`s followed (pydantic and many JSON
    schemas keep nested objects in `$defs`)."""
    if not isinstance(tool.parameters, Mapping):
        return {}
    props = inline_refs(tool.parameters).get("properties", {})
    return props if isinstance(props, Mapping) else {}


def _calls(g: Grammar, tools: Iterable[Tool], level: str, refs: Sequence[int],
           max_string: int, spans: Sequence[str] | None = None) -> Rule:
    values = _Values(g, level, refs, max_string, spans)
    return g.define(f"call-{level}", alt(*(_call(t, values) for t in tools)))


def _thought(g: Grammar, max_thought: int) -> Rule:
    return g.define("thought", seq("Thought: ", Rep(Chars("\n", negated=True), 1, max_thought),
                                   "\n"))


def plan_grammar(
    tools: Iterable[Tool],
    *,
    first: int = 1,
    known: Iterable[int] = (),
    max_tasks: int = 9,
    max_string: int = 48,
    thoughts: bool = True,
    max_thought: int = 100,
    spans: Sequence[str] | None = None,
    uses: Mapping[str, frozenset[str]] | None = None,
) -> str:
    """GBNF for a plan whose tasks are numbered from `first`.

    `known` are task numbers from earlier plans that this plan may reference.
    At least one task, at most `max_tasks`, then `N. join()`. With `spans`, a
    text argument is one of them (quoted from the question) or holds a `${N}`.
    """
    return plan_grammar_tree(
        tools, first=first, known=known, max_tasks=max_tasks, max_string=max_string,
        thoughts=thoughts, max_thought=max_thought, spans=spans, uses=uses,
    ).render()


def plan_grammar_tree(
    tools: Iterable[Tool],
    *,
    first: int = 1,
    known: Iterable[int] = (),
    max_tasks: int = 9,
    max_string: int = 48,
    thoughts: bool = True,
    max_thought: int = 100,
    spans: Sequence[str] | None = None,
    uses: Mapping[str, frozenset[str]] | None = None,
    failed: Sequence[tuple[str, Mapping[str, Any]]] = (),
) -> Grammar:
    """`plan_grammar` as a tree, which can also be sampled from. With `spans`,
    `failed` calls (tool, arguments) are not allowed again."""
    tools = list(tools)
    if not tools:
        raise ValueError("a plan grammar needs at least one tool")
    if max_tasks < 1:
        raise ValueError("max_tasks must be >= 1")
    g = Grammar()
    head: list[Expr] = [opt(_thought(g, max_thought))] if thoughts else []
    earlier = sorted(set(known))
    last = first + max_tasks  # the number join() gets when the plan is full
    names = grounded_spans(spans) if spans is not None else []
    if names:
        _grounded_steps(g, tools, head, first, last, earlier, max_string, names, uses or {},
                        failed)
        return g
    g.define("root", Rule(f"step-{first}"))
    for n in range(first, last):
        call = _calls(g, tools, str(n), earlier + list(range(first, n)), max_string, spans)
        task = seq(call, "\n", Rule(f"step-{n + 1}"))
        body = task if n == first else alt(task, "join()")
        g.define(f"step-{n}", seq(*head, f"{n}. ", body))
    g.define(f"step-{last}", seq(*head, f"{last}. join()"))
    return g


MAX_NAMES = 6  # names tracked one by one in a grounded plan (2**6 states a step)


SLOT_USES = frozenset({"name", "computed"})


def _grounded_steps(g: Grammar, tools: list[Tool], head: list[Expr], first: int, last: int,
                    earlier: list[int], max_string: int, names: list[str],
                    uses: Mapping[str, frozenset[str]],
                    failed: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> None:
    """Steps that first call each of `names` (the question's) once, in any order,
    then at most one call that builds on their results, then join: a small model
    that would write `lookup("K2")` twice, or join before the second name, cannot.
    The state of rule `step-N-M` is the bit mask M of names used so far. `uses`
    says, per tool, what its first text parameter takes ("name", "computed"; both
    for a tool not in it): the worked examples show it, so `calculator("Danube")`
    is not a plan. A name's call takes no enum value that `failed` for it (after
    `lookup("Lake Superior", "height")` failed, a replan may ask for its depth)."""
    names = names[:MAX_NAMES]
    every = (1 << len(names)) - 1
    # A call per name and one more (arithmetic on their results): a small model
    # given more room fills it with calls that help nothing.
    last = min(last, first + len(names) + 1)
    g.define("root", Rule(f"step-{first}-0"))
    masks = {0}
    for n in range(first, last):
        values = _Values(g, str(n), earlier + list(range(first, n)), max_string, names)
        following: set[int] = set()
        for used in sorted(masks):
            options: list[Expr] = []
            for tool in tools:
                slot = _name_slot(tool)
                takes = uses.get(tool.name, SLOT_USES)
                if used != every:  # names first, each once
                    for k, name in enumerate(names):
                        if slot is not None and "name" in takes and not used & (1 << k):
                            fixed = _untried(tool, slot, name, failed)
                            if fixed is None:
                                continue
                            call = _call(tool, values, fixed)
                            options.append(seq(call, "\n", Rule(f"step-{n + 1}-{used | 1 << k}")))
                            following.add(used | 1 << k)
                elif slot is None:  # then what builds on their results
                    options.append(seq(_call(tool, values), "\n", Rule(f"step-{n + 1}-{used}")))
                    following.add(used)
                elif values.computed is not None and "computed" in takes:
                    call = _call(tool, values, {slot: values.computed})
                    options.append(seq(call, "\n", Rule(f"step-{n + 1}-{used}")))
                    following.add(used)
            if n > first and used == every:
                options.append(Lit("join()"))
            if options:
                g.define(f"step-{n}-{used}", seq(*head, f"{n}. ", alt(*options)))
            else:  # nothing left to call: the plan ends
                g.define(f"step-{n}-{used}", seq(*head, f"{n}. join()"))
        masks = following
    for used in sorted(masks):
        g.define(f"step-{last}-{used}", seq(*head, f"{last}. join()"))


def _untried(tool: Tool, slot: str, name: str,
             failed: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Expr] | None:
    """The fixed values of a call of `tool` on `name`: the name, and for each enum
    parameter the values no failed call of it on that name had (None: none left)."""
    fixed: dict[str, Expr] = {slot: Lit(f'"{name}"')}
    tried = [args for t, args in failed if t == tool.name and args.get(slot) == name]
    if not tried:
        return fixed
    props = tool.parameters.get("properties", {}) if isinstance(tool.parameters, Mapping) else {}
    for param, schema in props.items():
        if isinstance(schema, Mapping) and schema.get("enum"):
            left = [v for v in schema["enum"] if all(a.get(param) != v for a in tried)]
            if not left:
                return None
            fixed[param] = alt(*(Lit(_literal_text(v)) for v in left))
    return fixed


def choice_grammar(prefix: str, choices: Sequence[str]) -> str:
    """GBNF for `prefix` followed by exactly one of `choices`."""
    if not choices:
        raise ValueError("a choice grammar needs at least one choice")
    g = Grammar()
    g.define("root", seq(prefix, alt(*(Lit(c) for c in choices))))
    return g.render()


def react_grammar(tools: Iterable[Tool], *, max_string: int = 64, max_thought: int = 160) -> str:
    """GBNF for one ReAct step: a thought, then one action (a tool call or finish)."""
    return react_grammar_tree(tools, max_string=max_string, max_thought=max_thought).render()


def react_grammar_tree(tools: Iterable[Tool], *, max_string: int = 64,
                       max_thought: int = 160) -> Grammar:
    g = Grammar()
    g.define("root", seq("Thought: ", Rep(Chars("\n", negated=True), 1, max_thought),
                         "\nAction: ", Rule("action")))
    values = _Values(g, "react", (), max_string)
    finish = seq("finish(", values.string, ")")
    g.define("action", alt(*(_call(t, values) for t in tools), finish))
    return g
