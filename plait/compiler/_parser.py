"""The plan language and its streaming parser.

A plan is one call per line, LLMCompiler style::

    Thought: I need both heights.
    1. search("Mount Everest")
    2. search(entity="K2")
    3. calculator("${1} - ${2}")
    4. join()

Arguments are literals only: strings ('single' or "double" quoted, with
backslash escapes), numbers, true/false/None (also True/False/null), lists and
dicts of those, and references. `$N` or `${N}` standing alone is the value of
task N itself (a `Ref`); inside a longer string it is formatted in (a
`Template`). Write `\\$` in a string for a literal dollar sign.

The text is tokenized by hand and never evaluated. The parser is incremental:
`feed()` takes deltas of any size (several lines, half a line) and returns a
task the moment its call is complete, at its closing parenthesis, before the
newline, so a planner can dispatch task 1 while the model is still writing task
2. That is safe because a task line's call ends at that parenthesis: text after
it on the line (a comment, prose) is never part of the call. Its running time is
linear in the input: every line is scanned a bounded number of times, and a line
longer than `max_line` characters is reported and skipped without being buffered.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from plait._errors import ToolArgumentError
from plait.runtime._graph import Ref, Template
from plait.runtime._tools import Tool

# Error kinds. A line with one of them may have been meant as a task, so the
# planner is asked to repair it; "after_join", "ignored" and "incomplete" are
# reported, not repaired.
SYNTAX = "syntax"  # a numbered line that is not a call
UNKNOWN_TOOL = "unknown_tool"
BAD_ARGUMENTS = "bad_arguments"  # arity or a literal value the tool's schema rejects
MISSING_REF = "missing_ref"  # $N names no valid earlier task
FORWARD_REF = "forward_ref"  # $N names this task or a later one
DUPLICATE = "duplicate"  # the task number is already taken
TOO_LONG = "too_long"
TOO_MANY = "too_many"  # more tasks than the planner allows
AFTER_JOIN = "after_join"  # a call after join(): plans end at join()
IGNORED = "ignored"  # prose that is not a call
# The text ended without join(): it may have been cut short (an output bound), so
# tasks may be missing. Not repaired: what did run goes to the joiner, which may replan.
INCOMPLETE = "incomplete"

MAX_DEPTH = 8  # nesting of lists/dicts in one argument


@dataclass(frozen=True, slots=True)
class ParsedTask:
    """One valid plan line: task `number` calls `tool` with `arguments`.

    `arguments` maps parameter names to literals, `Ref(n)` and `Template`s whose
    refs name task numbers (not run nodes). `refs` lists those task numbers.
    """

    number: int
    tool: str
    arguments: Mapping[str, Any]
    refs: tuple[int, ...]
    line: int  # 1-based line of the plan text
    text: str  # the line as written, stripped
    call: str = ""  # the call alone, without the task number
    thought: str | None = None  # the `Thought:` line just before it, if any


@dataclass(frozen=True, slots=True)
class PlanError:
    """A plan line that did not become a task, and why."""

    line: int
    task: int | None  # the task number the line claimed, if it had one
    kind: str
    message: str
    text: str = ""

    @property
    def repairable(self) -> bool:
        """The line may have been meant as a task: ask the planner to redo it."""
        return self.kind not in (IGNORED, AFTER_JOIN, INCOMPLETE)

    def __str__(self) -> str:
        where = f"line {self.line}" + (f" (task {self.task})" if self.task is not None else "")
        return f"{where}: {self.kind}: {self.message}"


class SyntaxProblem(ValueError):
    """Raised inside the tokenizer; becomes a PlanError."""


# ---------------------------------------------------------------- tokenizer

_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REF = re.compile(r"\$(?:\{\s*(\d{1,6})\s*\}|(\d{1,6}))")
_WORDS = {"true": True, "True": True, "false": False, "False": False,
          "None": None, "null": None, "none": None}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "$": "$", "0": "\0"}
_LITERAL_DOLLAR = "\x00$"  # marks an escaped `\$` until refs are split out


class _Scanner:
    """Recursive descent over one call's text. Builds plain values, Refs, Templates."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def error(self, message: str) -> SyntaxProblem:
        return SyntaxProblem(f"{message} at column {self.i + 1}")

    def ws(self) -> None:
        s, i = self.s, self.i
        while i < len(s) and s[i] in " \t\r":
            i += 1
        self.i = i

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def expect(self, ch: str) -> None:
        self.ws()
        if self.peek() != ch:
            got = self.peek() or "end of line"
            raise self.error(f"expected {ch!r}, got {got!r}")
        self.i += 1

    def call(self) -> tuple[str, list[Any], dict[str, Any]]:
        self.ws()
        m = _IDENT.match(self.s, self.i)
        if not m:
            raise self.error("expected a tool name")
        name = m.group()
        self.i = m.end()
        self.expect("(")
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        self.ws()
        if self.peek() == ")":
            self.i += 1
            return name, args, kwargs
        while True:
            self.ws()
            m = _IDENT.match(self.s, self.i)
            key = None
            if m and m.group() not in _WORDS:
                j = m.end()
                while j < len(self.s) and self.s[j] in " \t":
                    j += 1
                if j < len(self.s) and self.s[j] == "=" and self.s[j + 1 : j + 2] != "=":
                    key = m.group()
                    self.i = j + 1
            value = self.value(0)
            if key is None:
                if kwargs:
                    raise self.error("a positional argument after a keyword argument")
                args.append(value)
            else:
                if key in kwargs:
                    raise self.error(f"keyword argument {key!r} given twice")
                kwargs[key] = value
            self.ws()
            ch = self.peek()
            if ch == ",":
                self.i += 1
                self.ws()
                if self.peek() == ")":
                    self.i += 1
                    return name, args, kwargs
                continue
            if ch == ")":
                self.i += 1
                return name, args, kwargs
            raise self.error(f"expected ',' or ')', got {ch or 'end of line'!r}")

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.error("values nested too deeply")
        self.ws()
        ch = self.peek()
        if ch in ("'", '"'):
            return self.string(ch)
        if ch == "$":
            m = _REF.match(self.s, self.i)
            if not m:
                raise self.error("expected $N or ${N}")
            self.i = m.end()
            return Ref(int(m.group(1) or m.group(2)))
        if ch == "[":
            self.i += 1
            return self.items("]", depth)
        if ch == "(":
            self.i += 1
            return self.items(")", depth)
        if ch == "{":
            self.i += 1
            return self.mapping(depth)
        m = _NUMBER.match(self.s, self.i)
        if m:
            self.i = m.end()
            text = m.group()
            if any(c in text for c in ".eE"):
                number = float(text)
                if not math.isfinite(number):
                    raise self.error("number out of range")
                return number
            if len(text) > 30:
                raise self.error("number too long")
            return int(text)
        m = _IDENT.match(self.s, self.i)
        if m and m.group() in _WORDS:
            self.i = m.end()
            return _WORDS[m.group()]
        if m:
            raise self.error(f"{m.group()!r} is not a value (quote strings)")
        raise self.error(f"expected a value, got {ch or 'end of line'!r}")

    def items(self, close: str, depth: int) -> list[Any]:
        out: list[Any] = []
        while True:
            self.ws()
            if self.peek() == close:
                self.i += 1
                return out
            out.append(self.value(depth + 1))
            self.ws()
            ch = self.peek()
            if ch == ",":
                self.i += 1
            elif ch != close:
                raise self.error(f"expected ',' or {close!r}, got {ch or 'end of line'!r}")

    def mapping(self, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while True:
            self.ws()
            if self.peek() == "}":
                self.i += 1
                return out
            ch = self.peek()
            if ch not in ("'", '"'):
                raise self.error("dict keys must be quoted strings")
            key = self.string(ch)
            if not isinstance(key, str):
                raise self.error("dict keys cannot hold references")
            self.expect(":")
            out[key] = self.value(depth + 1)
            self.ws()
            ch = self.peek()
            if ch == ",":
                self.i += 1
            elif ch != "}":
                raise self.error(f"expected ',' or '}}', got {ch or 'end of line'!r}")

    def string(self, quote: str) -> str | Ref | Template:
        s = self.s
        i = self.i + 1
        chunks: list[str] = []
        start = i
        while True:
            j = i
            while j < len(s) and s[j] != quote and s[j] != "\\":
                j += 1
            if j >= len(s):
                self.i = j
                raise self.error("unterminated string")
            chunks.append(s[start:j])
            if s[j] == quote:
                self.i = j + 1
                break
            esc = s[j + 1 : j + 2]
            if not esc:
                self.i = j
                raise self.error("unterminated string")
            chunks.append(_LITERAL_DOLLAR if esc == "$" else _ESCAPES.get(esc, "\\" + esc))
            i = start = j + 2
        return _interpolate("".join(chunks))


def _interpolate(text: str) -> str | Ref | Template:
    """Split `$N`/`${N}` out of a string: the ref alone, a Template, or plain text."""
    if "$" not in text:
        return text
    parts: list[str | Ref] = []
    pos = 0
    for m in _REF.finditer(text):
        if m.start() > 0 and text[m.start() - 1] == "\x00":
            continue  # an escaped dollar sign
        if m.start() > pos:
            parts.append(text[pos : m.start()])
        parts.append(Ref(int(m.group(1) or m.group(2))))
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])
    parts = [p.replace(_LITERAL_DOLLAR, "$") if isinstance(p, str) else p for p in parts]
    if len(parts) == 1 and isinstance(parts[0], Ref):
        return parts[0]  # "$1" alone: the value itself, like a bare $1
    if not any(isinstance(p, Ref) for p in parts):
        return "".join(parts)  # type: ignore[arg-type]
    return Template(tuple(parts))


