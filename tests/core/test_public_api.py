"""The curated public surface of `plait`: exactly these names, documented, no private leaks."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import types

import plait

EXPECTED = {
    # entry points
    "workflow",
    "Workflow",
    "run",
    "arun",
    "run_graph",
    "arun_graph",
    "resume",
    "aresume",
    "ask",
    "aask",
    "Answer",
    "draft",
    "question",
    "generate",
    "llm_tool",
    "LLMTool",
    "tool",
    "Tool",
    "ToolPolicy",
    "ToolWarning",
    # parallel reasoning threads
    "reason",
    "areason",
    "reasoner",
    "pdr",
    "Reasoning",
    # tools from anywhere
    "tools_from_openai",
    "mcp_tools",
    "node_key",
    "add_tokens",
    # datasets
    "map",
    "amap",
    "asker",
    "stream",
    "DROP",
    "MapResult",
    "Row",
    "RowError",
    # graph data
    "Graph",
    "Node",
    "Ref",
    "Template",
    # results
    "RunResult",
    "NodeRecord",
    # errors
    "PlaitError",
    "GraphError",
    "ToolArgumentError",
    "RunError",
    "NodeError",
    "InDoubtError",
    "RefMisuseError",
    "RunOwnedError",
    "SchemaError",
    "McpToolError",
    "RayClusterError",
    # events
    "Event",
    "RunStarted",
    "RunFinished",
    "NodeAdded",
    "NodeReady",
    "NodeStarted",
    "NodeFinished",
    "NodeRetried",
    "NodeFailed",
    "NodeSkipped",
    "NodeCancelled",
}

# Public subpackages may appear as attributes once imported; they are not in __all__.
SUBPACKAGES = {"cli", "compiler", "cost", "data", "examples", "executors", "journal", "llm",
               "otel", "runtime", "timeline", "tools", "ui"}
# `plait.generate` and `plait.reason` are the functions; their packages are in
# sys.modules only (`from plait.reason import ThreadWeaver` works).


def test_all_is_exactly_the_expected_set() -> None:
    assert len(plait.__all__) == len(set(plait.__all__)), "duplicates in __all__"
    assert set(plait.__all__) == EXPECTED


def test_every_exported_name_is_importable() -> None:
    namespace: dict = {}
    exec("from plait import *", namespace)
    assert set(namespace) - {"__builtins__"} == EXPECTED
    module = importlib.import_module("plait")
    for name in plait.__all__:
        assert getattr(module, name) is namespace[name]


def _authored_doc(obj: object) -> str | None:
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else obj.__doc__
    if not doc or not doc.strip():
        return None
    if isinstance(obj, type) and dataclasses.is_dataclass(obj):
        if doc.startswith(f"{obj.__name__}("):
            return None  # the signature dataclasses write when there is no docstring
    return doc


def test_every_exported_class_and_function_has_a_docstring() -> None:
    missing = sorted(
        name
        for name in plait.__all__
        if (inspect.isclass(o := getattr(plait, name)) or inspect.isroutine(o))
        and _authored_doc(o) is None
    )
    assert missing == []


def test_no_undeclared_public_names() -> None:
    """Nothing public sits in the package namespace without being in __all__."""
    public = {n for n in vars(plait) if not n.startswith("_")}
    extra = public - set(plait.__all__)
    for name in extra:
        value = getattr(plait, name)
        assert isinstance(value, types.ModuleType), f"plait.{name} is public but not in __all__"
        assert name in SUBPACKAGES and value.__name__ == f"plait.{name}"
    assert not any(n.startswith("_") for n in plait.__all__)
    assert not any(isinstance(getattr(plait, n), types.ModuleType) for n in plait.__all__)


def test_exported_objects_do_not_show_private_module_names() -> None:
    """`plait._errors.RunError` in a traceback or repr leaks a private module's name."""
    leaking = sorted(
        f"{name} ({o.__module__})"
        for name in plait.__all__
        if (inspect.isclass(o := getattr(plait, name)) or inspect.isroutine(o))
        and o.__module__ != "plait"
    )
    assert leaking == []


def test_version() -> None:
    assert isinstance(plait.__version__, str) and plait.__version__.count(".") >= 2
