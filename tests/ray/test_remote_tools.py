"""Remote tools on a real Ray cluster: where calls run, stopping them, and the errors
a user meets (no Ray, no cluster at the address, resources no node has)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import plait
from plait.executors import RayExecutor
from tests._support import free_port
from tests.ray.conftest import RayCluster

ROOT = Path(__file__).resolve().parents[2]


@plait.tool
def where() -> dict[str, Any]:
    """The process and Ray node this call runs on."""
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    return {"pid": os.getpid(), "node": node}


@plait.tool(resources={"GPU": 1})
def on_gpu() -> dict[str, Any]:
    """Where a call asking for a GPU runs."""
    import ray

    return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}


@plait.tool(resources={"CPU": 2})
def two_cpus() -> int:
    """Asks for two CPUs in one task: no node of the test cluster has them."""
    return 2


@plait.tool(timeout=1.0)
def sleeps(path: str) -> str:
    """Writes its pid, then blocks in one long sleep (deaf to KeyboardInterrupt)."""
    Path(path).write_text(str(os.getpid()))
    time.sleep(60)
    return "woke"


@plait.tool
def fails_once(flag: str) -> dict[str, Any]:
    """Fails the first time (no flag file yet); then says where it runs."""
    if not Path(flag).exists():
        Path(flag).write_text("1")
        raise RuntimeError("the first time")
    return {"pid": os.getpid()}


@plait.workflow
async def placed() -> Any:
    return [await on_gpu(), await where()]


@plait.workflow
async def anywhere() -> Any:
    return await where()


@plait.workflow
async def sleeper(path: str) -> Any:
    return await sleeps(path)


@plait.workflow
async def greedy() -> Any:
    return await two_cpus()


@plait.workflow
async def where_then_fails_once(flag: str) -> Any:
    return [await where(), await fails_once(flag)]


def test_a_resumed_run_runs_on_the_executor_it_was_started_with(
        ray_cluster: RayCluster, tmp_path: Path) -> None:
    journal, flag = str(tmp_path / "runs.db"), str(tmp_path / "flag")
    first = plait.run(where_then_fails_once, flag, executor="ray", journal=journal,
                      run_id="r", raise_on_error=False)
    assert first.status == "failed" and first.nodes[0].value["pid"] != os.getpid()
    again = plait.resume("r", journal)  # no executor= given: the journal's
    assert again.status == "done"
    assert again.value[0] == first.nodes[0].value  # replayed
    assert again.value[1]["pid"] != os.getpid()  # ran on Ray again


def test_executor_ray_runs_every_call_in_a_ray_worker(ray_cluster: RayCluster) -> None:
    seen = plait.run(anywhere, executor="ray").value
    assert seen["pid"] != os.getpid()
    assert seen["node"] in {ray_cluster.head, ray_cluster.cpu_node, ray_cluster.gpu_node}


def test_a_gpu_tool_runs_on_the_gpu_node_and_the_rest_stays_local(
        ray_cluster: RayCluster) -> None:
    gpu, local = plait.run(placed).value  # the run's executor: the default, local
    assert gpu["node"] == ray_cluster.gpu_node
    assert gpu["pid"] != os.getpid()
    assert local["pid"] == os.getpid()  # a tool without resources= runs here


def test_a_cancelled_task_in_a_blocking_call_is_stopped(ray_cluster: RayCluster,
                                                       tmp_path: Path) -> None:
    path = tmp_path / "pid"
    started = time.monotonic()
    result = plait.run(sleeper, str(path), executor="ray", raise_on_error=False)
    assert isinstance(result.error.__cause__, TimeoutError)
    assert time.monotonic() - started < 10  # timeout 1 s + the grace before the kill
    pid = int(path.read_text())
    assert pid != os.getpid()
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the worker stuck in the cancelled call is still running"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")  # a zombie has ended


def test_resources_no_node_has_fail_clearly_after_a_bounded_wait(
        ray_cluster: RayCluster) -> None:
    started = time.monotonic()
    result = plait.run(greedy, executor=RayExecutor(wait_for_resources=1.0),
                       raise_on_error=False)
    assert time.monotonic() - started < 10
    text = str(result.error)
    assert "ExecutorError" in text and "'two_cpus' asks for CPU=2" in text
    assert "the most any node has: CPU=1" in text and "3 nodes alive" in text
    assert result.nodes[0].attempts == 1  # not retried: waiting again would not help


def _script(code: str, tmp_path: Path, env: dict[str, str] | None = None) -> str:
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(code))
    environ = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    environ["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={**environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_without_ray_installed_the_error_names_the_extra(tmp_path: Path) -> None:
    out = _script("""
        import sys
        sys.modules["ray"] = None  # as if Ray were not installed
        import plait

        @plait.tool(resources={"GPU": 1})
        def embed(text: str) -> int:
            '''Needs a GPU.'''
            return len(text)

        @plait.workflow
        async def wf():
            return await embed("x")

        try:
            plait.run(wf, executor="ray")
        except ImportError as exc:
            print("run:", exc)
        result = plait.run(wf, raise_on_error=False)  # the tool's own resources=
        print("tool:", result.error)
    """, tmp_path)
    run, tool = out.splitlines()
    assert run.startswith("run: ") and "pip install 'plait[ray]'" in run
    assert tool.startswith("tool: node $0 (embed): ") and "pip install 'plait[ray]'" in tool


def test_an_unreachable_cluster_is_named_in_the_error(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    out = _script(f"""
        import time
        import plait
        from plait.executors import RayExecutor

        @plait.tool
        def one() -> int:
            '''1.'''
            return 1

        @plait.workflow
        async def wf():
            return await one()

        started = time.monotonic()
        result = plait.run(wf, executor=RayExecutor(address="127.0.0.1:{port}"),
                           raise_on_error=False)
        print(round(time.monotonic() - started, 1))
        print(result.error)
    """, tmp_path)
    seconds, error = out.splitlines()
    assert float(seconds) < 10
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in error
    assert error.startswith("node $0 (one): RayClusterError: ")


def test_plait_run_executor_ray_connects_to_the_cluster_at_ray_address(
        ray_cluster: RayCluster, tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(textwrap.dedent("""
        import os
        import plait

        @plait.tool
        def pid() -> int:
            '''The process the call runs in.'''
            return os.getpid()

        @plait.workflow
        async def wf():
            return {"driver": os.getpid(), "call": await pid()}
    """))
    environ = {**os.environ, "PYTHONPATH": f"{ROOT}:{tmp_path}",
               "RAY_ADDRESS": ray_cluster.address}
    proc = subprocess.run(
        [sys.executable, "-m", "plait", "run", "flow.py:wf", "--executor", "ray",
         "--no-journal", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=90, env=environ)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    value = json.loads(proc.stdout)["value"]
    assert value["call"] != value["driver"]


@plait.tool
def process_of(entity: str) -> str:
    """Which process looked `entity` up."""
    return f"{entity}: pid {os.getpid()}"


def test_a_questions_tasks_run_on_ray_and_its_model_calls_here(ray_cluster: RayCluster) -> None:
    from tests.compiler.conftest import scripted

    plan = '1. process_of("a")\n2. process_of("b")\n3. join()'
    llm = scripted({"plan": plan, "joiner": '{"thought": "t", "action": "finish", '
                                             '"answer": "done"}'})
    answer = plait.ask("Where?", [process_of], model=llm, executor="ray")
    assert str(answer) == "done"
    values = [t.value for t in answer.tasks]
    assert [v.split(":")[0] for v in values] == ["a", "b"]
    assert all(not v.endswith(f"pid {os.getpid()}") for v in values)
    assert [c.role for c in answer.llm_calls] == ["planner", "joiner"]