def parse_call(text: str) -> tuple[str, list[Any], dict[str, Any]]:
    """`name(arg, key=value)` -> (name, args, kwargs). Raises SyntaxProblem.

    Anything after the closing parenthesis other than a `# comment` is an error.
    """
    name, args, kwargs, end = parse_call_prefix(text)
    rest = text[end:].strip()
    if rest and not rest.startswith("#"):
        raise SyntaxProblem(f"unexpected text after the call: {rest[:30]!r} at column {end + 1}")
    return name, args, kwargs


def parse_call_prefix(text: str) -> tuple[str, list[Any], dict[str, Any], int]:
    """The call `text` starts with -> (name, args, kwargs, index just past its `)`).

    Raises SyntaxProblem. Nothing after that index is read (the scanner's only
    lookahead stays inside the call), so the result is known the moment the
    closing parenthesis is: what a streaming parser needs to dispatch it then.
    """
    sc = _Scanner(text)
    name, args, kwargs = sc.call()
    return name, args, kwargs, sc.i


def refs_in(value: Any, found: list[int] | None = None) -> list[int]:
    """Task numbers referenced anywhere in `value`, in order, with repeats."""
    found = [] if found is None else found
    if isinstance(value, Ref):
        found.append(value.node)
    elif isinstance(value, Template):
        found.extend(p.node for p in value.parts if isinstance(p, Ref))
    elif isinstance(value, (list, tuple)):
        for v in value:
            refs_in(v, found)
    elif isinstance(value, dict):
        for v in value.values():
            refs_in(v, found)
    return found


