"""An MCP server for the tests (mcp SDK's MCPServer, formerly FastMCP).

`python mcp_server.py` serves over stdio; `python mcp_server.py http PORT` over
streamable HTTP on 127.0.0.1:PORT at /mcp. Each call appends
`name start end` (monotonic clock of this machine) to $MCP_TEST_LOG when set,
so a test can check that calls overlapped.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

server = MCPServer("plait-test")


def _log(name: str, start: float) -> None:
    path = os.environ.get("MCP_TEST_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{name} {start:.6f} {time.monotonic():.6f} {os.getpid()}\n")


@server.tool()
async def slow_echo(text: str, seconds: float = 0.5) -> str:
    """Echo `text` after waiting `seconds`."""
    start = time.monotonic()
    await asyncio.sleep(seconds)
    _log("slow_echo", start)
    return text


@server.tool()
async def fail(reason: str) -> str:
    """Always fails with `reason`."""
    raise ToolError(f"failed on purpose: {reason}")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def height(mountain: Literal["K2", "Everest"], unit: Literal["m", "ft"] = "m") -> int:
    """Height of a mountain."""
    start = time.monotonic()
    await asyncio.sleep(0.3)
    _log("height", start)
    metres = {"K2": 8611, "Everest": 8849}[mountain]
    return metres if unit == "m" else round(metres * 3.28084)


@server.tool()
async def die() -> str:
    """Ends the server process abruptly (a crash mid-call)."""
    os._exit(3)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
