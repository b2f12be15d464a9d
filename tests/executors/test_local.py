"""The executor contract on the local executor (the default), by name and as an instance."""

from __future__ import annotations

import asyncio

import plait
from plait.executors import LocalExecutor
from tests.executors.contract import ExecutorContract, chain


class TestLocal(ExecutorContract):
    name = "local"


def test_a_local_executor_given_by_its_owner_stays_open_for_the_next_run() -> None:
    given = LocalExecutor(max_threads=2)
    try:
        for x in (1, 2):
            assert asyncio.run(plait.arun(chain, x, executor=given)).value == 2 * (x + 1) + 1
    finally:
        given.close()
