"""The LLM compiler against ReAct and native function calling, on a simulated hosted
model, LLMCompiler-style suites.

    python benchmarks/compiler.py [--questions 20] [--quick] [--ttft 0.4] [--tps 60]
                                  [--search-latency 0.3 1.5]

Model: plait's simulated backend (`plait.llm.SimLLM`), timed like a hosted model
(ttft 0.4 s, then 60 tokens/s; a token is a word with the space before it).
Its replies are scripted per question, by each call's role (planner, joiner,
ReAct step, function-calling step), so that the planner writes a correct plan,
the joiner a correct decision in the format plait's joiner prompt asks for (one
line, `Finish: <answer>`, or `Replan: <what is missing>` and then the new plan),
ReAct correct steps, and function calling what a good function-calling model
sends (every independent call of a step in one parallel batch, a call that needs
results in a later step, then the answer as the same final reasoning sentence
as ReAct's last step): the same facts in every mode. Prompts are plait's real
prompts (and the tools' JSON schemas, for function calling), so prompt tokens are
what a real model would be sent; a tool call's completion tokens are those of its
name and the JSON of its arguments.

Tools: `search` and `lookup` take 0.3-1.5 s (`--search-latency`), `calculator`
0.1-0.3 s. Each call's latency is drawn from an RNG seeded by (seed, question,
call), so both modes see the same draws for the same calls.

Suites (shaped like LLMCompiler's): HotpotQA-like (two parallel lookups),
Movie-like (eight parallel lookups), ParallelQA-like (three lookups, then
arithmetic on them), Replan-like (an ambiguous name: one replan), and
Single-like (one lookup: no parallel work at all).

For each question: latency of plait (compiler mode) and of ReAct, measured on
its own (questions run concurrently, `--concurrency` at a time over all suites
and both modes, to save wall time; the simulated model and tools are
timing-accurate, so this does not change a latency), LLM
tokens of both, and plait's latency over its critical-path bound (planner time
to each task's line + tool latencies along the longest chain + joiner time; see
`Answer.critical_path_bound`). The table shows medians.

Targets (issue 4): speed-up >= 3.5x Movie-like; fewer tokens than ReAct on every
suite; plait <= 1.05x its critical-path bound. (HotpotQA-like >= 1.8x is judged in
benchmarks/speculation.py: without speculation this workload's limit is ~1.75x.)
Targets (issue 13): plait faster than function calling on every suite with
parallel work; within 5% of it on the one-call suite (LLMCompiler's paper
reports up to 1.35x over OpenAI parallel function calling).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import plait
from plait.compiler import Answer, aask
from plait.llm import Message, SimLLM

MODES = ("compiler", "react", "tools")
SEARCH_LATENCY = (0.3, 1.5)
CALC_LATENCY = (0.1, 0.3)

# ---------------------------------------------------------------- a made-up world

SYLLABLES = ["ar", "vel", "kes", "sa", "mor", "tan", "dri", "lo", "ven", "qua", "ith", "bre",
             "nor", "gal", "ost", "rin", "pel", "zu", "hal", "cor", "mi", "ser", "tho", "wen"]
GENRES = ["heist thriller", "space opera", "romantic comedy", "courtroom drama",
          "monster horror", "coming-of-age story", "war epic", "animated fable"]
MOVIE_WORDS = ["Silent", "Harbor", "Glass", "Empire", "Last", "Winter", "Paper", "Crown",
               "Hidden", "River", "Iron", "Garden", "Midnight", "Orchard", "Broken", "Signal",
               "Golden", "Lantern", "Northern", "Tide", "Scarlet", "Echo", "Distant", "Summit"]


def made_up_name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3)))).capitalize()


@dataclass
class World:
    """Facts the simulated tools return; entries by lower-case name."""

    entries: dict[str, str] = field(default_factory=dict)
    numbers: dict[tuple[str, str], float] = field(default_factory=dict)

    def add(self, name: str, text: str, **numbers: float) -> None:
        self.entries[name.lower()] = f"{name}: {text}"
        for attribute, value in numbers.items():
            self.numbers[(name.lower(), attribute)] = value


@dataclass
class Question:
    id: str
    suite: str
    text: str
    plans: list[str]  # the planner's replies: the first plan, then replans
    joins: list[tuple[str, str]]  # the joiner's decisions, in order: (action, answer)
    react: list[str]  # ReAct's replies, step by step
    answer: str
    # Function calling: each step's batch of calls (name, arguments), then `final`.
    calls: list[list[tuple[str, dict[str, object]]]] = field(default_factory=list)
    final: str = ""


def _num(x: float) -> str:
    return f"{x:,.0f}"


def hotpot(i: int, rng: random.Random, world: World) -> Question:
    a, b = f"Mount {made_up_name(rng)}", f"{made_up_name(rng)} Peak"
    ha, hb = rng.randint(3000, 8800), rng.randint(3000, 8800)
    if ha == hb:
        hb += 7
    world.add(a, f"a mountain in the north range. Height: {_num(ha)} m.", height=ha)
    world.add(b, f"a mountain of the coastal range. Height: {_num(hb)} m.", height=hb)
    winner = a if ha > hb else b
    final = (f"{a} is {_num(ha)} m and {b} is {_num(hb)} m, so {winner} is taller.")
    return Question(
        f"hotpot-{i}", "HotpotQA-like", f"Which is taller, {a} or {b}?",
        plans=[f'1. search("{a}")\n2. search("{b}")\n3. join()'],
        joins=[("finish", winner)],
        react=[
            f"Thought: I need to search {a} and {b}, find their heights, then find which one "
            f'is taller.\nAction: search("{a}")',
            f"Thought: {a} is {_num(ha)} m high. I need to search {b} next and find its "
            f'height.\nAction: search("{b}")',
            f'Thought: {final}\nAction: finish("{winner}")',
        ],
        answer=winner,
        calls=[[("search", {"entity": a}), ("search", {"entity": b})]],
        final=final,
    )


def movie(i: int, rng: random.Random, world: World) -> Question:
    titles: list[str] = []
    while len(titles) < 8:
        t = " ".join(rng.sample(MOVIE_WORDS, 2))
        t = f"The {t}" if rng.random() < 0.5 else t
        if t not in titles:
            titles.append(t)
    liked, options = titles[:4], titles[4:]
    genre = rng.choice(GENRES)
    others = [g for g in GENRES if g != genre]
    pick = rng.randrange(4)
    kinds: list[str] = []
    for t in liked:
        world.add(t, f"a {genre} from {rng.randint(1970, 2023)}.")
        kinds.append(genre)
    for k, t in enumerate(options):
        g = genre if k == pick else rng.choice(others)
        world.add(t, f"a {g} from {rng.randint(1970, 2023)}.")
        kinds.append(g)
    winner = options[pick]
    final = f"All four movies are {genre}s, and of the options only {winner} is one."
    letters = "ABCD"
    text = (f"Find a movie similar to {', '.join(liked)}. Options: "
            + ", ".join(f"({letters[k]}) {t}" for k, t in enumerate(options)) + ".")
    lines = [f'{n}. search("{t}")' for n, t in enumerate(titles, 1)]
    react = [f"Thought: I need the genre of each of the four movies and of each option. "
             f'First, {titles[0]}.\nAction: search("{titles[0]}")']
    react += [f"Thought: {titles[k - 1]} is a {kinds[k - 1]}. Next, {titles[k]}."
              f'\nAction: search("{titles[k]}")' for k in range(1, 8)]
    return Question(
        f"movie-{i}", "Movie-like", text,
        plans=["\n".join(lines + ["9. join()"])],
        joins=[("finish", winner)],
        react=react + [f'Thought: {final}\nAction: finish("{winner}")'],
        answer=winner,
        calls=[[("search", {"entity": t}) for t in titles]],
        final=final,
    )


def parallelqa(i: int, rng: random.Random, world: World) -> Question:
    names = [f"{made_up_name(rng)} Tower" for _ in range(3)]
    heights = [rng.randint(150, 900) for _ in names]
    for n, h in zip(names, heights):
        world.add(n, f"a skyscraper. Height: {_num(h)} m.", height=h)
    total = float(sum(heights))
    expr = " + ".join(str(float(h)) for h in heights)
    final = f"The three heights add up to {_num(total)} m."
    lines = [f'{k}. lookup("{n}", "height")' for k, n in enumerate(names, 1)]
    lines += ['4. calculator("${1} + ${2} + ${3}")', "5. join()"]
    react = [f"Thought: I need the heights of {names[0]}, {names[1]} and {names[2]}, then "
             f'their sum. First, {names[0]}.\nAction: lookup("{names[0]}", "height")']
    react += [f"Thought: {names[k - 1]} is {_num(heights[k - 1])} m. Next, {names[k]}."
              f'\nAction: lookup("{names[k]}", "height")' for k in (1, 2)]
    react.append(f"Thought: {names[2]} is {_num(heights[2])} m. Now I add the three heights."
                 f'\nAction: calculator("{expr}")')
    react.append(f'Thought: {final}\nAction: finish("{_num(total)} m")')
    return Question(
        f"parallelqa-{i}", "ParallelQA-like",
        f"What is the combined height of {', '.join(names[:2])} and {names[2]}?",
        plans=["\n".join(lines)],
        joins=[("finish", f"{_num(total)} m")],
        react=react,
        answer=f"{_num(total)} m",
        calls=[[("lookup", {"entity": n, "attribute": "height"}) for n in names],
               [("calculator", {"expression": expr})]],
        final=final,
    )


def replan(i: int, rng: random.Random, world: World) -> Question:
    base = made_up_name(rng)
    a, b = base, f"{made_up_name(rng)} Peak"
    ha, hb = rng.randint(3000, 8800), rng.randint(3000, 8800)
    if ha == hb:
        hb += 7
    world.add(a, f"{a} may refer to: {a} (mountain), a peak of the north range; "
                 f"{a} (river), a river of the south. Search for one of those.")
    world.add(f"{a} (mountain)", f"a mountain of the north range. Height: {_num(ha)} m.",
              height=ha)
    world.add(b, f"a mountain of the coastal range. Height: {_num(hb)} m.", height=hb)
    winner = f"{a} (mountain)" if ha > hb else b
    final = f"{a} (mountain) is {_num(ha)} m and {b} is {_num(hb)} m, so {winner} is taller."
    reason = f'"{a}" is ambiguous; search "{a} (mountain)" for its height.'
    return Question(
        f"replan-{i}", "Replan-like", f"Which mountain is taller, {a} or {b}?",
        plans=[f'1. search("{a}")\n2. search("{b}")\n3. join()',
               f'3. search("{a} (mountain)")\n4. join()'],
        joins=[("replan", reason), ("finish", winner)],
        react=[
            f"Thought: I need to search {a} and {b}, find their heights, then find which one "
            f'is taller.\nAction: search("{a}")',
            f"Thought: {a} is ambiguous. I need to search {a} (mountain) instead."
            f'\nAction: search("{a} (mountain)")',
            f"Thought: {a} (mountain) is {_num(ha)} m. I need to search {b} next and find its "
            f'height.\nAction: search("{b}")',
            f'Thought: {final}\nAction: finish("{winner}")',
        ],
        answer=winner,
        calls=[[("search", {"entity": a}), ("search", {"entity": b})],
               [("search", {"entity": f"{a} (mountain)"})]],
        final=final,
    )


def single(i: int, rng: random.Random, world: World) -> Question:
    name = f"{made_up_name(rng)} Tower"
    h = rng.randint(150, 900)
    world.add(name, f"a skyscraper. Height: {_num(h)} m.", height=h)
    final = f"{name} is {_num(h)} m tall."
    return Question(
        f"single-{i}", "Single-like", f"How tall is {name}?",
        plans=[f'1. lookup("{name}", "height")\n2. join()'],
        joins=[("finish", f"{_num(h)} m")],
        react=[f"Thought: I need the height of {name}.\n"
               f'Action: lookup("{name}", "height")',
               f'Thought: {final}\nAction: finish("{_num(h)} m")'],
        answer=f"{_num(h)} m",
        calls=[[("lookup", {"entity": name, "attribute": "height"})]],
        final=final,
    )


SUITES = {"HotpotQA-like": hotpot, "Movie-like": movie, "ParallelQA-like": parallelqa,
          "Replan-like": replan, "Single-like": single}

# ---------------------------------------------------------------- tools and model


def latency(seed: int, qid: str, call: str, bounds: tuple[float, float]) -> float:
    """The same draw for the same call of the same question, in either mode."""
    rng = random.Random(zlib.crc32(f"{seed}|{qid}|{call}".encode()))
    return rng.uniform(*bounds)


def make_tools(world: World, seed: int, qid: str,
               search_latency: tuple[float, float] = SEARCH_LATENCY) -> list[plait.Tool]:
    @plait.tool(speculate=True)
    async def search(entity: str) -> str:
        """The encyclopedia entry about an entity (a place, a mountain, a movie...)."""
        await asyncio.sleep(latency(seed, qid, f"search|{entity}", search_latency))
        return world.entries.get(entity.lower(), f'No entry found for "{entity}".')

    @plait.tool(speculate=True)
    async def lookup(entity: str, attribute: str) -> float:
        """One number about an entity, e.g. its height in metres."""
        await asyncio.sleep(latency(seed, qid, f"lookup|{entity}|{attribute}", search_latency))
        value = world.numbers.get((entity.lower(), attribute.lower()))
        if value is None:
            raise ValueError(f"no {attribute} for {entity!r}")
        return float(value)

    @plait.tool(speculate=True)
    async def calculator(expression: str) -> float:
        """Evaluate arithmetic: numbers with + - * / ** and parentheses."""
        from plait.examples.tools import calculate

        await asyncio.sleep(latency(seed, qid, f"calc|{expression}", CALC_LATENCY))
        return calculate(expression)

    return [search, lookup, calculator]


def make_model(q: Question, ttft: float, tps: float) -> SimLLM:
    """Scripted replies for one question: planner, joiner and ReAct steps.

    The joiner writes what plait's joiner prompt asks for, one line and no
    thought: `Finish: <answer>`, or `Replan: <what is missing>` and the new plan
    (the planner's scripted replan, which it writes when a joiner's reply has none).
    """

    calls = {"planner": 0, "joiner": 0}  # a question's calls of each role, in order

    def script(messages: Sequence[Message], role: str | None) -> str | dict[str, object]:
        if role == "react":
            steps = sum(1 for m in messages if m.role == "assistant")
            return q.react[min(steps, len(q.react) - 1)]
        if role == "caller":  # function calling: the k-th step's batch, then the answer
            steps = sum(1 for m in messages if m.role == "assistant")
            if steps < len(q.calls):
                return {"tool_calls": [{"name": name, "arguments": args}
                                       for name, args in q.calls[steps]]}
            return {"content": q.final}
        # The planner and the joiner: the k-th call of the question gets the k-th
        # scripted reply (a replan question plans twice and decides twice).
        assert role in calls, role
        k, calls[role] = calls[role], calls[role] + 1
        if role == "planner":
            return q.plans[min(k, len(q.plans) - 1)]
        action, answer = q.joins[min(k, len(q.joins) - 1)]
        if action == "replan":  # as the prompt asks: the line, then the new plan
            return f"Replan: {answer}\n{q.plans[min(k + 1, len(q.plans) - 1)]}"
        return f"Finish: {answer}"

    return SimLLM(script, ttft=ttft, tps=tps)


# ---------------------------------------------------------------- measuring


@dataclass
class Outcome:
    latency: float
    tokens: int
    correct: bool
    bound: float
    llm_calls: int


async def one(q: Question, tools: list[plait.Tool], model: SimLLM, mode: str) -> Outcome:
    started = time.perf_counter()
    answer: Answer = await aask(q.text, tools, model=model, mode=mode, examples=[],
                                max_replans=2, llm_timeout=60)
    elapsed = time.perf_counter() - started
    # Function calling answers in a sentence: correct if it names the answer.
    correct = (q.answer in answer.text) if mode == "tools" else answer.text.strip() == q.answer
    return Outcome(elapsed, answer.tokens, correct, answer.critical_path_bound(),
                   len(answer.llm_calls))


Ready = tuple["Question", list[plait.Tool], SimLLM]


def prepare(questions: list[Question], world: World, args: argparse.Namespace
            ) -> dict[str, list[Ready]]:
    """Tools and models for each question and mode, built before any clock starts:
    building a tool is synchronous work (its pydantic schema) that would stall the
    event loop under every question already in flight, a cost of this harness, not
    of either mode."""
    return {mode: [(q, make_tools(world, args.seed, q.id, tuple(args.search_latency)),
                    make_model(q, args.ttft, args.tps)) for q in questions]
            for mode in MODES}


async def suite(ready: dict[str, list[Ready]], sem: asyncio.Semaphore
                ) -> dict[str, list[Outcome]]:
    """Both modes of one suite at once; `sem` bounds the questions in flight over
    the whole benchmark. Every latency is measured on its own clock and the model
    and tools keep their timing under load, so running suites, modes and
    questions side by side saves wall time without changing a latency, as long as
    the event loop keeps up (`vs bound` would show it did not)."""

    async def limited(q: Question, tools: list[plait.Tool], model: SimLLM, mode: str
                      ) -> Outcome:
        async with sem:
            return await one(q, tools, model, mode)

    outcomes = await asyncio.gather(*(asyncio.gather(*(limited(*r, mode) for r in ready[mode]))
                                      for mode in MODES))
    return {mode: list(out) for mode, out in zip(MODES, outcomes, strict=True)}


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


async def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--questions", type=int, default=20, help="questions per suite")
    p.add_argument("--quick", action="store_true", help="5 questions per suite")
    p.add_argument("--ttft", type=float, default=0.4)
    p.add_argument("--tps", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=4)
    p.add_argument("--search-latency", type=float, nargs=2, default=SEARCH_LATENCY,
                   metavar=("LO", "HI"), help="seconds a search or lookup takes (uniform)")
    p.add_argument("--concurrency", type=int, default=40,
                   help="questions in flight at once, over all suites and modes")
    p.add_argument("--json", action="store_true", help="also print the medians as JSON")
    args = p.parse_args(argv)
    n = 5 if args.quick else args.questions
    rng = random.Random(args.seed)
    world = World()
    wall = time.perf_counter()
    rows = []
    print(f"simulated model: ttft {args.ttft} s, {args.tps:g} tokens/s; "
          f"{n} questions per suite; search/lookup "
          f"{args.search_latency[0]:g}-{args.search_latency[1]:g} s, "
          f"calculator {CALC_LATENCY[0]}-{CALC_LATENCY[1]} s", file=sys.stderr)
    suites = {name: [make(i, rng, world) for i in range(n)] for name, make in SUITES.items()}
    ready = {name: prepare(questions, world, args) for name, questions in suites.items()}
    sem = asyncio.Semaphore(args.concurrency)
    results = await asyncio.gather(*(suite(ready[name], sem) for name in suites))
    for name, res in zip(suites, results, strict=True):
        c, r, f = res["compiler"], res["react"], res["tools"]
        rows.append({
            "suite": name,
            "questions": n,
            "plait_s": median([o.latency for o in c]),
            "react_s": median([o.latency for o in r]),
            "fc_s": median([o.latency for o in f]),
            "speedup": median([b.latency / a.latency for a, b in zip(c, r)]),
            "fc_speedup": median([b.latency / a.latency for a, b in zip(c, f)]),
            "fc_tokens": median([o.tokens for o in f]),
            "plait_tokens": median([o.tokens for o in c]),
            "react_tokens": median([o.tokens for o in r]),
            "fewer_tokens": sum(a.tokens < b.tokens for a, b in zip(c, r)) / n,
            "vs_bound": median([o.latency / o.bound for o in c]),
            "worst_vs_bound": max(o.latency / o.bound for o in c),
            "correct": (sum(o.correct for o in c) / n, sum(o.correct for o in r) / n,
                        sum(o.correct for o in f) / n),
            "llm_calls": (median([o.llm_calls for o in c]), median([o.llm_calls for o in r]),
                          median([o.llm_calls for o in f])),
            "parallel": name != "Single-like",
        })
    wall = time.perf_counter() - wall
    head = (f"{'suite':<16} {'plait s':>8} {'ReAct s':>8} {'FC s':>6} {'vs ReAct':>8} "
            f"{'vs FC':>6} {'plait tok':>9} {'ReAct tok':>9} {'FC tok':>7} {'vs bound':>8} "
            f"{'max':>6} {'LLM calls p/R/FC':>16} {'correct p/R/FC':>15}")
    print(head)
    print("-" * len(head))
    for row in rows:
        calls = "/".join(f"{x:.0f}" for x in row["llm_calls"])
        correct = "/".join(f"{x:.0%}" for x in row["correct"])
        print(f"{row['suite']:<16} {row['plait_s']:>8.2f} {row['react_s']:>8.2f} "
              f"{row['fc_s']:>6.2f} {row['speedup']:>7.2f}x {row['fc_speedup']:>5.2f}x "
              f"{row['plait_tokens']:>9.0f} {row['react_tokens']:>9.0f} {row['fc_tokens']:>7.0f} "
              f"{row['vs_bound']:>7.3f}x {row['worst_vs_bound']:>5.3f} {calls:>16} "
              f"{correct:>15}")
    print(f"\nmedians over {n} questions per suite; vs ReAct / vs FC = median of ReAct/plait "
          f"and function-calling/plait latency per question; 'vs bound' = plait latency / "
          f"critical-path bound; wall {wall:.1f} s")
    one_call = [r for r in rows if not r["parallel"]]
    targets = [
        ("speed-up >= 3.5x Movie-like", rows[1]["speedup"] >= 3.5),
        ("fewer tokens than ReAct on every suite (median)",
         all(r["plait_tokens"] < r["react_tokens"] for r in rows)),
        ("<= 1.05x the critical-path bound (median)", all(r["vs_bound"] <= 1.05 for r in rows)),
        ("faster than function calling on every suite with parallel work (median)",
         all(r["plait_s"] < r["fc_s"] for r in rows if r["parallel"])),
        ("within 5% of function calling on the one-call suite (median)",
         all(r["plait_s"] <= 1.05 * r["fc_s"] for r in one_call)),
    ]
    for text, ok in targets:
        print(f"  [{'met' if ok else 'MISSED'}] {text}")
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
