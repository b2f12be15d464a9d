"""What the engine's fast paths must keep: a chain handed from task to task, the body
in the caller's task, cancels before a node starts, arguments pydantic passes through."""

from __future__ import annotations

import asyncio
import contextvars
import re
import time
from typing import Annotated, Any, Literal, Optional

import pydantic
import pytest

import plait
from plait import RunError
from plait.runtime._engine import new_run_id
from plait._errors import ToolArgumentError


def run_bounded(coro: Any, limit: float = 10.0) -> Any:
    async def main() -> Any:
        try:
            return await asyncio.wait_for(coro, limit)
        except TimeoutError:
            pytest.fail(f"the run did not end within {limit} s")

    return asyncio.run(main())


@plait.tool
async def inc(x: int) -> int:
    """x + 1."""
    return x + 1


@plait.tool
async def boom(after: Any = None) -> int:
    """Fails."""
    raise ValueError("boom")


# ---------------------------------------------------------------- chains


def test_a_chain_runs_in_one_task_and_gives_the_loop_turns() -> None:
    tasks: set[asyncio.Task[Any]] = set()
    ticks = 0

    @plait.tool
    async def link(x: int) -> int:
        """Counts its task; a little CPU work, no await."""
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        sum(range(200))
        return x + 1

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    @plait.workflow
    async def wf() -> Any:
        ref = link(0)
        for _ in range(2999):
            ref = link(ref)
        return ref

    async def main() -> int:
        t = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        value = (await plait.arun(wf)).value
        during = ticks - before
        t.cancel()
        assert during > 3, "a long chain kept the loop from other tasks"
        return value

    assert run_bounded(main()) == 3000
    assert len(tasks) == 1, f"a chain of 3000 links used {len(tasks)} tasks"


def test_a_handed_over_node_is_cancelled_like_any_other() -> None:
    cancelled: list[str] = []

    @plait.tool
    async def long(x: int) -> int:
        """Waits 30 s unless cancelled."""
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append("long")
            raise
        return x

    @plait.workflow
    async def wf() -> Any:
        chained = long(inc(1))  # runs in inc's task
        await asyncio.sleep(0.05)
        boom()
        return chained

    t0 = time.perf_counter()
    with pytest.raises(RunError) as info:
        run_bounded(plait.arun(wf, on_error="cancel"), limit=5)
    assert time.perf_counter() - t0 < 2
    assert cancelled == ["long"]
    assert [r.state for r in info.value.result.nodes] == ["done", "cancelled", "failed"]


def test_a_handed_over_node_keeps_its_retries_and_timeout() -> None:
    tries: list[int] = []

    @plait.tool(retries=1, backoff=0.0)
    async def flaky(x: int) -> int:
        """Fails on its first try."""
        tries.append(x)
        if len(tries) == 1:
            raise ConnectionError("first")
        return x * 10

    @plait.tool(timeout=0.05)
    async def slow(x: int) -> int:
        """Takes longer than its timeout."""
        await asyncio.sleep(1)
        return x

    @plait.workflow
    async def wf() -> Any:
        good = flaky(inc(1))
        late = slow(inc(2))
        return [good, late]

    result = run_bounded(plait.arun(wf, on_error="continue", raise_on_error=False))
    assert tries == [2, 2]
    states = [(r.tool, r.state, r.attempts) for r in result.nodes]
    assert states == [("inc", "done", 1), ("flaky", "done", 2), ("inc", "done", 1),
                      ("slow", "failed", 1)]
    assert result.nodes[1].value == 20
    assert isinstance(result.nodes[3].error, TimeoutError)


def test_context_variables_flow_to_children_as_before_and_not_between_siblings() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("plait_test_var", default="-")
    seen: dict[str, str] = {}

    @plait.tool
    async def setter(name: str, after: Any = None) -> str:
        """Sets the variable, says what it saw."""
        seen[name] = var.get()
        var.set(name)
        return name

    @plait.workflow
    async def wf() -> Any:
        root = setter("root")
        # Both start when root finishes; one runs in root's task, one in a new one.
        return [setter("left", root), setter("right", root)]

    run_bounded(plait.arun(wf))
    assert seen == {"root": "-", "left": "root", "right": "root"}


# ---------------------------------------------------------------- cancels


def test_a_node_cancelled_before_its_first_step_is_settled() -> None:
    @plait.tool
    async def slow() -> int:
        """Waits."""
        await asyncio.sleep(1)
        return 1

    @plait.workflow
    async def wf() -> Any:
        boom()  # fails in its first step, before the sibling's task has started
        return slow()

    with pytest.raises(RunError) as info:
        run_bounded(plait.arun(wf, on_error="cancel"), limit=5)
    assert [r.state for r in info.value.result.nodes] == ["failed", "cancelled"]


# ---------------------------------------------------------------- the body


