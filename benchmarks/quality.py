"""Answer quality of `plait ask` on the bundled model over the bundled encyclopedia.

Not a timed test: it asks every question of a question file (default:
benchmarks/quality_questions.json, 48 questions of four kinds) with the bundled
example tools, checks each answer against the expected one, and prints a table
per kind and the share answered correctly against the target (>= 75%).

    python benchmarks/quality.py                       # the bundled model, all questions
    python benchmarks/quality.py --questions mine.json # your own questions, same format
    python benchmarks/quality.py --model openai:MODEL --show

A question file is JSON: {"questions": [{"question": ..., "expected": ...,
"kind": ..., "others": [...]}]}. A number `expected` is met by any number in the
answer within 0.1% (commas allowed); a text `expected` (a name) must appear in
the answer, and before any of `others` (the other candidates of a comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import plait
from plait.examples import tools as example_tools
from plait.llm import get_llm

HERE = Path(__file__).parent
TARGET = 0.75
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def numbers(text: str) -> list[float]:
    out = []
    for m in _NUMBER.findall(text):
        try:
            out.append(float(m.replace(",", "")))
        except ValueError:
            pass
    return out


def correct(answer: str, expected: Any, others: list[str] = ()) -> bool:  # type: ignore[assignment]
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        tolerance = max(0.5, abs(expected) * 0.001)
        return any(abs(n - expected) <= tolerance for n in numbers(answer))
    text = f" {_norm(answer)} "
    at = text.find(f" {_norm(str(expected))} ")
    if at < 0:
        return False
    rivals = [text.find(f" {_norm(o)} ") for o in others]
    return all(r < 0 or at < r for r in rivals)


def load(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text("utf-8"))
    items = data["questions"] if isinstance(data, dict) else data
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "question" not in item or "expected" not in item:
            raise SystemExit(f"{path}: question {i + 1} needs 'question' and 'expected'")
    return items


async def main_async(args: argparse.Namespace) -> int:
    items = load(Path(args.questions))
    if args.kind:
        items = [i for i in items if i.get("kind") == args.kind]
    if args.limit:
        items = items[: args.limit]
    err = Console(stderr=True)
    llm = get_llm(args.model)
    rows: list[dict[str, Any]] = []
    try:
        for i, item in enumerate(items, 1):
            started = time.perf_counter()
            try:
                answer = await plait.aask(item["question"], example_tools, model=llm,
                                          timeout=args.timeout)
                text, error = answer.text, None
                tasks = [(t.call, t.value if t.error is None else f"ERROR {t.error}")
                         for t in answer.tasks]
                plans = [p.text for p in answer.plans]
            except Exception as exc:  # a failed question is a wrong answer, not a crash
                text, error, tasks, plans = "", f"{type(exc).__name__}: {exc}", [], []
            elapsed = time.perf_counter() - started
            ok = error is None and correct(text, item["expected"], item.get("others", []))
            rows.append({**item, "answer": text, "ok": ok, "error": error,
                         "elapsed": elapsed, "tasks": tasks, "plans": plans})
            mark = "ok " if ok else "BAD"
            err.print(f"[{i}/{len(items)}] {mark} {elapsed:5.1f}s  {item['question']}  "
                      f"-> {text or error!r}  (expected {item['expected']!r})",
                      markup=False, highlight=False)
            if args.show and not ok:
                for plan in plans:
                    err.print("    plan: " + plan.replace("\n", " | "), markup=False)
                for call, value in tasks:
                    err.print(f"    {call} -> {str(value)[:100]}", markup=False)
    finally:
        await llm.aclose()
    if args.json:
        print(json.dumps(rows, default=str, indent=1))
        return 0 if _share(rows) >= TARGET else 1
    report(rows, args.model)
    return 0 if _share(rows) >= TARGET else 1


def _share(rows: list[dict[str, Any]]) -> float:
    return sum(r["ok"] for r in rows) / len(rows) if rows else 0.0


def report(rows: list[dict[str, Any]], model: str) -> None:
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_kind[r.get("kind", "-")].append(r)
    table = Table(title=f"answer quality: {model}, bundled tools and encyclopedia")
    for col in ("kind", "questions", "correct", "share", "median s"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for kind, group in [*sorted(by_kind.items()), ("all", rows)]:
        table.add_row(kind, str(len(group)), str(sum(r["ok"] for r in group)),
                      f"{_share(group):.0%}",
                      f"{statistics.median(r['elapsed'] for r in group):.1f}")
    console = Console()
    console.print(table)
    share = _share(rows)
    verdict = "met" if share >= TARGET else "MISSED"
    console.print(f"target: >= {TARGET:.0%} correct: {share:.1%} ({verdict})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--questions", default=str(HERE / "quality_questions.json"))
    p.add_argument("--model", default="local")
    p.add_argument("--kind", help="only the questions of this kind")
    p.add_argument("--limit", type=int, default=0, help="only the first N questions")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per question")
    p.add_argument("--show", action="store_true", help="show plans and results of wrong answers")
    p.add_argument("--json", action="store_true", help="print every row as JSON")
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
