"""A small MCP server (the mcp SDK's MCPServer, FastMCP's name since mcp 2) for
docs/tools.md: `plait ask ... --mcp "python examples/mcp_server.py"` starts it
over stdio; `python examples/mcp_server.py http 8000` serves it over streamable
HTTP at http://127.0.0.1:8000/mcp."""

import asyncio
import sys
from typing import Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("mountains")
HEIGHTS = {"K2": 8611, "Mount Everest": 8849, "Mont Blanc": 4806}


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def height(mountain: str, unit: Literal["m", "ft"] = "m") -> float:
    """The height of a mountain, in metres or feet."""
    await asyncio.sleep(0.5)  # a slow service: the plan's calls overlap
    metres = HEIGHTS[mountain]
    return metres if unit == "m" else round(metres * 3.28084, 1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
