"""An MCP server for the tests, written with the mcp SDK (`MCPServer`, FastMCP's
name since mcp 2).

`python mcp_server.py [--log FILE]` serves over stdio; `python mcp_server.py
[--log FILE] http PORT` over streamable HTTP on 127.0.0.1:PORT at /mcp. With a
log file it appends lines there: `boot PID` when it starts, `start NAME T PID` and `end NAME T PID`
around each call (T: the machine's monotonic clock, the same in every process),
so a test can see its pid and whether calls overlapped.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Annotated, Literal

from pydantic import Field

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

server = MCPServer("plait-test")


LOG: str | None = None


def _log(*words: object) -> None:
    path = LOG
    if path:
        with open(path, "a") as f:
            f.write(" ".join(str(w) for w in words) + "\n")


async def _timed(name: str, seconds: float) -> None:
    _log("start", name, f"{time.monotonic():.6f}", os.getpid())
    await asyncio.sleep(seconds)
    _log("end", name, f"{time.monotonic():.6f}", os.getpid())


@server.tool()
async def slow_echo(text: str, seconds: float = 0.5) -> str:
    """Echo `text` after waiting `seconds`."""
    await _timed("slow_echo", seconds)
    return text


@server.tool()
async def fail(reason: str) -> str:
    """Always fails with `reason`."""
    raise ToolError(f"failed on purpose: {reason}")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def height(mountain: Literal["K2", "Everest"], unit: Literal["m", "ft"] = "m") -> int:
    """Height of a mountain."""
    await _timed("height", 0.5)
    metres = {"K2": 8611, "Everest": 8849}[mountain]
    return metres if unit == "m" else round(metres * 3.28084)


@server.tool()
async def die_once(marker: str) -> str:
    """Ends the server abruptly (a crash mid-call) unless file `marker` exists,
    which it creates: the first call crashes, a retry on a new server succeeds."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        # A chatty server: far more stderr than plait keeps, its last words at the end.
        sys.stderr.write("noise " * 50_000 + "\nlast words: crashing on purpose\n")
        sys.stderr.flush()
        os._exit(3)
    return "survived"


@server.tool()
async def read_file(path: Annotated[str, Field(alias="file-path")]) -> str:
    """A parameter a plan cannot name (`file-path`): plait leaves this tool out."""
    return path


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--log"]:
        LOG, argv = argv[1], argv[2:]
    _log("boot", os.getpid())
    if argv[:1] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(argv[1]))
    else:
        server.run()
