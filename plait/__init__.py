"""plait: run LLM agent work as a parallel, streaming, durable dataflow graph."""

from plait._api import Workflow, aresume, arun, arun_graph, resume, run, run_graph, workflow
from plait.runtime._engine import NodeError, add_tokens, node_key
from plait._errors import (
    GraphError,
    InDoubtError,
    PlaitError,
    RefMisuseError,
    RunError,
    ToolArgumentError,
)
from plait.runtime._events import (
    Event,
    NodeAdded,
    NodeCancelled,
    NodeFailed,
    NodeFinished,
    NodeReady,
    NodeRetried,
    NodeSkipped,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from plait.runtime._graph import Graph, Node, Ref, Template
from plait.runtime._result import NodeRecord, RunResult
from plait.runtime._tools import Tool, ToolPolicy, ToolWarning, tool
from plait.compiler import Answer, aask, ask, asker, draft, question
from plait.data import DROP, MapResult, Row, RowError, amap, map, stream
from plait.executors import RayClusterError
from plait.generate import LLMTool, SchemaError, generate, llm_tool
from plait.journal import RunOwnedError
from plait.reason import Reasoning, areason, pdr, reason, reasoner
from plait.tools import McpToolError, mcp_tools, tools_from_openai

__version__ = "0.1.0"

__all__ = [
    "DROP",
    "Answer",
    "Event",
    "Graph",
    "GraphError",
    "InDoubtError",
    "MapResult",
    "McpToolError",
    "LLMTool",
    "Node",
    "NodeAdded",
    "NodeCancelled",
    "NodeError",
    "NodeFailed",
    "NodeFinished",
    "NodeReady",
    "NodeRecord",
    "NodeRetried",
    "NodeSkipped",
    "NodeStarted",
    "PlaitError",
    "Ref",
    "RayClusterError",
    "RefMisuseError",
    "Row",
    "RowError",
    "Reasoning",
    "RunError",
    "RunFinished",
    "RunOwnedError",
    "RunResult",
    "RunStarted",
    "SchemaError",
    "Template",
    "Tool",
    "ToolArgumentError",
    "ToolPolicy",
    "ToolWarning",
    "Workflow",
    "aask",
    "add_tokens",
    "amap",
    "areason",
    "aresume",
    "arun",
    "arun_graph",
    "ask",
    "draft",
    "question",
    "asker",
    "map",
    "mcp_tools",
    "generate",
    "llm_tool",
    "node_key",
    "pdr",
    "reason",
    "reasoner",
    "resume",
    "run",
    "run_graph",
    "stream",
    "tool",
    "tools_from_openai",
    "workflow",
]


# Objects show as `plait.X`, not as the private module they live in (as httpx does).
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("plait."):
        try:
            _obj.__module__ = "plait"
        except (AttributeError, TypeError):  # pragma: no cover - builtins
            pass
del _name, _obj
