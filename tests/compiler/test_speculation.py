"""Verified speculation of plan lines: the answer is the same with it on or off.

The model is plait's simulated backend (`SimLLM`) with scripted planner and
joiner replies; tools are real async functions whose latency depends on the
call. Each tool records whether it ran as a node or as a speculative call (the
engine's node context: a speculative call has a negative id).
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import plait
from plait.runtime._engine import _current_node
from plait.compiler import Answer, aask
from plait.compiler._speculate import Context, Siblings, question_lists
from plait.journal import open_journal
from plait.llm import Message, SimLLM


def essence(a: Answer) -> tuple[Any, ...]:
    """What must not change with speculation: text, plans, every task's call and
    value (or error), decisions."""
    return (a.text, [(p.kind, p.round, p.text, p.tasks, p.errors, p.joined) for p in a.plans],
            [(t.number, t.tool, t.call, t.refs, t.plan, t.state, t.value, t.error)
             for t in a.tasks], a.decisions, a.unresolved)


class Ledger:
    """Every tool call that started: (tool, argument, as a node?)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bool]] = []

    def note(self, tool: str, arg: str) -> bool:
        current = _current_node.get()
        as_node = current is not None and current[1] >= 0
        self.calls.append((tool, arg, as_node))
        return as_node

    def count(self, tool: str, arg: str | None = None) -> int:
        return sum(1 for t, a, _ in self.calls if t == tool and arg in (None, a))


def delay(arg: str, lo: float = 0.02, hi: float = 0.08) -> float:
    return lo + (hi - lo) * (zlib.crc32(arg.encode()) % 1000) / 1000


def make_tools(ledger: Ledger, *, fail_guess: set[str] | frozenset[str] = frozenset(),
               slow: float | None = None, retries: int = 0) -> list[plait.Tool]:
    @plait.tool(speculate=True, retries=retries, backoff=0.0)
    async def search(entity: str) -> str:
        """The entry about `entity`."""
        as_node = ledger.note("search", entity)
        await asyncio.sleep(slow if slow is not None else delay(entity))
        if entity in fail_guess and not as_node:
            raise RuntimeError(f"flaky guess {entity}")
        return f"{entity}: {len(entity) * 37} m"

    @plait.tool(retries=retries, backoff=0.0)
    async def note(text: str) -> str:
        """Write `text` down (a side effect: never run unasked)."""
        ledger.note("note", text)
        await asyncio.sleep(0.01)
        return f"noted {text}"

    return [search, note]


def model(plans: Sequence[str], answers: Sequence[str], *, ttft: float = 0.01,
          tps: float = 300.0) -> SimLLM:
    counts = Counter[str]()

    def script(messages: Sequence[Message], role: str | None) -> str:
        k = counts[role or ""]
        counts[role or ""] += 1
        if role == "planner":
            return plans[min(k, len(plans) - 1)]
        return answers[min(k, len(answers) - 1)]

    return SimLLM(script, ttft=ttft, tps=tps)


NAMES = ["Mount Arvel", "Kessa Peak", "The Silent Harbor", "Lo Tower", "Quaith", "Norgal Hill",
         "Brewen", "Ostrin Falls"]


def listing(names: Sequence[str]) -> str:
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]


async def both(question: str, plan: str, speculate: Any, **options: Any
               ) -> tuple[Answer, Answer, Ledger, Ledger]:
    off_ledger, on_ledger = Ledger(), Ledger()
    off = await aask(question, make_tools(off_ledger), model=model([plan], ["Finish: ok"]),
                     examples=[], **options)
    on = await aask(question, make_tools(on_ledger), model=model([plan], ["Finish: ok"]),
                    examples=[], speculate=speculate, **options)
    return off, on, off_ledger, on_ledger


# ---------------------------------------------------------------- the lists


def test_question_lists_find_names_after_a_lead_in_and_options() -> None:
    q = ("Find a movie similar to The Crown River, Glass Empire and Last Winter. "
         "Options: (A) The Paper Crown, (B) Hidden Orchard.")
    assert question_lists(q) == (("The Crown River", "Glass Empire", "Last Winter"),
                                 ("The Paper Crown", "Hidden Orchard"))
    assert question_lists("What is the combined height of Foo Tower, Bar Tower or Baz?") == (
        ("Foo Tower", "Bar Tower", "Baz"),)
    assert question_lists("How tall is K2?") == ()


