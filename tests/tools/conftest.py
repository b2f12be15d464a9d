"""The test MCP server (tests/tools/mcp_server.py) over stdio and over streamable
HTTP, and what its log says (its pids, when each call started and ended)."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._support import end, free_port

SERVER = Path(__file__).with_name("mcp_server.py")


@dataclass
class ServerLog:
    path: Path

    def lines(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        return [line.split() for line in self.path.read_text().splitlines() if line]

    def pids(self) -> list[int]:
        return [int(w[1]) for w in self.lines() if w[0] == "boot"]

    def spans(self, name: str) -> list[tuple[float, float]]:
        """(start, end) of each finished call of tool `name`, by the server's clock."""
        starts = [float(w[2]) for w in self.lines() if w[:2] == ["start", name]]
        ends = [float(w[2]) for w in self.lines() if w[:2] == ["end", name]]
        return list(zip(sorted(starts), sorted(ends)))


def overlapped(spans: list[tuple[float, float]]) -> bool:
    """Every span started before any ended: they all ran at once."""
    return max(s for s, _ in spans) < min(e for _, e in spans)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def gone_within(pids: list[int], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def server_log(tmp_path: Path) -> ServerLog:
    return ServerLog(tmp_path / "mcp.log")


@pytest.fixture
def stdio_target(server_log: ServerLog) -> str:
    return shlex.join([sys.executable, str(SERVER), "--log", str(server_log.path)])


@pytest.fixture
def http_target(server_log: ServerLog) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SERVER), "--log", str(server_log.path),
                             "http", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the MCP test server did not listen on {port}")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        end(proc)


@pytest.fixture(params=["stdio", "http"])
def target(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_target")
