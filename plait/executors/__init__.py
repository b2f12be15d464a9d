"""Where a run's tool calls run: the executor seam (docs/ray.md).

`LocalExecutor` (the default: async tools in the run's loop, sync ones in threads)
and `RayExecutor` (each call a Ray task, extra `plait[ray]`). A run takes one with
`plait.run(..., executor="ray")` (or an instance); a tool declared with
`resources={...}` runs on Ray whatever the run's executor, and an LLM call
(`plait.generate`, the planner, the joiner) in the controller whatever it is.
"""

from __future__ import annotations

from typing import Any

from plait._errors import OptionError
from plait.executors._base import IN_CONTROLLER, Executor, in_controller
from plait.executors._local import LocalExecutor
from plait.executors._ray import ExecutorError, RayClusterError, RayExecutor

__all__ = ["IN_CONTROLLER", "Executor", "ExecutorError", "LocalExecutor", "RayClusterError",
           "RayExecutor", "executor_name", "executor_of", "in_controller", "remote_executor"]

_default_ray: RayExecutor | None = None


def remote_executor() -> RayExecutor:
    """The process's default Ray executor (the cluster at RAY_ADDRESS, or the Ray this
    process is connected to): where `resources=` tools and `executor="ray"` runs go."""
    global _default_ray
    if _default_ray is None:
        _default_ray = RayExecutor()
    return _default_ray


def executor_of(spec: str | Executor | None) -> Executor | None:
    """The executor `executor=` names: None or "local" (a run's own local one: None),
    "ray" (`remote_executor()`), or an executor as it is."""
    if spec is None or spec == "local":
        return None
    if spec == "ray":
        return remote_executor()
    if isinstance(spec, str) or not isinstance(spec, Executor):
        raise OptionError(f"executor must be 'local', 'ray' or an executor, got {spec!r}")
    return spec


def executor_name(spec: str | Executor | None) -> str | None:
    """What a run's journal keeps of its `executor=`, for a resume to pass back:
    "local" or "ray" (a `RayExecutor` too: its address is not kept, as it may hold
    a password; the resume reaches RAY_ADDRESS), None for one of the caller's own."""
    if spec is None or spec in ("local", "ray"):
        return spec
    if isinstance(spec, RayExecutor):
        return "ray"
    if isinstance(spec, LocalExecutor):
        return "local"
    return None
