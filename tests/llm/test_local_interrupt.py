"""The local backend stopped early: llama.cpp aborts at its next graph node (even
mid-prompt), the worker thread is joined before the stream ends, and the model
is never freed under a decode."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

from plait.llm import Message, get_llm
from plait.llm import _local

# ~1,500 prompt tokens: evaluating them takes seconds on 2 cores (~4 ms a token),
# so a call stopped 0.3 s in is stopped mid-prompt.
LONG = [Message("user", "Count the words. " + "word " * 1500)]


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "plait-llama"]


async def warm(llm) -> None:
    await llm.complete([Message("user", "Hi")], max_tokens=1)  # the model is loaded


def test_cancelled_mid_prompt_stops_at_once_and_the_model_still_answers(gguf_path, arun):
    llm = get_llm("local")

    async def body():
        await warm(llm)
        deltas: list[str] = []

        async def consume():
            async for delta in llm.stream(LONG, max_tokens=8):
                deltas.append(delta)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        assert not task.done() and not deltas  # still evaluating the prompt
        t = time.perf_counter()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        stopped = time.perf_counter() - t
        assert not workers()  # joined before the cancellation completed
        after = await llm.complete([Message("user", "Name a colour.")], max_tokens=6)
        return stopped, after

    stopped, after = arun(body())
    # Without the abort the prompt alone takes seconds; with it, one graph node.
    assert stopped < 0.5, stopped
    assert after.text.strip() and after.usage.completion_tokens > 0


def test_a_timeout_or_a_closed_stream_joins_the_worker(gguf_path, arun):
    llm = get_llm("local")

    async def body():
        await warm(llm)
        t = time.perf_counter()
        try:
            await asyncio.wait_for(llm.complete(LONG, max_tokens=8), 0.3)
        except TimeoutError:
            pass
        timed_out = time.perf_counter() - t
        assert not workers()
        stream = llm.stream([Message("user", "Tell a long story.")], max_tokens=200)
        got = []
        async for delta in stream:
            got.append(delta)
            if len(got) == 3:
                break
        t = time.perf_counter()
        await stream.aclose()  # mid-answer
        closed = time.perf_counter() - t
        assert not workers()
        return timed_out, got, closed

    timed_out, got, closed = arun(body())
    assert timed_out < 0.8, timed_out
    assert len(got) == 3 and closed < 0.5, closed


def test_the_model_is_not_freed_under_a_decode(gguf_path, arun):
    """`_close_all` (run at exit) takes the model's lock: it waits for a decode in
    flight instead of freeing the model under it."""
    llm = get_llm("local")
    closed = threading.Event()

    async def body():
        await warm(llm)
        loaded = next(iter(_local._models.values()))
        deltas = []
        async for delta in llm.stream([Message("user", "Tell a story.")], max_tokens=24):
            if not deltas:  # decoding: try to free the model now
                threading.Thread(target=lambda: (_local._close_all(), closed.set())).start()
                await asyncio.sleep(0.2)
                assert not closed.is_set() and loaded.lock.locked()
            deltas.append(delta)
        return deltas

    deltas = arun(body())
    assert closed.wait(10) and not _local._models
    assert len(deltas) > 3  # the decode went on to its end


EXIT_WITH_A_STREAM_OPEN = """
import asyncio
from plait.llm import Message, get_llm

async def main():
    stream = get_llm("local").stream([Message("user", "Tell a long story.")], max_tokens=400)
    async for _ in stream:
        return  # leaves the stream (and its decode) to asyncio.run's shutdown

asyncio.run(main())
print("exited")
"""


def test_a_process_that_leaves_a_stream_open_exits_cleanly(gguf_path):
    run = subprocess.run([sys.executable, "-c", EXIT_WITH_A_STREAM_OPEN],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])  # -11: a segfault
    assert run.stdout == "exited\n" and run.stderr == ""