# ---------------------------------------------------------------- argument checks


def check_arguments(tool: Tool, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Bind a call to `tool` and check every value that is known now (the literal
    ones; a reference's value is checked when the task starts).

    Raises ToolArgumentError. Returns the bound arguments, unchanged in value.
    """
    bound = tool.bind(tuple(args), kwargs)
    literal = {k: v for k, v in bound.items() if not refs_in(v)}
    if len(literal) == len(bound):
        tool.validate(bound)
    elif literal:
        tool.validate(literal, partial=True)
    return bound


# ---------------------------------------------------------------- the streaming parser

_TASK_LINE = re.compile(r"\s*(?:[-*]\s*)?(?:(?:Task|Step)\s*)?\$?(\d{1,6})\s*[.):]\s*(.*)$", re.IGNORECASE)
_THOUGHT = re.compile(r"\s*(?:#+\s*)?Thought\s*:\s*(.*)$", re.IGNORECASE)
_JOIN = re.compile(r"join\s*\(\s*\)")  # at the start of a line's body: the plan ends here
_PARTIAL_JOIN = re.compile(r"\s*(?:\d{1,6}\s*\.\s*)?join\s*\(\s*\)\s*$")
_CALL_START = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\s*\(")
_END_MARK = "<END_OF_PLAN>"
_EARLY_TRIES = 8  # early parses of one open line, at most


class PlanParser:
    """Incremental parser and validator of a plan.

    tools       the allowlist, by name; None accepts any tool name unchecked
    known       task numbers that exist already (earlier plans): refs may name them
    taken       task numbers that may not be used again (defaults to `known`)
    max_tasks   tasks beyond this many are errors ("too_many")
    max_line    characters per line; longer lines are errors ("too_long")

    `feed(delta)` returns the tasks and errors it completed: a task line's at its
    call's closing parenthesis (if that is within `max_line` characters), any
    other line's at its newline. Text after a task line's call is not part of it:
    a `# comment` is dropped, anything else is reported ("ignored").
    `close()` handles the last line (with no newline after it), and reports an
    "incomplete" plan if no `join()` came. After `join()` the plan is over:
    `joined` is set, later calls (on its line or after it) are "after_join" errors.
    The same text gives the same tasks and errors however it is cut into deltas.
    """

    def __init__(
        self,
        tools: Mapping[str, Tool] | None,
        *,
        known: Iterable[int] = (),
        taken: Iterable[int] | None = None,
        max_tasks: int | None = None,
        max_line: int = 2000,
        first_line: int = 1,
    ) -> None:
        self.tools = tools
        self.defined: set[int] = set(known)
        self.taken: set[int] = set(self.defined if taken is None else taken)
        self.invalid: set[int] = set()
        self.max_tasks = max_tasks
        self.max_line = max_line
        self.tasks: list[ParsedTask] = []
        self.errors: list[PlanError] = []
        self.joined = False
        self.closed = False
        self._buf: list[str] = []
        self._buf_len = 0
        self._overlong = False  # the current line is past max_line: drop until newline
        self._overlong_head = ""
        self._line = first_line - 1  # number of the last completed line
        self._thought: str | None = None
        self._text: list[str] = []
        # The current line's call was parsed before its newline: where it ended in
        # the line (None: not yet), and how many early tries the line has had.
        self._call_end: int | None = None
        self._tries = 0

    @property
    def text(self) -> str:
        """Everything fed so far."""
        return "".join(self._text)

    @property
    def next_number(self) -> int:
        """One more than the highest task number seen (valid or not)."""
        return max(self.taken | self.invalid | {0}) + 1

    def feed(self, text: str) -> list[ParsedTask | PlanError]:
        if self.closed:
            raise RuntimeError("feed() after close()")
        if not text:
            return []
        self._text.append(text)
        out: list[ParsedTask | PlanError] = []
        start = 0
        while True:
            nl = text.find("\n", start)
            piece = text[start:] if nl < 0 else text[start:nl]
            self._append(piece, out)
            if nl < 0:
                break
            self._end_line(out)
            start = nl + 1
        # A join() needs no newline after it: the model may stop right there. The
        # line stays open, so whatever follows on it is parsed with the whole line
        # (and the result cannot depend on where the stream was cut).
        if not self.joined and not self._overlong and 0 < self._buf_len <= 40:
            if _PARTIAL_JOIN.match("".join(self._buf)):
                self.joined = True
                self._thought = None
        # A call may have closed in this delta. The tries per line are bounded (so
        # the work stays linear); the newline or the line's overflow parses it anyway.
        if ")" in piece and self._call_end is None and self._tries < _EARLY_TRIES:
            self._tries += 1
            self._early("".join(self._buf), out)
        return out

    def close(self) -> list[ParsedTask | PlanError]:
        if self.closed:
            return []
        out: list[ParsedTask | PlanError] = []
        if self._buf_len or self._overlong:
            self._end_line(out)
        if not self.joined:
            self._record(PlanError(self._line + 1, None, INCOMPLETE,
                                   "the plan ended without join(); it may have been cut short"),
                         out)
        self.closed = True
        return out

    def reject(self, number: int) -> None:
        """Task `number` could not be dispatched after all: later refs to it are errors."""
        self.defined.discard(number)
        self.taken.discard(number)
        self.invalid.add(number)
        self.tasks = [t for t in self.tasks if t.number != number]

    # ------------------------------------------------------------ lines

    def _append(self, piece: str, out: list[ParsedTask | PlanError]) -> None:
        if self._overlong or not piece:
            return
        self._buf.append(piece)
        self._buf_len += len(piece)
        if self._buf_len > self.max_line:
            self._overlong = True
            line = "".join(self._buf)
            # A call that closed within max_line characters stands, however the line
            # was fed: the early parse may have missed it (its tries ran out).
            if self._call_end is None:
                self._early(line[: self.max_line], out)
            # The buffer holds at least max_line + 1 characters now, however it was fed.
            self._overlong_head = line[: min(80, self.max_line + 1)]
            if self._call_end is not None:
                self._overlong_head = line[self._call_end : self.max_line + 1][:80]
            self._buf, self._buf_len = [], 0

    def _end_line(self, out: list[ParsedTask | PlanError]) -> None:
        self._line += 1
        if self._call_end is not None:  # its call is out already: only its tail is left
            tail = self._overlong_head if self._overlong else "".join(self._buf)[self._call_end :]
            items = [self._tail(tail, tail if self._overlong else "".join(self._buf))]
        elif self._overlong:
            items = [self._overlong_line(self._overlong_head)]
        else:
            items = self._parse_line("".join(self._buf))
        self._buf, self._buf_len = [], 0
        self._overlong = False
        self._call_end = None
        self._tries = 0
        for item in items:
            if item is not None:
                self._record(item, out)

    def _record(self, item: ParsedTask | PlanError, out: list[ParsedTask | PlanError]) -> None:
        out.append(item)
        if isinstance(item, PlanError):
            self.errors.append(item)
        else:
            self.tasks.append(item)

    def _overlong_line(self, head: str) -> PlanError | None:
        m = _TASK_LINE.match(head)
        number = int(m.group(1)) if m else None
        body = m.group(2).strip() if m else head.strip()
        if self.joined or _JOIN.match(body):
            # The plan ended at this line or before it: what is long is after the plan.
            items = self._parse_line(head)
            return items[0] if items else None
        if number is not None:
            self.invalid.add(number)
        return self._err(number, TOO_LONG, f"line longer than {self.max_line} characters",
                         head + "...")

    def _err(self, task: int | None, kind: str, message: str, text: str,
             line: int | None = None) -> PlanError:
        return PlanError(self._line if line is None else line, task, kind, message,
                         text.strip()[:200])

    def _early(self, raw: str, out: list[ParsedTask | PlanError]) -> None:
        """Parse the open line's call if it is complete: the same task or error the
        whole line gives, since nothing after the call's `)` is part of it."""
        if self.joined:
            return
        line = raw.lstrip()
        if line.startswith("```") or _THOUGHT.match(line):
            return
        m = _TASK_LINE.match(line)
        if m is None or _JOIN.match(m.group(2).strip()):
            return
        body = m.group(2).lstrip()
        try:
            parsed = parse_call_prefix(body)
        except SyntaxProblem:
            return  # not complete yet, or wrong: the newline says which
        offset = len(raw) - len(line) + m.start(2) + (len(m.group(2)) - len(body))
        self._call_end = offset + parsed[3]
        head = raw[: self._call_end].strip()
        self._record(self._task(int(m.group(1)), parsed, head, self._line + 1), out)

    def _parse_line(self, raw: str) -> list[ParsedTask | PlanError | None]:
        line = raw.strip()
        if not line or line.startswith("```") or line == _END_MARK:
            return []
        if line.endswith(_END_MARK):
            line = line[: -len(_END_MARK)].rstrip()
        m = _THOUGHT.match(line)
        if m:
            self._thought = m.group(1).strip() or None
            return []
        m = _TASK_LINE.match(line)
        number = int(m.group(1)) if m else None
        body = m.group(2).strip() if m else line
        join = _JOIN.match(body)
        if join:
            # The plan ends at join() whatever follows it on the line: the early end
            # in feed() cannot know what follows, and both must agree.
            self.joined = True
            self._thought = None
            return [self._after_join(body[join.end() :].strip(), line)]
        if self.joined:
            return [self._after_join(line, line)]
        looks_like_call = _CALL_START.match(body) is not None
        if number is None:
            if looks_like_call:
                return [self._err(None, SYNTAX, "a call without a task number ('N. tool(...)')",
                                  line)]
            return [self._err(None, IGNORED, "not a task, a thought or join()", line)]
        try:
            parsed = parse_call_prefix(body)
        except SyntaxProblem as exc:
            self._thought = None
            if number in self.taken:
                return [self._err(number, DUPLICATE, f"task {number} is already defined", line)]
            self.invalid.add(number)
            return [self._err(number, SYNTAX, str(exc), line)]
        end = len(line) - len(body) + parsed[3]
        return [self._task(number, parsed, line[:end], self._line),
                self._tail(line[end:], line)]

    def _task(self, number: int, parsed: tuple[str, list[Any], dict[str, Any], int],
              line: str, at: int) -> ParsedTask | PlanError:
        """A task line whose call parsed -> its task, or why it is not one."""
        name, args, kwargs, _ = parsed
        thought, self._thought = self._thought, None
        if number in self.taken:
            return self._err(number, DUPLICATE, f"task {number} is already defined", line, at)
        problem = self._check(number, name, args, kwargs, line, at)
        if problem is not None:
            self.invalid.add(number)
            return problem
        if self.max_tasks is not None and len(self.tasks) >= self.max_tasks:
            self.invalid.add(number)
            return self._err(number, TOO_MANY, f"at most {self.max_tasks} tasks per plan",
                             line, at)
        tool = self.tools.get(name) if self.tools is not None else None
        if tool is not None:
            arguments = tool.bind(tuple(args), kwargs)
        else:
            arguments = {**{f"arg{i}": a for i, a in enumerate(args)}, **kwargs}
        refs = tuple(dict.fromkeys(refs_in(arguments)))
        self.defined.add(number)
        self.taken.add(number)
        self.invalid.discard(number)
        call = _TASK_LINE.match(line).group(2).strip()  # type: ignore[union-attr]
        return ParsedTask(number, name, arguments, refs, at, line, call, thought)

    def _tail(self, tail: str, line: str) -> PlanError | None:
        """What followed a task's call on its line: a comment or nothing is fine."""
        tail, line = tail.strip(), line.strip()
        if tail.endswith(_END_MARK):
            tail, line = tail[: -len(_END_MARK)].rstrip(), line[: -len(_END_MARK)].rstrip()
        if not tail or tail.startswith("#"):
            return None
        return self._err(None, IGNORED, f"text after the call was not run: {tail[:40]!r}",
                         line)

    def _after_join(self, text: str, line: str) -> PlanError | None:
        """Text after the plan: a call is reported (it was not run), prose is dropped."""
        m = _TASK_LINE.match(text)
        number = int(m.group(1)) if m else None
        body = m.group(2).strip() if m else text
        if _JOIN.match(body) or (number is None and not _CALL_START.match(body)):
            return None
        return self._err(number, AFTER_JOIN, "the plan ended at join(); this was not run", line)

    def _check(
        self, number: int, name: str, args: list[Any], kwargs: dict[str, Any], line: str,
        at: int,
    ) -> PlanError | None:
        if name == "join":
            return self._err(number, SYNTAX, "join takes no arguments: write 'N. join()'",
                             line, at)
        for r in refs_in([args, kwargs]):
            if r >= number and r not in self.defined:
                what = "itself" if r == number else f"the later task {r}"
                return self._err(number, FORWARD_REF, f"${r} refers to {what}", line, at)
            if r not in self.defined:
                why = "had an error" if r in self.invalid else "does not exist"
                return self._err(number, MISSING_REF, f"${r} refers to task {r}, which {why}",
                                 line, at)
        if self.tools is None:
            return None
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "none"
            return self._err(number, UNKNOWN_TOOL, f"no tool {name!r} (tools: {known})",
                             line, at)
        try:
            check_arguments(tool, args, kwargs)
        except ToolArgumentError as exc:
            return self._err(number, BAD_ARGUMENTS, str(exc), line, at)
        return None


def parse_plan(
    text: str, tools: Mapping[str, Tool] | None = None, **options: Any
) -> tuple[list[ParsedTask], list[PlanError], bool]:
    """Parse a whole plan at once: (tasks, errors, ended_with_join)."""
    parser = PlanParser(tools, **options)
    parser.feed(text)
    parser.close()
    return list(parser.tasks), list(parser.errors), parser.joined
