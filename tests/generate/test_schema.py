"""`schema=`: a pydantic model class as the call's answer type.

The JSON schema goes to the model with the request; the value is a validated
instance, fresh and replayed alike; an invalid reply is sent back with its
validation error (a repair, a node of its own, replayed from the journal like
any call); still invalid after the repairs, the call fails with `SchemaError`
naming the model, the schema and the error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pydantic
import pytest

import plait
from plait.generate import LLMPool
from plait.llm import Message
from tests.generate.conftest import Counted


class City(pydantic.BaseModel):
    name: str
    population: int


OSLO = '{"name": "Oslo", "population": 709000}'


def scripted(*replies: str) -> Counted:
    """A model that gives `replies` in order, one per call (then fails loudly)."""
    left = list(replies)

    def reply(messages: Sequence[Message], role: str | None) -> str:
        return left.pop(0)

    return Counted(reply)


@plait.workflow
async def city(repairs: int = 1) -> City:
    # "sim" is the spec of the model the pool holds (see `run_on`).
    return await plait.generate("Name a city as JSON.", model="sim", schema=City,
                                repairs=repairs)


def run_on(model: Counted, *args: object, **options: object) -> plait.RunResult:
    """Run `city` with `model` answering for its spec in the run's pool (a model
    object is no argument a journal can hold)."""

    async def main() -> plait.RunResult:
        async with LLMPool() as pool:
            pool.llm(model)
            return await plait.arun(city, *args, **options)

    return asyncio.run(main())


def test_a_valid_reply_is_an_instance_fresh_and_replayed(journal: str) -> None:
    model = scripted(OSLO)
    fresh = run_on(model, journal=journal, run_id="c1")
    assert fresh.value == City(name="Oslo", population=709000)
    assert type(fresh.value) is City
    # The schema went to the model with the request; the reply needed no repair.
    assert model.calls == 1 and model.requests[0].json_schema == City.model_json_schema()

    replayed = run_on(model, journal=journal, run_id="c1")
    assert type(replayed.value) is City and replayed.value == fresh.value
    assert model.calls == 1  # nothing paid again
    with plait.journal.open_journal(journal) as j:
        stored = {r.value for r in j.load("c1").results.values()}
    assert stored == {OSLO}  # the journal holds the model's own text, not an object


def test_a_fenced_reply_is_read() -> None:
    assert run_on(scripted(f"```json\n{OSLO}\n```")).value.name == "Oslo"


def test_an_invalid_reply_is_repaired_and_the_repair_replays(journal: str) -> None:
    model = scripted('{"name": "Oslo", "population": "many"}', OSLO)
    fresh = run_on(model, journal=journal, run_id="c2")
    assert fresh.value == City(name="Oslo", population=709000) and model.calls == 2
    repair = model.requests[1].messages
    # The repair sends the bad reply back with what was wrong with it.
    assert repair[-2] == Message("assistant", '{"name": "Oslo", "population": "many"}')
    assert "population" in repair[-1].content and "integer" in repair[-1].content
    assert [n.tool for n in fresh.nodes] == ["generate", "generate"]  # each a node

    replayed = run_on(model, journal=journal, run_id="c2")
    assert replayed.value == fresh.value and type(replayed.value) is City
    assert model.calls == 2 and replayed.replayed == 2


def test_invalid_after_every_repair_is_a_clear_error() -> None:
    model = scripted("Oslo, about 700k people", "{}", "never asked")
    with pytest.raises(plait.SchemaError) as caught:
        plait.generate("Name a city as JSON.", model=model, schema=City, repairs=1)
    message = str(caught.value)
    assert "'sim'" in message and "City" in message and "1 repair" in message
    assert "name: Field required" in message and "'{}'" in message
    assert caught.value.schema == "City" and caught.value.reply == "{}"
    assert model.calls == 2  # the first reply and one repair, no more

    with pytest.raises(plait.RunError) as in_run:
        run_on(scripted("nope"), 0)
    cause = in_run.value.result.error.__cause__
    assert isinstance(cause, plait.SchemaError) and "first reply:" in str(cause)


def test_a_valid_first_reply_passes_the_repair_unpaid() -> None:
    model = scripted(OSLO)
    result = run_on(model, 2)
    assert result.value.name == "Oslo" and model.calls == 1
    assert [n.tokens for n in result.nodes] == [result.nodes[0].tokens, 0, 0]


def test_a_schema_must_be_a_pydantic_class() -> None:
    with pytest.raises(TypeError, match="pydantic model class"):
        plait.llm_tool("sim", schema=dict)


def test_an_llm_tool_with_a_schema(journal: str) -> None:
    model = scripted(OSLO, json.dumps({"name": "Bergen", "population": 291000}))
    extract = plait.llm_tool(model, name="extract", schema=City)

    @plait.workflow
    async def two() -> list[City]:
        return [await extract("first city"), await extract("second city")]

    result = plait.run(two, journal=journal, run_id="t")
    assert [c.name for c in result.value] == ["Oslo", "Bergen"]
    assert {n.tool for n in result.nodes} == {"extract"}


def test_a_schema_call_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the OpenAI-compatible client and a real HTTP server (the sim server)."""
    from plait.llm import SimServer

    with SimServer([{"role": "extract", "reply": OSLO}], ttft=0.0, tps=5000) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        extract = plait.llm_tool("openai:sim", name="extract", schema=City)
        assert extract("a city, as JSON") == City(name="Oslo", population=709000)
