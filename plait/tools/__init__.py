"""Tools from anywhere: JSON-schema tools, OpenAI function definitions, MCP servers.

A Python function becomes a tool with `@plait.tool` (plait/runtime/_tools.py); everything
here builds the same `Tool` from a JSON schema (`Tool.from_schema`).
"""

from plait.tools._mcp import McpServer, McpToolError, mcp_tools
from plait.tools._openai import tools_from_openai

__all__ = ["McpServer", "McpToolError", "mcp_tools", "tools_from_openai"]
