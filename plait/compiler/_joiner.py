"""The joiner: after a plan's tasks are done, finish with an answer or replan.

The decision is asked for as one line, `Finish: <answer>` or `Replan: <what is
missing>` (under a grammar where the backend takes one): the shortest reply that
says which. It is parsed robustly: that line anywhere in the text (after a
thought, say), JSON anywhere in the text, a cut-off JSON object, LLMCompiler's
`Action: Finish(...)` / `Action: Replan(...)`, and as a last resort the whole
text as the answer.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from plait.compiler._grammar import Chars, Grammar, Rep, Rule, alt, choice_grammar, seq
from plait.compiler._prompt import (
    FINISH,
    REPLAN,
    answer_choices,
    grounded_messages,
    joiner_messages,
    show_value,
)
from plait.compiler._planner import Planner, PlanStream
from plait.compiler._records import Decided, Decision, JoinerStarted, PlanRecord
from plait.compiler._session import Session
from plait.llm import LLM, LLMTruncated, Message
from plait.llm._protocol import build_request

_FIELD = r'"{name}"\s*:\s*"((?:[^"\\]|\\.)*)'
_LINE = re.compile(r"^[ \t]*(?:Action\s*:\s*)?(Finish|Replan)[ \t]*:[ \t]*(.*)", re.I | re.M | re.S)
_HEAD = re.compile(r"^[ \t]*(?:Action\s*:\s*)?(Finish|Replan)[ \t]*:", re.I | re.M)
MAX_ANSWER = 300  # characters of a constrained reply
_ACTION_TEXT = re.compile(r"Action\s*:\s*(Finish|Replan)\s*\((.*)\)?\s*$", re.I | re.S)
_THOUGHT_TEXT = re.compile(r"Thought\s*:\s*(.*?)(?:\n|$)", re.I)
GROUNDED_PREFIX = "Answer: "  # a grounded joiner's reply: this, then its choice
_ANSWER_KEYS = ("answer", "final_answer", "result", "response", "reason", "text")


def parse_decision(text: str, *, may_replan: bool = True) -> Decision:
    """The joiner's reply -> a Decision. Never raises."""
    raw = text
    text = text.strip()
    if text.startswith(GROUNDED_PREFIX):  # a grounded joiner's choice
        return Decision("finish", read_choice(text), "", raw)
    line = _LINE.search(text)
    data = _json_object(text) if line is None else None
    action, answer, thought = "finish", None, ""
    if line is not None:
        action, answer = line.group(1).lower(), line.group(2)
        if action == "replan":  # its line; a plan may follow it
            answer = answer.split("\n", 1)[0]
        answer = answer.strip() or None
        t = _THOUGHT_TEXT.search(text[: line.start()])
        thought = t.group(1).strip() if t else ""
    elif data is not None:
        action = str(data.get("action", "finish")).strip().lower()
        for key in _ANSWER_KEYS:
            if isinstance(data.get(key), (str, int, float)) and str(data[key]).strip():
                answer = str(data[key]).strip()
                break
        thought = str(data.get("thought", "") or "")
    else:
        m = _ACTION_TEXT.search(text)
        if m:
            action = m.group(1).lower()
            answer = m.group(2).strip().rstrip(")").strip().strip("\"'") or None
            t = _THOUGHT_TEXT.search(text)
            thought = t.group(1).strip() if t else ""
        else:
            # A cut-off JSON object: take the fields that made it.
            a = re.search(_FIELD.format(name="action"), text)
            if a:
                action = a.group(1).lower()
            for key in _ANSWER_KEYS:
                f = re.search(_FIELD.format(name=key), text)
                if f:
                    answer = _unescape(f.group(1)).strip() or None
                    break
            t = re.search(_FIELD.format(name="thought"), text)
            thought = _unescape(t.group(1)) if t else ""
            if answer is None and a is None and not text.startswith("{"):
                answer = text or None
    if action not in ("finish", "replan"):
        action = "replan" if action.startswith("replan") else "finish"
    if action == "replan" and not may_replan:
        action = "finish"
    if answer is None:
        answer = "" if action == "finish" else "the results were not enough"
    return Decision(action, answer, thought.strip(), raw)


def replan_plan(text: str) -> str | None:
    """The plan a `Replan:` reply carries after its line (None: not a replan, or
    nothing after the line yet)."""
    m = _HEAD.search(text)
    if m is None or m.group(1).lower() != "replan":
        return None
    nl = text.find("\n", m.end())
    return None if nl < 0 else text[nl + 1 :]