def test_the_body_runs_in_the_callers_task_so_asyncio_timeout_works_in_it() -> None:
    @plait.tool
    async def slow(x: int) -> int:
        """Takes 0.2 s."""
        await asyncio.sleep(0.2)
        return x

    @plait.workflow
    async def wf() -> Any:
        ref = slow(1)
        try:
            async with asyncio.timeout(0.02):
                await ref
        except TimeoutError:
            return "gave up"
        return "waited"

    async def main() -> None:
        result = await plait.arun(wf)
        assert result.value == "gave up"
        assert result.nodes[0].state == "done"  # the node itself ran to its end
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0

    run_bounded(main())


def test_a_driver_fault_wakes_a_waiting_body_and_takes_its_cancel_back() -> None:
    class Broken(Exception):
        pass

    def listener(event: plait.Event) -> None:
        if type(event) is plait.NodeFinished:
            raise Broken("listener failed")

    @plait.workflow
    async def wf() -> Any:
        inc(1)
        await asyncio.sleep(30)  # woken by the fault, not by the clock
        return "never"

    async def main() -> None:
        before = asyncio.all_tasks()
        t0 = time.perf_counter()
        with pytest.raises(Broken):
            await plait.arun(wf, listeners=[listener])
        assert time.perf_counter() - t0 < 2
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        await asyncio.sleep(0.01)  # not cancelled by a leftover request
        assert asyncio.all_tasks() == before

    run_bounded(main())


def test_a_cancel_from_outside_during_a_fault_stays_a_cancel() -> None:
    def listener(event: plait.Event) -> None:
        if type(event) is plait.NodeFinished:
            raise RuntimeError("listener failed")

    @plait.workflow
    async def wf() -> Any:
        inc(1)
        await asyncio.sleep(30)

    async def main() -> None:
        task = asyncio.create_task(plait.arun(wf, listeners=[listener]))
        await asyncio.sleep(0)  # the body is waiting; the node finishes next
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_bounded(main())


def test_run_ids_are_twelve_hex_digits() -> None:
    ids = {new_run_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids)


# ---------------------------------------------------------------- arguments


def _tool(annotation: Any) -> plait.Tool:
    async def fn(v):  # type: ignore[no-untyped-def]
        """Returns v."""
        return v

    # Set as objects: this module's annotations are strings (from __future__).
    fn.__annotations__ = {} if annotation is None else {"v": annotation}
    return plait.tool(fn, name="t")


ANNOTATIONS = [None, Any, int, float, str, bool, bytes, type(None), Optional[int],
               int | str, float | None, bool | int, Annotated[int, pydantic.Field(gt=0)],
               Literal["a", "b"], list[int], dict]
VALUES = [0, 1, -1, 2**70, True, False, 1.0, 1.5, float("inf"), "a", "1", "", b"x", None,
          [1], {"a": 1}, (1,)]


@pytest.mark.parametrize("annotation", ANNOTATIONS, ids=repr)
def test_arguments_pydantic_passes_through_are_checked_without_it_and_alike(
    annotation: Any,
) -> None:
    t = _tool(annotation)
    for value in VALUES:
        try:
            expected = t._validate({"v": value})
        except pydantic.ValidationError:
            with pytest.raises(ToolArgumentError):
                t.validate({"v": value})
            continue
        got = t.validate({"v": value})
        assert got == expected and type(got["v"]) is type(expected["v"]), (annotation, value)


def test_pass_through_keeps_pydantics_order_and_required_checks() -> None:
    @plait.tool
    async def f(a: int, b: str = "x", *, c: float = 1.0) -> None:
        """Three parameters."""

    assert list(f.validate({"c": 2.0, "a": 1})) == ["a", "c"]  # pydantic's order
    assert f.validate({"a": 1, "c": 2.0}) == {"a": 1, "c": 2.0}
    with pytest.raises(ToolArgumentError, match="required"):
        f.validate({"b": "y"})
    assert f.validate({"b": "y"}, partial=True) == {"b": "y"}
    with pytest.raises(ToolArgumentError):
        f.validate({"a": 1, "d": 2})  # unknown name
    given = {"a": 1}
    assert f.validate(given) == given and f.validate(given) is not given  # a new dict
    assert f._checked(given) is given  # the engine's check: pydantic not called, no copy
    assert f._checked({"a": True}) == {"a": 1}  # a bool for an int: pydantic coerces


def test_a_seeded_scheduler_draws_its_jitter_from_random_with_that_seed() -> None:
    import random

    from plait.runtime._scheduler import RetryLater, Scheduler
    from plait.runtime._tools import ToolPolicy

    policy = ToolPolicy(retries=3, backoff=0.1, jitter=0.5)
    s = Scheduler(seed=11)  # its random source is made on the first retry, same draws
    s.add(0, "t", (), policy)
    delays = []
    for _ in range(3):
        (retry,) = [a for a in s.fail(0, RuntimeError()) if type(a) is RetryLater]
        delays.append(retry.delay)
        s.retry_due(0)
    rng = random.Random(11)
    assert delays == [policy.delay(k, rng.random()) for k in (1, 2, 3)]
