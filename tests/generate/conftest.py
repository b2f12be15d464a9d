"""A scripted model that counts its calls, for the LLM-call node's tests.

The model is plait's own simulated backend (`SimLLM`): real streaming, real
timing (ttft, tokens/s), replies from a script. `Counted` records every call it
is asked to make (role, messages and the request's options), so a test can say
how many calls were paid and what reached the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from plait.llm import Message, SimLLM
from plait.llm._protocol import Request


class Counted(SimLLM):
    """A SimLLM that keeps every request it was asked to stream."""

    def __init__(self, reply: Callable[[Sequence[Message], str | None], str] | str,
                 *, ttft: float = 0.0, tps: float = 5000.0, spec: str = "sim") -> None:
        script = reply if callable(reply) else (lambda _m, _r: reply)
        super().__init__(script, ttft=ttft, tps=tps, spec=spec)
        self.requests: list[Request] = []

    def _check(self, request: Request) -> None:
        self.requests.append(request)

    @property
    def calls(self) -> int:
        return len(self.requests)

    @property
    def prompts(self) -> list[str]:
        return [r.messages[-1].content for r in self.requests]


@pytest.fixture
def journal(tmp_path: Path) -> str:
    """A real SQLite journal file of the test's own."""
    return str(tmp_path / "runs.db")


def echo(messages: Sequence[Message], role: str | None) -> str:
    return f"re: {messages[-1].content}"


@pytest.fixture
def model() -> Counted:
    return Counted(echo)


def only(values: Any) -> Any:
    (value,) = values
    return value
