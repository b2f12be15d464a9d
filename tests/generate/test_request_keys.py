"""An LLM call's request is its node's identity: the keys must not move.

A journal replays a finished call by its node's content key, so the keys of the
same calls must stay byte-identical across versions of plait (a cheaper way to
build or compare requests must not change them). The keys below were computed
before the LLM-call node was made cheaper (issue 11); each case is a kind of
request: temperature 0 (and its duplicate, the same node), samples of a sampled
call, no temperature, a schema (its first node and its repair), stop as a string
and a list, a seed, a system prompt, messages in every form, an llm_tool, a
named call, a prompt that is a Ref and one that is a Template.
"""

from __future__ import annotations

import pydantic

import plait
from plait.runtime._engine import current_run
from plait.llm import Message
from tests.generate.conftest import Counted

EXPECTED = {
    "t0": "ca0a724d414fd9f735a7d1d5040fd66d",
    "t0_dup": "ca0a724d414fd9f735a7d1d5040fd66d",
    "t07": "a167834bbdbe9816421e7981100fbf09",
    "t07_sample1": "23a9d210ad37e1ed0073935c050a7464",
    "t07_sample2": "d426fd5cd6eb254a5cc55010890cefd6",
    "tnone": "3a3630faa40947a89017ef2626f50ed3",
    "schema_first": "8126579dcdb190bca095a1f3ef146a5c",
    "schema": "aaa3b02aa59cca7016596e126a0117ec",
    "schema_r0": "37b45c01f06ca9974c5f2fd4a305206d",
    "stop_str": "29273f576691ef8ae24134e47bde33e4",
    "stop_list": "a05ab1d847e11e2e46b2153b16a13a72",
    "seed": "3ba72e2ad241200e1c0241eb11aef040",
    "system": "62683d11cfb8d54b111e10239d072d32",
    "messages": "9d7d5ed59370775733a2b7608eb1b64e",
    "tool": "2bdb253ff4613879c250c4e82594f09d",
    "tool_named": "1ffd0bd40960369d5614502043f99fa9",
    "ref": "472052292436c4dfde2123ee6776bebb",
    "template": "d3674c6fba5568b869846fb1691cc2a2",
}


class Pick(pydantic.BaseModel):
    answer: str
    score: int


def test_the_keys_of_representative_calls_are_those_journals_hold(tmp_path) -> None:
    model = Counted('{"answer": "x", "score": 1}')
    summarize = plait.llm_tool(model, name="summarize", system="Be brief.", max_tokens=60)

    @plait.workflow
    async def calls() -> dict:
        run = current_run()
        refs = {
            "t0": plait.generate("hello", model=model),
            "t0_dup": plait.generate("hello", model=model),
            "t07": plait.generate("hello", model=model, temperature=0.7),
            "t07_sample1": plait.generate("hello", model=model, temperature=0.7),
            "t07_sample2": plait.generate("hello", model=model, temperature=0.7),
            "tnone": plait.generate("hello", model=model, temperature=None),
            "schema": plait.generate("pick", model=model, schema=Pick),
            "schema_r0": plait.generate("pick0", model=model, schema=Pick, repairs=0),
            "stop_str": plait.generate("hi", model=model, stop="\n"),
            "stop_list": plait.generate("hi", model=model, stop=["a", "b"], max_tokens=7),
            "seed": plait.generate("hi", model=model, seed=42, temperature=0.5),
            "system": plait.generate("hi", model=model, system="Be terse."),
            "messages": plait.generate([{"role": "system", "content": "s"}, ("user", "u"),
                                        Message("assistant", "a"), ["user", "again"]],
                                       model=model),
            "tool": summarize("text to sum"),
            "tool_named": plait.generate("hi", model=model, name="judge"),
        }
        refs["ref"] = plait.generate(refs["t0"], model=model)
        template = plait.Template(("about ", refs["t0"], " and ", refs["t07"]))
        keys = {k: run.key_of(r.node) for k, r in refs.items()}
        keys["schema_first"] = run.key_of(refs["schema"].node - 1)
        keys["template"] = run.key_of(
            plait.generate(template, model=model, system="x").node)
        for r in refs.values():
            await r
        return keys

    keys = plait.run(calls, journal=str(tmp_path / "runs.db")).value
    assert keys == EXPECTED
