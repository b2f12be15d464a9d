"""`plait.asker(tools)`: a question per dataset row, each its own dynamic plan.

    result = plait.map(plait.asker(my_tools, model="local"), "questions.jsonl",
                       key="id", out="answers.jsonl", journal="runs.db")

Each row's question (its `question` column) is answered by `aask` inside the job:
the planner, the tasks and the joiner of every row are nodes of that row, scoped
by its key in the job's journal run, so a resumed sweep replays each question's
finished calls and skips its finished rows. The output row is the input row with
the answer added (an evaluation keeps its expected answers beside).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from plait.runtime._durable import Durable
from plait._entry import FILE_MODULE_PREFIX, import_file, is_file_spec
from plait._errors import PlaitError
from plait.compiler._ask import MODES, aask
from plait.data._rows import Outcome

# Options of `aask` an asker takes (and records for a resume).
ASK_OPTIONS = frozenset({
    "mode", "max_replans", "max_repairs", "max_tasks", "max_steps", "planner_max_tokens",
    "joiner_max_tokens", "temperature", "constrained", "grounded", "thoughts",
    "llm_timeout", "timeout", "max_concurrency",
})


@dataclass(frozen=True, slots=True)
class Asker:
    """Answers the question in each row (see `asker`)."""

    tools: ModuleType
    model: str = "local"
    column: str = "question"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"ask:{self.options.get('mode', 'compiler')}"

    def recipe(self) -> dict[str, Any]:
        """How a resume makes this asker again (the tools by module or file)."""
        return {"factory": "plait.compiler._rows:asker",
                "kwargs": {"tools": entry_of_module(self.tools), "model": self.model,
                           "column": self.column, **self.options}}

    async def run_row(self, row: dict[str, Any], run_id: str,
                      durable: Durable | None) -> Outcome:
        question = row.get(self.column)
        if not isinstance(question, str) or not question.strip():
            error = PlaitError(f"the row has no question: column {self.column!r} is "
                               f"{'missing' if question is None else repr(question)}")
            return Outcome(False, None, error, 0)
        try:
            answer = await aask(question, self.tools, model=self.model, journal=durable,
                                run_id=run_id, **self.options)
        except Exception as exc:
            return Outcome(False, None, exc, 0)
        tokens = sum(c.prompt_tokens + c.completion_tokens for c in answer.llm_calls
                     if not c.replayed)
        return Outcome(True, {**row, "answer": answer.text}, None, tokens)


def asker(tools: ModuleType | str, *, model: str = "local", column: str = "question",
          **options: Any) -> Asker:
    """A row runner for `plait.map`: each row's `column` is a question asked with
    `tools` (a module of tools, or its import name or file path) on `model`; the
    output row is the input row plus "answer". Options are `ask`'s (mode,
    max_replans, timeout, ...)."""
    unknown = sorted(set(options) - ASK_OPTIONS)
    if unknown:
        raise TypeError(f"asker() got unknown option(s) {', '.join(unknown)}; "
                        f"it takes ask's: {', '.join(sorted(ASK_OPTIONS))}")
    if options.get("mode", "compiler") not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {options['mode']!r}")
    if not isinstance(model, str):
        raise TypeError("asker(model=...) takes a model spec (a string): it is recorded "
                        "for a resume")
    module = tools if isinstance(tools, ModuleType) else _import_tools(tools)
    return Asker(module, model, column, dict(options))


def _import_tools(name: str) -> ModuleType:
    if is_file_spec(name):
        path = Path(name)
        if not path.is_file():
            raise PlaitError(f"no tools file {name}")
        return import_file(path)
    return importlib.import_module(name)


def entry_of_module(module: ModuleType) -> str:
    """The module's import name, or its file's absolute path where the name means
    nothing to another process (a file imported by path, a script)."""
    name = module.__name__
    if name.startswith(FILE_MODULE_PREFIX) or name == "__main__":
        file = getattr(module, "__file__", None)
        if file is None:
            raise PlaitError(f"tools module {name} has no file: a resume cannot import it")
        return str(Path(file).resolve())
    return name