def test_siblings_guess_from_an_open_argument_that_begins_one_item_alone() -> None:
    calls: list[plait.Tool] = make_tools(Ledger())
    tools = {t.name: t for t in calls}

    @plait.tool(speculate=True)
    def lookup(entity: str, field: str) -> str:
        """A field of `entity`."""
        return ""

    tools["lookup"] = lookup
    q = "Which is taller: The Silent Harbor, The Silent Hill or Kessa Peak?"

    def guesses(partial: str) -> list[str]:
        ctx = Context(q, tools, (), partial=partial)
        return [f"{c.tool}:{c.arguments}" for c in Siblings().propose(ctx)]

    harbor = ["search:{'entity': 'The Silent Harbor'}", "search:{'entity': 'The Silent Hill'}",
              "search:{'entity': 'Kessa Peak'}"]
    assert guesses('1. search("The Silent H') == []  # two items begin so
    assert guesses('1. search("The Silent Ha') == harbor  # the item itself first
    assert guesses('2. search(entity="The Silent Ha') == harbor
    assert guesses('1. search("Kessa')[0] == "search:{'entity': 'Kessa Peak'}"
    assert guesses('1. search("Mount') == []  # no item begins so
    assert guesses('1. search("The Silent Harbor"') == []  # closed: the parser's to say
    assert guesses('1. lookup("Kessa') == []  # the other argument is not known yet


async def test_an_open_argument_that_ends_otherwise_wastes_its_guess() -> None:
    q = "Which is taller: Mount Arvel or Kessa Peak?"
    plan = '1. search("Mount Arvelino")\n2. join()'
    off, on, _, ledger = await both(q, plan, "siblings")
    assert essence(on) == essence(off)
    sp = on.speculation
    assert sp is not None and sp.hits == 0 and sp.wasted >= 1 and sp.misses == 1
    assert ledger.count("search", "Mount Arvelino") == 1


# ---------------------------------------------------------------- equivalence


async def test_siblings_start_the_other_items_and_the_answer_is_the_same() -> None:
    names = NAMES[:5]
    plan = "\n".join(f'{k}. search("{n}")' for k, n in enumerate(names, 1)) + "\n6. join()"
    off, on, _, ledger = await both(f"Which is tallest: {listing(names)}?", plan, "siblings")
    assert essence(on) == essence(off)
    sp = on.speculation
    assert sp is not None and off.speculation is None
    # Every line guessed: the first one too, from its open argument ("Mount).
    assert (sp.hits, sp.wasted, sp.misses) == (5, 0, 0)
    assert ledger.count("search") == 5  # each call ran once: the guesses became the tasks
    guessed = [t for t in on.tasks if t.predicted_at is not None]
    assert len(guessed) == 5 and all(t.predicted_at < t.parsed_at for t in guessed)
    assert on.speculation_bound() <= on.critical_path_bound()


async def test_many_questions_draft_and_siblings_give_identical_answers() -> None:
    rng = random.Random(7)
    for i in range(8):
        names = rng.sample(NAMES, rng.randint(2, 5))
        order = names[:]
        rng.shuffle(order)
        lines = [f'{k}. search("{n}")' for k, n in enumerate(order, 1)]
        if rng.random() < 0.5:
            lines.append(f'{len(lines) + 1}. note("${{1}} and {order[-1]}")')
        plan = "\n".join(lines + [f"{len(lines) + 1}. join()"])
        # A draft that gets about half its lines right, and guesses a side effect too.
        wrong = [f'{k}. search("{n} {i}")' if rng.random() < 0.5 else line
                 for k, (n, line) in enumerate(zip(order, lines), 1)]
        draft_text = "\n".join(wrong + [f'{len(wrong) + 1}. note("{order[0]}")', "9. join()"])
        question = f"Which is tallest: {listing(names)}?"
        for speculate in ("siblings",
                          plait.draft(SimLLM(draft_text, ttft=0.0, tps=2000))):
            off, on, off_ledger, on_ledger = await both(question, plan, speculate)
            assert essence(on) == essence(off), (i, speculate)
            assert on_ledger.count("note") == off_ledger.count("note")
            assert all(as_node for t, _, as_node in on_ledger.calls if t == "note")


