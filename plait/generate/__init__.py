"""LLM calls as nodes: `plait.generate`, `plait.llm_tool`, and the one LLM-call node
every LLM call of plait runs as (the compiler's planner and joiner too).

See docs/generate.md.
"""

from plait.generate._api import LLMTool, generate, llm_tool
from plait.generate._node import CallHooks, llm_call_tool, llm_request, submit_call
from plait.generate._pool import LLMPool, current_pool, using_pool
from plait.generate._schema import SchemaError

__all__ = [
    "CallHooks",
    "LLMPool",
    "LLMTool",
    "SchemaError",
    "current_pool",
    "generate",
    "llm_call_tool",
    "llm_request",
    "llm_tool",
    "submit_call",
    "using_pool",
]
