"""What `ask` returns and what it reports while it works: frozen records and events.

Times in records are seconds since the question started. Event timestamps `t`
are `time.perf_counter()` seconds, like the engine's events, so a listener can
mix both kinds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plait.compiler._parser import PlanError
from plait.llm._protocol import TRUNCATED

# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class TaskResult:
    """One task of a plan (or one ReAct action) and how it ran."""

    number: int
    tool: str
    call: str  # as written in the plan, e.g. `search("K2")`
    refs: tuple[int, ...]  # task numbers it used
    plan: int  # index into Answer.plans of the plan that wrote it
    node: int  # its node in the run
    state: str  # done | failed | skipped | cancelled | pending
    value: Any
    error: str | None
    parsed_at: float  # its line was complete (and it was dispatched)
    started_at: float | None  # an adopted guess: when the guess started
    finished_at: float | None
    # Its call was guessed and the guess adopted (see ask's `speculate`): when the
    # guess existed, that is when it started. None: it ran the normal way.
    predicted_at: float | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True)
class PlanRecord:
    """One planner call: a plan, a repair of one, a replan, one ReAct step, or one
    function-calling step (its text: the reply's text, then a line per tool call)."""

    index: int
    round: int  # 0 for the first plan, 1 after the first replan, ...
    kind: str  # plan | repair | replan | react | tools
    text: str
    tasks: tuple[int, ...]  # numbers of the tasks it dispatched
    errors: tuple[PlanError, ...]
    joined: bool  # it ended with join()
    constrained: bool  # it was written under the plan grammar
    started_at: float
    first_token_at: float | None
    finished_at: float
    # The LLM call that wrote it: the planner, or the joiner (a replan written in
    # its decision's reply, after its `Replan:` line; timed from that call's start).
    writer: str = "planner"


@dataclass(frozen=True, slots=True)
class LLMCall:
    role: str  # planner | joiner | react | caller
    prompt_tokens: int
    completion_tokens: int
    started_at: float
    first_token_at: float | None
    finished_at: float
    estimated: bool = False  # the backend reported no counts; about 4 characters a token
    replayed: bool = False  # from the journal (a resumed run): its tokens were paid before
    finish_reason: str | None = None  # why the reply ended, as the backend said; None: unknown

    @property
    def duration(self) -> float:
        return self.finished_at - self.started_at

    @property
    def truncated(self) -> bool:
        """The reply was cut (at max_tokens, or by a filter) before the model ended it."""
        return self.finish_reason in TRUNCATED


@dataclass(frozen=True, slots=True)
class Decision:
    """The joiner's verdict: finish with `answer`, or replan because of `answer`."""

    action: str  # finish | replan
    answer: str
    thought: str = ""
    raw: str = ""


@dataclass(frozen=True, slots=True)
class SpeculationStats:
    """What speculation did for one question (`ask(..., speculate=...)`).

    hits            tasks that adopted a guessed call (it had started before its line)
    misses          tasks of read-only tools that had no guess to adopt
    wasted          guesses started and never adopted (cancelled at their plan's end)
    wasted_seconds  tool time those guesses took
    """

    speculator: str
    started: int
    hits: int
    misses: int
    wasted: int
    wasted_seconds: float
    budget: int
    draft_tokens: int = 0


@dataclass(frozen=True)
class Answer:
    """The result of `ask`: the answer, every plan, every task, tokens and timings."""

    question: str
    text: str
    mode: str  # compiler | react | tools
    model: str
    plans: tuple[PlanRecord, ...]
    tasks: tuple[TaskResult, ...]
    decisions: tuple[Decision, ...]
    llm_calls: tuple[LLMCall, ...]
    unresolved: tuple[PlanError, ...]  # plan errors no repair fixed: those calls never ran
    elapsed: float
    run_id: str
    speculation: SpeculationStats | None = None  # None: asked without speculation

    def __str__(self) -> str:
        return self.text

    @property
    def prompt_tokens(self) -> int:
        return sum(c.prompt_tokens for c in self.llm_calls)

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.llm_calls)

    @property
    def tokens(self) -> int:
        """Prompt plus completion tokens over every LLM call."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def errors(self) -> tuple[PlanError, ...]:
        """Every plan error, repaired or not."""
        return tuple(e for p in self.plans for e in p.errors)

    @property
    def truncated(self) -> bool:
        """The reply that wrote `text` was cut. `ask` never returns such an answer (a
        cut joiner reply is asked for again, then raises `LLMTruncated`), so this is
        the check for answers built by hand or read back."""
        return bool(self.llm_calls) and self.llm_calls[-1].truncated

    @property
    def replans(self) -> int:
        return sum(1 for p in self.plans if p.kind == "replan")

    def task(self, number: int) -> TaskResult:
        for t in self.tasks:
            if t.number == number:
                return t
        raise KeyError(number)

    def critical_path_bound(self) -> float:
        """The shortest this answer could have taken with zero runtime overhead.

        LLM calls of one question run one after another; a task can start no
        sooner than its plan line was written (measured from its planner call's
        start) and its inputs were done; the joiner starts when its round's plan
        is written and every task is done. Durations are the measured ones.
        """
        return _critical_path_bound(self)

    def speculation_bound(self) -> float:
        """`critical_path_bound`, but a task whose guess was adopted may start as
        soon as its guess existed: the shortest this answer could have taken with
        the guesses it had and zero runtime overhead. Below the critical-path
        bound by what speculation can win."""
        return _critical_path_bound(self, speculative=True)


def _critical_path_bound(answer: Answer, speculative: bool = False) -> float:
    done_at: dict[int, float] = {}  # task number -> bound on its finish
    by_plan: dict[int, list[TaskResult]] = {}
    for t in answer.tasks:
        by_plan.setdefault(t.plan, []).append(t)
    joiner_calls = [c for c in answer.llm_calls if c.role == "joiner"]
    now = 0.0
    if answer.mode == "react":
        for p in answer.plans:
            now += p.finished_at - p.started_at
            for t in by_plan.get(p.index, ()):
                now += t.duration or 0.0
        return now
    if answer.mode == "tools":  # a step's calls run side by side, after its reply
        for p in answer.plans:
            now += p.finished_at - p.started_at
            now += max((t.duration or 0.0 for t in by_plan.get(p.index, ())), default=0.0)
        return now
    rounds = sorted({p.round for p in answer.plans})
    for r in rounds:
        ready = now  # the end of the planner calls so far in this round
        for p in (p for p in answer.plans if p.round == r):
            start = ready
            if p.writer == "joiner" and 0 < r <= len(joiner_calls):
                # Written by the last round's joiner call, counted there whole: its
                # tasks start as its lines are written, from that call's start.
                start = now - joiner_calls[r - 1].duration
            for t in sorted(by_plan.get(p.index, ()), key=lambda t: t.parsed_at):
                line = start + (t.parsed_at - p.started_at)
                if speculative and t.predicted_at is not None:
                    # The guess started at predicted_at (seconds since the question
                    # began); on this path's clock, as much before the line.
                    line -= max(0.0, t.parsed_at - t.predicted_at)
                begin = max([line] + [done_at.get(n, 0.0) for n in t.refs])
                done_at[t.number] = begin + (t.duration or 0.0)
            ready = max(ready, start + (p.finished_at - p.started_at))
        round_tasks = [done_at[t.number] for p in answer.plans if p.round == r
                       for t in by_plan.get(p.index, ())]
        now = max([ready] + round_tasks)
        if r < len(joiner_calls):
            now += joiner_calls[r].duration
    return now


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class CompilerEvent:
    t: float  # perf_counter seconds


@dataclass(frozen=True, slots=True)
class PlanStarted(CompilerEvent):
    plan: int
    kind: str  # plan | repair | replan | react | tools
    round: int


@dataclass(frozen=True, slots=True)
class PlanText(CompilerEvent):
    """A delta of the planner's text, as it streams."""

    plan: int
    text: str


@dataclass(frozen=True, slots=True)
class TaskDispatched(CompilerEvent):
    number: int
    tool: str
    call: str
    node: int
    refs: tuple[int, ...]
    guessed: bool = False  # its node is a speculative guess, adopted (ask's `speculate`)


@dataclass(frozen=True, slots=True)
class GuessStarted(CompilerEvent):
    """A speculative guess started (ask's `speculate`): `call` as a plan would write it."""

    call: str


@dataclass(frozen=True, slots=True)
class PlanProblem(CompilerEvent):
    error: PlanError


@dataclass(frozen=True, slots=True)
class PlanFinished(CompilerEvent):
    plan: int
    tasks: int
    errors: int


@dataclass(frozen=True, slots=True)
class JoinerStarted(CompilerEvent):
    round: int


@dataclass(frozen=True, slots=True)
class Decided(CompilerEvent):
    decision: Decision
