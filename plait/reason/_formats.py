"""Fork formats as data: how a model opens a parallel block, how its threads are
started, and how they are joined back into the parent's context.

Each format is a frozen record of strings and bounds; the one parser
(`ForkParser`) and the one driver (`plait.reason._run`) serve all of them. The
join is byte-specific: a model trained on one orchestrator's contexts sees
exactly those bytes again, or it sees contexts it never saw in training.

Sources the bytes are pinned against (tests/reason/test_formats.py):

- ThreadWeaver (facebookresearch/threadweaver@2662232): threadweaver_sft/src/
  simple_eval.py `branching_generate` (the inference orchestrator) and
  threadweaver_rl/.../single_turn_agent_loop.py (the RL rollout). Stop at
  `</Outlines>` (kept in the text); outline numbers are
  `<Outline>\\s*([0-9]+(?:\\.[0-9]+)*)\\s*:` after the segment's last `<Outlines>`,
  de-duplicated in order (the rollout); each thread continues
  `context + "\\n<Thread>\\n{n}:"` up to `</Thread>` (kept); the join writes "\\n",
  then `<Thread>\\n{n}:{text}</Thread>` for each thread with nothing between, then
  "\\n"; the model writes `</Parallel>` itself. A thread cut by its length bound
  gets "\\n</Thread>" (the rollout), and the trajectory is closed with
  "\\n</Parallel>" in place of the join's last "\\n" and ends (the rollout's
  `no_conclusion` closing).
- Multiverse (Infini-AI-Lab/Multiverse@4cbc487, data/prompt/step3-prompt.txt, the
  published block layout; its engine merges KV inside SGLang, not reachable over an
  API): `<Goal>` holds `<Outline>\\n{n}: ...</Outline>` items, each path is
  `\\n<Path>\\n{n}:...</Path>`, the model then writes `\\n<Conclusion>`. Paths may
  hold blocks of their own (nesting, bounded by `max_depth`).
- APR (Parallel-Reasoning/APR@5577928, tinyrl/rollout/apr_utils.py): the parent's
  last line is `<End Calling Sub Searches>`; children are the
  `<Start Sub Search i at level L> SPEC` lines, each run in a fresh context seeded
  with its SPEC; the parent continues from its text before the last
  `<Calling Sub Searches>\\n`, then `<Sub Searches>\\n`, one result per child
  (`<Goal Reached in Sub Search i at level 1 at Node X>\\n{result}\\n` or
  `<No Solution in Sub Search i at level 1 at Node X>\\n`), `<End Sub Searches>\\n`.
  APR's Countdown orchestrator rebuilds a child's state line from the parent's
  search tree (with `eval`); plait seeds the child with its spawn line's own text
  and never evaluates model output.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["APR", "ForkFormat", "Multiverse", "ThreadWeaver", "Thread"]

OUTLINE = r"<Outline>\s*([0-9]+(?:\.[0-9]+)*)\s*:"


@dataclass(frozen=True, slots=True)
class Thread:
    """One finished thread as the join sees it: its number (or spec), the text it
    added after its header (without the closing tag), and whether its length bound
    cut it."""

    number: str
    text: str
    cut: bool = False
    spec: str = ""  # isolated formats: the child's seed text


@dataclass(frozen=True, kw_only=True)
class ForkFormat:
    """A fork format: plain data read by the one parser and the one driver.

    opener       the tag that opens a block's item list (`<Outlines>`)
    trigger      the tag that ends it: the parent's stream stops here (it is a stop
                 string too) and the threads start
    item         regex of one item in the list: group 1 its number; a `spec` group
                 (isolated formats) the child's seed text
    header       a thread's prefix in its own context ("{n}": its number)
    close        the tag that ends a thread (a stop string of the thread's call)
    context      "full": a thread continues parent + header; "isolated": a child
                 starts a fresh context seeded with its spec
    join         "threads" (parent + threads, the formats below) or "results" (APR)
    lead, item_join, sep, tail   the join: lead + sep.join(item_join per thread) + tail
    cut_close    appended to a thread cut by its length bound
    closing      appended when a cut thread ends the trajectory
    max_threads, max_depth, max_blocks   bounds; a block past them is not forked
    """

    name: str
    opener: str
    trigger: str
    item: str = OUTLINE
    header: str
    close: str
    context: Literal["full", "isolated"] = "full"
    join: Literal["threads", "results"] = "threads"
    lead: str = ""
    item_join: str = ""
    sep: str = ""
    tail: str = ""
    cut_close: str = ""
    closing: str = ""
    max_threads: int = 8
    max_depth: int = 1
    max_blocks: int = 32
    _item_re: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("max_threads", "max_depth", "max_blocks"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{self.name}: {name} must be a whole number >= 1, got {value!r}")
        if self.context not in ("full", "isolated") or self.join not in ("threads", "results"):
            raise ValueError(f"{self.name}: context is full|isolated, join is threads|results")
        object.__setattr__(self, "_item_re", re.compile(self.item))

    # ------------------------------------------------------------ reading a block

    def items(self, block: str) -> list[tuple[str, str]]:
        """(number, spec) of each item in a block's text, in order, as written."""
        out = []
        for m in self._item_re.finditer(block):
            spec = m.groupdict().get("spec") or ""
            out.append((m.group(1), spec.strip()))
        return out

    # ------------------------------------------------------------ threads

    def thread_header(self, number: str) -> str:
        """What a thread's own context ends with before the model writes."""
        return self.header.format(n=number)

    def thread_stops(self, depth: int) -> list[str]:
        """A thread's stop strings; a thread below `max_depth` may open a block."""
        stops = [self.close] if self.close else []
        if depth < self.max_depth:
            stops.append(self.trigger)
        return stops

    # ------------------------------------------------------------ joins

    def joined(self, parent: str, threads: Sequence[Thread]) -> str:
        """The continuation's context: `parent` (ending with the trigger) and the
        threads, byte for byte as the format's reference orchestrator writes it."""
        if self.join == "results":
            return _apr_join(parent, threads)
        return parent + self.appended(threads)

    def appended(self, threads: Sequence[Thread]) -> str:
        """What a "threads" join appends to the parent. After a cut thread the
        trajectory ends: `closing` takes the place of `tail` (the driver adds it)."""
        parts = [self.item_join.format(n=t.number) + t.text
                 + (self.cut_close if t.cut else self.close) for t in threads]
        cut = any(t.cut for t in threads)
        return self.lead + self.sep.join(parts) + ("" if cut else self.tail)


def ThreadWeaver(*, max_threads: int = 8, max_blocks: int = 32) -> ForkFormat:  # noqa: N802
    """ThreadWeaver's `<Parallel><Outlines>…</Outlines><Thread>…</Thread></Parallel>`."""
    return ForkFormat(
        name="threadweaver", opener="<Outlines>", trigger="</Outlines>",
        header="\n<Thread>\n{n}:", close="</Thread>",
        lead="\n", item_join="<Thread>\n{n}:", sep="", tail="\n",
        cut_close="\n</Thread>", closing="\n</Parallel>",
        max_threads=max_threads, max_depth=1, max_blocks=max_blocks,
    )


def Multiverse(*, max_threads: int = 8, max_depth: int = 2,  # noqa: N802
               max_blocks: int = 32) -> ForkFormat:
    """Multiverse's `<Parallel><Goal><Outline>…</Goal><Path>…</Path><Conclusion>`."""
    return ForkFormat(
        name="multiverse", opener="<Goal>", trigger="</Goal>",
        header="\n<Path>\n{n}:", close="</Path>",
        lead="\n", item_join="<Path>\n{n}:", sep="\n", tail="\n",
        cut_close="\n</Path>", closing="\n</Parallel>",
        max_threads=max_threads, max_depth=max_depth, max_blocks=max_blocks,
    )


_APR_ITEM = r"<Start Sub Search (\d+) at level \d+>[ \t]*(?P<spec>[^\n]*)"


def APR(*, max_threads: int = 8, max_depth: int = 1,  # noqa: N802
        max_blocks: int = 32) -> ForkFormat:
    """APR's spawn/join: `<Calling Sub Searches>` … `<End Calling Sub Searches>`,
    children in fresh contexts, their results in `<Sub Searches>` … `<End Sub Searches>`."""
    return ForkFormat(
        name="apr", opener="<Calling Sub Searches>", trigger="<End Calling Sub Searches>",
        item=_APR_ITEM, header="", close="", context="isolated", join="results",
        max_threads=max_threads, max_depth=max_depth, max_blocks=max_blocks,
    )


FORMATS = {"threadweaver": ThreadWeaver, "multiverse": Multiverse, "apr": APR}


def _apr_result(trace: str) -> str | None:
    """A child's result: its trace from the second-last "Goal Reached" on, as
    APR's `get_search_result` takes it (None: the child found nothing)."""
    marks = [m.start() for m in re.finditer("Goal Reached", trace)]
    if len(marks) < 2:
        return None
    return trace[marks[-2]:].strip()[13:]


def _apr_join(parent: str, threads: Sequence[Thread]) -> str:
    head, sep, _ = parent.rpartition("<Calling Sub Searches>\n")
    out = [head if sep else parent, "<Sub Searches>\n"]
    for i, t in enumerate(threads):
        node = t.spec.split("Moving to Node ", 1)[-1].strip()
        result = _apr_result(t.spec + t.text)
        if result is None:
            out.append(f"<No Solution in Sub Search {i} at level 1 at Node {node}>\n")
        else:
            out.append(f"<Goal Reached in Sub Search {i} at level 1 at Node {node}>\n")
            out.append(result + "\n")
    out.append("<End Sub Searches>\n")
    return "".join(out)