def decision_grammar(may_replan: bool, plan: Grammar | None = None) -> str:
    """GBNF for the joiner's line: `Finish: ` (or `Replan: `) and a one-line text;
    with `plan` (a plan grammar), a replan's line is followed by its plan."""
    return decision_grammar_tree(may_replan, plan).render()


def decision_grammar_tree(may_replan: bool, plan: Grammar | None = None) -> Grammar:
    g = Grammar()
    line = Rep(Chars("\n", negated=True), 1, MAX_ANSWER)
    if not may_replan:
        g.define("root", seq(FINISH, line))
    elif plan is None:
        g.define("root", seq(alt(FINISH, REPLAN), line))
    else:
        g.define("root", alt(seq(FINISH, line), seq(REPLAN, line, "\n", Rule("plan"))))
        rules = dict(plan.rules)
        g.define("plan", rules.pop("root"))
        for name, expr in rules.items():
            g.define(name, expr)
    return g


def _shared(a: list[Message], b: list[Message]) -> list[Message]:
    """The messages `a` and `b` begin with, the last one cut where they part."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            if x.role != y.role:
                return a[:i]
            n = next((k for k, (p, q) in enumerate(zip(x.content, y.content, strict=False))
                      if p != q), min(len(x.content), len(y.content)))
            return [*a[:i], Message(x.role, x.content[:n])]
    return a


def _json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text` (bounded work: at most 50 tries)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    tries = 0
    while start >= 0 and tries < 50:
        tries += 1
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            pass
        else:
            if isinstance(value, dict):
                return value
        start = text.find("{", start + 1)
    return None


def _unescape(s: str) -> str:
    try:
        return json.loads(f'"{s}"')
    except ValueError:
        return s.replace('\\"', '"')


_RANKED = re.compile(r"^(?:Highest|Lowest|Latest|Earliest): (.*) \([^()]*\)$")
_DERIVED = re.compile(r"^(?:Difference|Sum): (.*)$")


def read_choice(text: str) -> str:
    """The answer a grounded choice gives, from its text alone (as the journal holds
    it): `Answer: Highest: Mount Everest (8849)` -> `Mount Everest`."""
    said = text.strip().removeprefix(GROUNDED_PREFIX.strip()).strip()
    m = _RANKED.match(said) or _DERIVED.match(said)
    return m.group(1) if m else said


def parse_grounded(text: str, choices: dict[str, str]) -> Decision:
    """A grounded joiner's reply (`Answer: <one of the choices>`) -> a Decision
    whose answer is what that choice gives."""
    said = text.strip().removeprefix(GROUNDED_PREFIX.strip()).strip()
    if said not in choices:  # a backend that did not take the grammar
        said = next((c for c in choices if c in said), said)
    return Decision("finish", choices.get(said, read_choice(said)), "", text)


class Joiner:
    """A reply cut at `max_tokens` is never read as a decision: its answer may be cut
    mid-word. It is asked for once more with twice the tokens, then it is an error
    (unless it had begun a plan: what that dispatched stands, as a cut plan's does).

    With a `planner`, a replan is written in the decision's own reply, after its
    `Replan:` line, streamed through the planner's `PlanStream` (its tasks are
    dispatched as they come), and left in `plan` for the next round: a replan
    round costs one LLM call, not a joiner's and a planner's.

    `grounded` (for small models): the answer is one of the choices the results
    give (the highest or lowest of several numbers, their difference or sum, a
    result, a name a call was made with), chosen under a grammar, with
    the closest worked `examples` as earlier turns; a plan with a failed call is
    replanned without asking (once per plan), since a small model cannot tell
    whether the answer needed it."""

    def __init__(self, session: Session, *, max_tokens: int | None = 200,
                 grounded: bool = False, examples: list[str] | None = None,
                 planner: Planner | None = None) -> None:
        self.session = session
        self.max_tokens = max_tokens
        self.grounded = grounded
        self.examples = examples or []
        self.planner = None if grounded else planner
        self.plan: PlanRecord | None = None  # the replan the last decision wrote

    async def settle(self, question: str, *, may_replan: bool) -> None:
        """Wait for the dispatched tasks. Meanwhile the model, idle, is handed what
        the joiner's prompt will begin with (system, question, examples and the
        results in task order up to the first unfinished one), to evaluate it into
        its cache (`LLM.warm`: only the in-process model does; its output is the
        same warmed or not)."""
        s = self.session
        if s.llm is None:
            await s.settle()
            return
        changed = asyncio.Event()
        warming = asyncio.create_task(self._warm(s.llm, question, may_replan, changed))
        try:
            await s.settle(on_outcome=changed.set)
        finally:
            warming.cancel()  # the joiner's call comes now: warming stops mid-chunk
            await asyncio.wait({warming})
            if not warming.cancelled():
                warming.exception()  # retrieved: a warming error only cost the time it took

    async def _warm(self, llm: LLM, question: str, may_replan: bool,
                    changed: asyncio.Event) -> None:
        warmed: list[Message] = []
        while True:
            changed.clear()
            # Two renderings with different stand-ins for the unfinished results:
            # what they share does not depend on those results.
            a = self._messages(question, may_replan, (True, "\x01"))
            b = self._messages(question, may_replan, (True, "\x02"))
            known = _shared(a, b)
            if known and known != warmed:
                warmed = known
                await llm.warm(build_request(known, role="joiner"))
            await changed.wait()

    def _messages(self, question: str, may_replan: bool,
                  unfinished: tuple[bool, Any] = (False, "not finished")) -> list[Message]:
        """The joiner's prompt (the grounded one as if asked)."""
        s = self.session
        shown = s.shown(unfinished)
        if self.grounded:
            return grounded_messages(question, shown, list(s.tools.values()), self.examples)
        planner = self.planner if may_replan else None
        return joiner_messages(
            question, shown, may_replan=may_replan,
            tools=list(s.tools.values()) if planner is not None else (),
            first=s.next_number, max_tasks=planner.max_tasks if planner is not None else 9)

    async def decide(self, question: str, *, round: int, may_replan: bool) -> Decision:
        s = self.session
        self.plan = None
        s.send(JoinerStarted, round)
        if self.grounded:
            decision = await self._grounded(question, round, may_replan)
        else:
            planner = self.planner if may_replan else None
            messages = self._messages(question, may_replan)
            text = await self._reply(messages, may_replan, planner, round)
            decision = parse_decision(text, may_replan=may_replan)
        s.decisions.append(decision)
        s.send(Decided, decision)
        return decision

    async def _grounded(self, question: str, round: int, may_replan: bool) -> Decision:
        s = self.session
        shown = s.shown()
        latest = {n for n, e in s.entries.items() if e.round == round}
        failed = [x for x in shown if x.number in latest and (x.error is not None or not x.done)]
        choices = answer_choices(shown)
        if (failed and may_replan) or not choices:
            why = "; ".join(f"{x.call} failed: {show_value(x.error or 'did not run', 120)}"
                            for x in failed) or "no call gave a result"
            return Decision("replan" if may_replan else "finish",
                            why if may_replan else "", "", "")
        messages = self._messages(question, may_replan)
        grammar = choice_grammar(GROUNDED_PREFIX, list(choices))
        # The grammar bounds the reply: room for the longest choice, never cut.
        bound = len(GROUNDED_PREFIX) + max(len(c) for c in choices) + 8
        text, _ = await s.complete("joiner", messages, grammar=grammar, max_tokens=bound)
        return parse_grounded(text, choices)

    async def _reply(self, messages: list[Message], may_replan: bool,
                     planner: Planner | None, round: int) -> str:
        s = self.session
        max_tokens = self.max_tokens
        tree = planner.grammar_tree() if planner is not None else None
        if tree is not None and max_tokens is not None:
            # Room for the plan: what the planner may write, and the grammar's bound.
            max_tokens += max(planner.max_tokens or 0, tree.max_len())  # type: ignore[union-attr]
        grammar = decision_grammar(may_replan, tree)
        for attempt in range(2):
            stream: list[PlanStream] = []
            seen: list[str] = []
            started = time.perf_counter()

            def on_delta(delta: str) -> bool:
                if stream:
                    return stream[0].feed(delta)
                seen.append(delta)
                if planner is None or "\n" not in delta:
                    return False
                plan = replan_plan("".join(seen))
                if plan is None:
                    return False
                stream.append(planner.open("replan", round + 1, writer="joiner",
                                           started=started))
                return stream[0].feed(plan) if plan else False

            text, constrained = await s.complete("joiner", messages, grammar=grammar,
                                                 max_tokens=max_tokens, on_delta=on_delta)
            if stream:  # its tasks are out: this reply is the one, cut or not
                plan = stream[0].close(replan_plan(text) or "", constrained)
                if plan.tasks or any(e.repairable for e in plan.errors):
                    self.plan = plan  # else the planner is asked, as for a bare `Replan:`
                return text
            if not s.last_call.truncated:
                return text
            if max_tokens is None:  # the server's own limit: more of the same cannot help
                break
            if attempt == 0:
                max_tokens *= 2
        raise LLMTruncated(
            f"the joiner's reply from {s.model} was cut (finish_reason "
            f"{s.last_call.finish_reason!r}) at max_tokens={max_tokens}, so its answer may be "
            f"cut too: pass a larger joiner_max_tokens; it began {text[:120]!r}")