# ---------------------------------------------------------------- the gate


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    picks=st.lists(st.tuples(st.sampled_from(["search", "note"]), st.integers(0, 5)),
                   min_size=1, max_size=5),
    guesses=st.lists(st.tuples(st.sampled_from(["search", "note"]), st.integers(0, 7)),
                     max_size=6),
    cut=st.integers(0, 40),
    retries=st.integers(0, 1),
    cancel_after=st.one_of(st.none(), st.floats(0.0, 0.15)),
    resume=st.booleans(),
)
def test_no_tool_without_speculate_ever_starts_speculatively(
    picks: list[tuple[str, int]], guesses: list[tuple[str, int]], cut: int, retries: int,
    cancel_after: float | None, resume: bool, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Random plans, random draft guesses (cut anywhere), retries, a question
    cancelled midway and resumed from its journal: `note` (not read-only) only
    ever runs as a node, and as often as it would without speculation."""
    names = NAMES[:6]
    lines = [f'{k}. {tool}("{names[n]}")' for k, (tool, n) in enumerate(picks, 1)]
    plan = "\n".join(lines + [f"{len(lines) + 1}. join()"])
    draft_text = "\n".join(f'{k}. {tool}("{NAMES[n]}")'
                           for k, (tool, n) in enumerate(guesses, 1))[:cut + 20]
    question = f"Compare {listing(names)}."
    journal = str(tmp_path_factory.mktemp("spec") / "runs.db")

    async def go() -> Ledger:
        ledger = Ledger()
        for speculate in ("siblings", plait.draft(SimLLM(draft_text or "x", ttft=0.0,
                                                         tps=3000))):
            tools = make_tools(ledger, retries=retries, fail_guess={names[0]})
            run_id = f"q{len(ledger.calls)}-{speculate if isinstance(speculate, str) else 'd'}"
            ask = aask(question, tools, model=model([plan], ["Finish: ok"], tps=400),
                       examples=[], speculate=speculate, journal=journal, run_id=run_id)
            if cancel_after is not None:
                try:
                    await asyncio.wait_for(ask, cancel_after)
                except TimeoutError:
                    pass
                if resume:
                    await aask(question, tools, model=model([plan], ["Finish: ok"], tps=400),
                               examples=[], speculate=speculate, journal=journal,
                               run_id=run_id, allow_rerun=True)
            else:
                await ask
        return ledger

    ledger = asyncio.run(go())
    assert all(as_node for tool, _, as_node in ledger.calls if tool == "note"), ledger.calls


async def test_the_engine_refuses_to_speculate_a_tool_without_the_flag() -> None:
    ledger = Ledger()
    search, note = make_tools(ledger)
    run = plait.runtime._engine.Run()

    async def body() -> None:
        assert run.speculate(note, {"text": "x"}) is None
        guess = run.speculate(search, {"entity": "x"})
        assert guess is not None
        assert await run.submit(search, {"entity": "x"}, adopt=guess) == "x: 37 m"

    await run.execute(body)
    assert ledger.calls == [("search", "x", False)]  # one call, the guess, adopted


# ---------------------------------------------------------------- adoption and the journal


async def test_an_adopted_guess_is_journaled_as_its_task_and_replayed(tmp_path) -> None:
    journal = str(tmp_path / "runs.db")
    names = NAMES[:4]
    plan = "\n".join(f'{k}. search("{n}")' for k, n in enumerate(names, 1)) + "\n5. join()"
    question = f"Which is tallest: {listing(names)}?"
    ledger = Ledger()
    first = await aask(question, make_tools(ledger), model=model([plan], ["Finish: ok"]),
                       examples=[], speculate="siblings", journal=journal, run_id="r1")
    assert first.speculation is not None and first.speculation.hits == 4  # line 1 too
    j = open_journal(journal)
    try:
        state = j.load("r1")
    finally:
        j.close()
    searches = [r for r in state.results.values() if r.tool == "search"]
    # Four tasks, four intents and results: the adopted guesses exactly like the other.
    assert sorted(r.value for r in searches) == sorted(t.value for t in first.tasks)
    assert len([i for i in state.intents.values() if i.tool == "search"]) == 4
    again = await aask(question, make_tools(ledger), model=model([plan], ["Finish: ok"]),
                       examples=[], speculate="siblings", journal=journal, run_id="r1",
                       allow_rerun=True)
    assert essence(again) == essence(first)
    assert ledger.count("search") == 4  # nothing ran again: replayed


async def test_a_failed_guess_is_not_adopted_and_the_task_runs_normally() -> None:
    names = NAMES[:3]
    plan = "\n".join(f'{k}. search("{n}")' for k, n in enumerate(names, 1)) + "\n4. join()"
    question = f"Which is tallest: {listing(names)}?"
    off_ledger, on_ledger = Ledger(), Ledger()
    off = await aask(question, make_tools(off_ledger), model=model([plan], ["Finish: ok"]),
                     examples=[])
    # Guesses take 0.3 s then fail for names[1]: the line for it comes first, so it
    # adopts a guess that then fails; the task runs the tool itself.
    on = await aask(question, make_tools(on_ledger, fail_guess={names[1]}, slow=0.3),
                    model=model([plan], ["Finish: ok"]), examples=[], speculate="siblings")
    assert essence(on) == essence(off)
    assert on_ledger.count("search", names[1]) == 2  # the failed guess, then the task
    assert [c for c in on_ledger.calls if c[1] == names[1]] == [
        ("search", names[1], False), ("search", names[1], True)]
    assert on.task(2).state == "done" and on.task(2).predicted_at is None


async def test_the_budget_caps_the_guesses() -> None:
    names = NAMES[:6]
    plan = "\n".join(f'{k}. search("{n}")' for k, n in enumerate(names, 1)) + "\n7. join()"
    off, on, _, ledger = await both(f"Which is tallest: {listing(names)}?", plan, "siblings",
                                    speculate_budget=2)
    assert essence(on) == essence(off)
    assert on.speculation is not None and on.speculation.started == 2
    assert ledger.count("search") - len([c for c in ledger.calls if c[2]]) == 2


async def test_a_ready_task_takes_the_slot_of_a_guess_at_once() -> None:
    """Three slots: the planner's call, task 1, one guess. Task 2 (not the guessed
    call) needs a slot: it preempts the guess and starts at its line."""
    names = ["Arvel", "Kessa", "Lo"]
    plan = '1. search("Arvel")\n2. search("Lo")\n3. search("Kessa")\n4. join()'
    question = f"Which is tallest: {listing(names)}?"
    ledger = Ledger()
    on = await aask(question, make_tools(ledger, slow=0.3), examples=[],
                    model=model([plan], ["Finish: ok"], tps=20), speculate="siblings",
                    max_concurrency=3, speculate_budget=1)
    sp = on.speculation
    assert sp is not None and sp.started == 1 and sp.wasted == 1 and sp.hits == 0
    assert ledger.calls[1] == ("search", "Kessa", False)  # the guess, preempted by task 2
    t2 = on.task(2)
    assert t2.started_at is not None and t2.started_at - t2.parsed_at < 0.03
    off, _, _, _ = await both(question, plan, None, max_concurrency=3)
    assert essence(on) == essence(off)


async def test_question_templates_guess_before_the_first_line() -> None:
    names = NAMES[:3]
    plan = "\n".join(f'{k}. search("{n}")' for k, n in enumerate(names, 1)) + "\n4. join()"
    off, on, _, _ = await both(f"Which is tallest: {listing(names)}?", plan,
                               plait.question('search("{}")'))
    assert essence(on) == essence(off)
    assert on.speculation is not None and on.speculation.hits == 3
    assert all(t.predicted_at is not None and t.predicted_at < on.plans[0].first_token_at
               for t in on.tasks)


async def test_the_example_tools_guess_from_the_question() -> None:
    """`speculate="question"` with the bundled example tools (their module's
    QUESTION_TEMPLATES): each name of the question is searched before the plan's
    first line, and the plan's searches adopt those guesses."""
    import plait.examples.tools as examples

    plan = '1. search("Mount Everest")\n2. search("K2")\n3. join()'
    question = "Which is taller, Mount Everest or K2?"
    off = await aask(question, examples, model=model([plan], ["Finish: Mount Everest"]))
    on = await aask(question, examples, model=model([plan], ["Finish: Mount Everest"]),
                    speculate="question")
    assert essence(on) == essence(off)
    assert on.speculation is not None and on.speculation.hits == 2
    assert on.speculation.wasted == 0


async def test_speculate_takes_only_known_forms() -> None:
    with pytest.raises(plait.PlaitError, match="speculate must be"):
        await aask("q", make_tools(Ledger()), model=model(["1. join()"], ["Finish: x"]),
                   speculate="everything")
    with pytest.raises(plait.PlaitError, match="needs templates"):
        await aask("q", make_tools(Ledger()), model=model(["1. join()"], ["Finish: x"]),
                   speculate="question")
