"""MCP servers as tool sources: a real server (tests/tools/mcp_server.py, written
with the mcp SDK) over stdio and over streamable HTTP on 127.0.0.1, called by
workflows and by `plait ask --mcp` in parallel; its failures are node errors;
its processes are gone after the run, after a crash, and after Ctrl-C."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import plait
from tests.compiler.interrupt_trial import cli_command

from .conftest import ServerLog, gone_within, overlapped

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}


@pytest.mark.timeout(90)
def test_the_tools_are_listed_with_their_schemas_and_hints(target):
    with pytest.warns(plait.ToolWarning, match="left out tool 'read_file': .*'file-path' is "
                      "not an identifier"):
        server = plait.mcp_tools(target)
    with server:
        tools = {t.name: t for t in server}
        assert sorted(tools) == ["die_once", "fail", "height", "slow_echo"]
        height = tools["height"]
        assert height.signature == (
            "height(mountain: Literal['K2', 'Everest'], *, unit: Literal['m', 'ft'] = 'm')")
        assert height.description == "Height of a mountain."
        assert height.policy.idempotent  # readOnlyHint
        assert not tools["slow_echo"].policy.idempotent
        with pytest.raises(plait.ToolArgumentError,
                           match="tool 'height': argument 'mountain': expected one of 'K2'"):
            height.validate({"mountain": "Fuji"})

    @plait.workflow
    async def late() -> int:
        return await height("K2")

    result = plait.run(late, raise_on_error=False)  # after the `with`: a node error
    [node] = [n for n in result.nodes if n.tool == "height"]
    assert isinstance(node.error, plait.McpToolError) and "is closed" in str(node.error)


@pytest.mark.timeout(90)
def test_a_workflow_calls_the_tools_in_parallel(target, server_log):
    with plait.mcp_tools(target) as server:
        tools = {t.name: t for t in server}

        @plait.workflow
        async def compare() -> list:
            a = tools["slow_echo"]("a", seconds=1.0)
            b = tools["slow_echo"]("b", seconds=1.0)
            k2 = tools["height"]("K2", unit="ft")
            return [await a, await b, await k2]

        result = plait.run(compare)
    assert result.value == ["a", "b", 28251]
    calls = [n for n in result.nodes if n.tool in ("slow_echo", "height")]
    assert len(calls) == 3
    # Node times: every call started before any finished.
    assert max(n.started_at for n in calls) < min(n.finished_at for n in calls)
    assert overlapped(server_log.spans("slow_echo") + server_log.spans("height"))
    if "mcp_server.py" in target:  # stdio: plait started it, and stopped it
        assert gone_within(server_log.pids())


@pytest.mark.timeout(90)
def test_a_failing_tool_is_a_node_error_with_the_servers_message(target):
    with plait.mcp_tools(target) as server:
        tools = {t.name: t for t in server}

        @plait.workflow
        async def both() -> list:
            ok = tools["slow_echo"]("fine", seconds=0.1)
            bad = tools["fail"]("no luck")
            return [await ok, await bad]

        result = plait.run(both, on_error="continue", raise_on_error=False)
    failed = [n for n in result.nodes if n.tool == "fail"]
    assert [n.state for n in failed] == ["failed"]
    assert isinstance(failed[0].error, plait.McpToolError)
    assert "failed on purpose: no luck" in str(failed[0].error)
    assert [n.value for n in result.nodes if n.tool == "slow_echo"] == ["fine"]


@pytest.mark.timeout(90)
def test_a_server_that_dies_mid_call_is_a_node_error_and_a_retry_gets_a_new_one(
        stdio_target, server_log, tmp_path):
    marker = str(tmp_path / "crashed-once")
    with plait.mcp_tools(stdio_target) as server:
        die_once = {t.name: t for t in server}["die_once"]

        @plait.workflow
        async def once() -> str:
            return await die_once(marker)

        started = time.monotonic()
        result = plait.run(once, raise_on_error=False)
        assert time.monotonic() - started < 10  # an error, never a hang
        [node] = [n for n in result.nodes if n.tool == "die_once"]
        assert node.state == "failed" and "Connection closed" in str(node.error), node.error
        assert str(node.error).endswith("crashing on purpose"), node.error  # its last words
        assert len(server._session.errlog.kept) <= 4096  # of 300 KB written: the tail only
        first = server_log.pids()
        assert len(first) == 1 and gone_within(first)  # the crashed server was reaped

    os.remove(marker)
    with plait.mcp_tools(stdio_target, retries=1, backoff=0.0) as server:
        die_once = {t.name: t for t in server}["die_once"]

        @plait.workflow
        async def retried() -> str:
            return await die_once(marker)

        result = plait.run(retried)
        [node] = [n for n in result.nodes if n.tool == "die_once"]
        assert (result.value, node.attempts) == ("survived", 2)
    pids = server_log.pids()
    assert len(pids) == 3  # the first run's, this one's, and the one its retry started
    assert gone_within(pids)


def ask_command(tmp_path: Path, target: str, plan: str, *extra: str) -> list[str]:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([
        {"match": "Results:", "reply": json.dumps({"action": "finish", "answer": "done"})},
        {"match": "Question:", "reply": plan}]))
    return cli_command("ask", "Compare them", "--mcp", target, "--model",
                       f"sim:ttft=0,tps=2000,script={script}", "--no-journal", *extra)


@pytest.mark.timeout(120)
def test_plait_ask_with_mcp_runs_the_plan_in_parallel(target, server_log, tmp_path):
    plan = ('1. slow_echo("a", seconds=1.0)\n2. slow_echo("b", seconds=1.0)\n'
            '3. height("Everest")\n4. fail("nope")\n5. join()')
    run = subprocess.run(ask_command(tmp_path, target, plan, "--json"), capture_output=True,
                         text=True, env=ENV, timeout=90)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["answer"] == "done"
    tasks = {t["call"]: t for t in data["tasks"]}
    assert [tasks[c]["value"] for c in ('slow_echo("a", seconds=1.0)',
                                        'slow_echo("b", seconds=1.0)',
                                        'height("Everest")')] == ["a", "b", 8849]
    assert tasks['fail("nope")']["state"] == "failed"
    assert "failed on purpose: nope" in tasks['fail("nope")']["error"]
    assert overlapped(server_log.spans("slow_echo") + server_log.spans("height"))
    if "mcp_server.py" in target:  # stdio: plait started it, and stopped it
        assert gone_within(server_log.pids())


@pytest.mark.timeout(120)
def test_ctrl_c_of_plait_ask_stops_the_mcp_server(stdio_target, server_log, tmp_path):
    plan = '1. slow_echo("a", seconds=60)\n2. height("K2")\n3. join()'
    proc = subprocess.Popen(ask_command(tmp_path, stdio_target, plan), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 60
        while not server_log.spans("height") and time.monotonic() < deadline:
            time.sleep(0.05)  # until the long call is under way (the other one is done)
        assert server_log.spans("height"), "the plan's calls never started"
        [pid] = server_log.pids()
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted", err
    assert gone_within([pid]), f"MCP server {pid} outlived plait ask"


@pytest.mark.timeout(60)
def test_a_server_that_cannot_start_is_one_clear_error(tmp_path):
    missing = tmp_path / "no_such_server.py"
    with pytest.raises(plait.McpToolError, match="could not be started"):
        plait.mcp_tools(f"{sys.executable} {missing}")
    run = subprocess.run(ask_command(tmp_path, f"{sys.executable} {missing}", "1. join()"),
                         capture_output=True, text=True, env=ENV, timeout=50)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("error: MCP server "), run.stderr


@pytest.mark.timeout(150)
def test_a_question_asked_with_mcp_resumes_with_the_command_it_prints(
        stdio_target, server_log, tmp_path):
    """The joiner hangs; Ctrl-C once both calls are done: the message's command
    (with its --mcp) resumes the question, replaying both calls from the journal."""
    script, journal = tmp_path / "script.json", tmp_path / "j.db"
    plan = '1. slow_echo("a", seconds=0.2)\n2. height("K2")\n3. join()'

    def write(joiner: dict) -> None:
        script.write_text(json.dumps([{"match": "Results:", **joiner},
                                      {"match": "Question:", "reply": plan}]))

    write({"fault": {"hang": True}})
    cmd = cli_command("ask", "Compare them", "--mcp", stdio_target, "--journal", str(journal),
                      "--run-id", "q1", "--model", f"sim:ttft=0,tps=2000,script={script}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV)
    try:
        deadline = time.monotonic() + 60
        while len(server_log.spans("slow_echo") + server_log.spans("height")) < 2 \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the results journaled, the joiner waiting on its model
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130, err
    command = shlex.split(err.strip().splitlines()[-1].split("with: ", 1)[1])
    assert command == ["plait", "resume", "q1", "--journal", str(journal),
                       "--mcp", stdio_target]
    calls = len(server_log.lines())

    write({"reply": json.dumps({"action": "finish", "answer": "K2 is 8611 m"})})
    resumed = subprocess.run(cli_command(*command[1:]), capture_output=True, text=True,
                             env=ENV, timeout=90)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == "K2 is 8611 m\n"
    new = server_log.lines()[calls:]
    assert [w[0] for w in new] == ["boot"], new  # started, but no call ran again
    assert gone_within(server_log.pids())


def test_without_the_mcp_extra_the_error_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mcp", None)  # as if `mcp` were not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'plait\[mcp\]'"):
        plait.mcp_tools("python server.py")
