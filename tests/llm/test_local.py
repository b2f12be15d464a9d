"""The local backend: real text from the bundled GGUF, in-process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time

from plait.llm import LocalLLM, Message, get_llm

from .grammars import PERSON_GBNF, PERSON_SCHEMA, YES_NO

QUESTION = [Message("system", "Answer briefly."), Message("user", "Is the sky blue?")]


def test_generates_real_text_with_usage(gguf_path, arun) -> None:
    llm = get_llm("local")
    assert isinstance(llm, LocalLLM) and llm.spec == "local"

    async def body():
        stream = llm.stream([Message("user", "Name three colours.")], max_tokens=12)
        deltas = [d async for d in stream]
        return deltas, stream.usage

    deltas, usage = arun(body())
    assert len(deltas) > 1 and "".join(deltas).strip()
    assert usage is not None and 0 < usage.completion_tokens <= 12
    assert 0 < usage.ttft_s <= usage.total_s


def test_prompt_tokens_match_llama_cpp(gguf_path, arun) -> None:
    from llama_cpp import Llama

    messages = [{"role": "user", "content": "Name three colours."}]
    reference = Llama(model_path=str(gguf_path), n_ctx=512, verbose=False)
    expected = reference.create_chat_completion(messages, max_tokens=1)["usage"]
    del reference
    c = arun(get_llm(f"local:{gguf_path}").complete([Message("user", "Name three colours.")],
                                                   max_tokens=1))
    assert c.usage.prompt_tokens == expected["prompt_tokens"]


def test_grammar_yes_no(gguf_path, arun) -> None:
    c = arun(get_llm("local").complete(QUESTION, grammar=YES_NO, max_tokens=4))
    assert c.text in ("yes", "no")


def test_grammar_json_and_schema(gguf_path, arun) -> None:
    llm = get_llm("local")
    ask = [Message("user", "Describe a person as JSON with name and age.")]
    for options in ({"grammar": PERSON_GBNF}, {"json_schema": PERSON_SCHEMA}):
        c = arun(llm.complete(ask, max_tokens=60, **options))
        data = json.loads(c.text)
        assert set(data) == {"name", "age"} and isinstance(data["age"], int)


SAMPLE = """
import asyncio
from plait.llm import Message, get_llm
ask = [Message("user", "Write one sentence about cats.")]
for _ in range(2):
    print(repr(asyncio.run(get_llm("local").complete(ask, max_tokens=12, temperature=0.8)).text))
"""


def test_a_run_repeats_with_the_fixed_seed(gguf_path) -> None:
    """Sampling (temperature 0.8) repeats from a fresh process. Within one process
    the second call may differ: it reuses the cached prompt and evaluates its last
    token alone, whose logits differ from the batched ones in the last bits."""
    runs = [subprocess.run([sys.executable, "-c", SAMPLE], capture_output=True, text=True,
                           timeout=120) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.strip()


def test_concurrent_callers_queue_on_one_model(gguf_path, arun) -> None:
    llm = get_llm("local")
    before = threading.active_count()
    order: list[int] = []

    async def one(i: int) -> str:
        parts = []
        async for d in llm.stream([Message("user", f"Say a word about the number {i}.")],
                                  max_tokens=8):
            order.append(i)
            parts.append(d)
        return "".join(parts)

    async def body():
        return await asyncio.gather(*(one(i) for i in range(3)))

    assert all(text.strip() for text in arun(body()))
    # one model, one lock: each call streams to the end before the next starts
    runs = [i for k, i in enumerate(order) if k == 0 or order[k - 1] != i]
    assert sorted(runs) == [0, 1, 2]
    from plait.llm._local import _models

    # (other tests load it on one thread too: a model per thread count)
    assert [key[::2] for key in _models].count((str(gguf_path), llm.threads)) == 1
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before  # the workers are gone


def test_abandoned_stream_frees_the_model(gguf_path, arun) -> None:
    llm = get_llm("local")

    async def body() -> str:
        stream = llm.stream([Message("user", "Tell a long story.")], max_tokens=400)
        async for _ in stream:
            break
        await stream.aclose()
        # the next call must not wait for the abandoned 400 tokens
        start = time.monotonic()
        c = await llm.complete(QUESTION, grammar=YES_NO, max_tokens=4)
        assert time.monotonic() - start < 3.0
        return c.text

    assert arun(body(), timeout=30) in ("yes", "no")


def test_bad_grammar_is_a_clear_error(gguf_path, arun) -> None:
    import pytest

    from plait.llm import LLMOptionError

    with pytest.raises(LLMOptionError, match="grammar"):
        arun(get_llm("local").complete(QUESTION, grammar="root ::= (", max_tokens=4))


def test_the_model_runs_on_the_threads_asked_for(gguf_path, arun) -> None:
    from plait.llm._local import _models, default_threads

    for spec, want in (("local:threads=1", 1), ("local", default_threads())):
        llm = get_llm(spec)
        assert arun(llm.complete([Message("user", "Hi")], max_tokens=2)).text
        llama = _models[(str(gguf_path), llm.n_ctx, want)].llama  # type: ignore[attr-defined]
        assert (llama.context_params.n_threads, llama.context_params.n_threads_batch) == (
            want, want)


def test_prefill_continues_the_prefix(gguf_path, arun) -> None:
    """The bundled model continues an assistant prefix as if it had written it: at
    temperature 0 a prefix cut from its own reply is continued with the rest of that
    reply. The reply is the continuation only; its prompt counts the prefix; a
    grammar constrains the continuation (how a fork block is forced on this model)."""
    llm = get_llm("local")
    question = [Message("system", "Answer briefly."), Message("user", "Name three colours.")]

    async def body():
        whole = await llm.complete(question, max_tokens=16, temperature=0)
        prefix = " ".join(whole.text.split(" ")[:3])
        rest = await llm.complete(question, prefill=prefix, max_tokens=8, temperature=0)
        forced = await llm.complete(question, prefill="<Parallel>\n<Outlines>\n<Outline>1:",
                                    grammar='root ::= " red" "</Outline>"', max_tokens=10)
        return whole, prefix, rest, forced

    whole, prefix, rest, forced = arun(body(), timeout=180)
    assert prefix and rest.text and not rest.text.startswith(prefix)
    assert (prefix + rest.text)[: len(whole.text)] == whole.text[: len(prefix + rest.text)]
    prefix_tokens = len(llm_tokens(gguf_path, prefix))
    assert rest.usage.prompt_tokens in range(whole.usage.prompt_tokens + prefix_tokens - 1,
                                             whole.usage.prompt_tokens + prefix_tokens + 2)
    assert forced.text == " red</Outline>"


def llm_tokens(gguf_path, text: str) -> list[int]:
    from plait.llm._local import DEFAULT_N_CTX, DEFAULT_SEED, _load, default_threads

    loaded = _load(str(gguf_path), DEFAULT_N_CTX, DEFAULT_SEED, default_threads())
    return loaded.llama.tokenize(text.encode(), add_bos=False, special=True)
