"""Helpers shared by the test packages (fixtures are in tests/conftest.py)."""

from __future__ import annotations

import subprocess
from typing import Any

import socket

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_schema(dsn: str, schema: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"


def end(proc: "subprocess.Popen[Any]", grace: float = 10.0) -> None:
    """End a process a test started, by its id: SIGTERM, then SIGKILL after `grace` s."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)
