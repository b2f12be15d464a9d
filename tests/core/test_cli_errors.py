"""A user mistake on any `plait` command ends with one `error: ...` line that says
what is wrong, and exit code 2: never a Python traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plait.cli import app

TOOLS = textwrap.dedent(
    """
    import plait

    @plait.tool
    def search(query: str) -> str:
        \"\"\"Look a thing up.\"\"\"
        return query

    @plait.workflow
    async def wf(x: str) -> str:
        return await search(x)
    """
)

RESERVED = textwrap.dedent(
    """
    import plait

    @plait.tool
    def join(text: str) -> str:
        \"\"\"Join texts.\"\"\"
        return text
    """
)


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    (tmp_path / "flow.py").write_text(TOOLS)
    (tmp_path / "reserved.py").write_text(RESERVED)
    (tmp_path / "syntax.py").write_text("def broken(:\n")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "rule.json").write_text('[{"reply": "x", "fault": {"oops": 1}}]')
    return tmp_path


def _taken_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


# (the command line, a piece of its error line)
MISTAKES: list[tuple[list[str], str]] = [
    (["ask", "q", "--model", "gpt-4"], "unknown model spec 'gpt-4'"),
    (["ask", "q", "--model", "openai:"], "needs a model name"),
    (["ask", "q", "--model", "openai:m"], "OPENAI_API_KEY"),
    (["ask", "q", "--model", "sim:fast"], "not key=value"),
    (["ask", "q", "--model", "sim:script=missing.json"], "cannot read the sim script"),
    (["ask", "q", "--model", "sim:script=bad.json"], "bad.json is not JSON"),
    (["ask", "q", "--model", "sim", "--tools", "nosuch_module"], "cannot import 'nosuch_module'"),
    (["ask", "q", "--model", "sim", "--tools", "missing.py"], "no such file: missing.py"),
    (["ask", "q", "--model", "sim", "--tools", "syntax.py"], "cannot import syntax.py"),
    (["ask", "q", "--model", "sim", "--tools", "reserved.py"], 'name="join_tool"'),
    (["run", "flow.py"], "expected module:name or file.py:name"),
    (["run", "flow.py:"], "expected module:name or file.py:name"),
    (["run", "flow.py:nope", "x"], "has no attribute 'nope'"),
    (["run", "flow.py:search", "x"], "is not a @plait.workflow"),
    (["run", "syntax.py:wf"], "cannot import syntax.py"),
    (["run", "--max-concurrency", "0", "flow.py:wf", "x"], "max_concurrency must be >= 1"),
    (["sim-server", "--script", "missing.json"], "cannot read the sim script missing.json"),
    (["sim-server", "--script", "bad.json"], "bad.json is not JSON"),
    (["sim-server", "--script", "rule.json"], "rule.json: unknown fault fields"),
    (["sim-server", "--port", "99999"], "--port must be within 0..65535"),
    (["sim-server", "--tps", "0"], "--tps > 0"),
]


@pytest.mark.parametrize(("args", "hint"), MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_a_mistake_is_one_error_line(files: Path, args: list[str], hint: str) -> None:
    result = CliRunner().invoke(app, args)
    # An exception that escaped the command would be a traceback on a terminal.
    assert type(result.exception) is SystemExit, repr(result.exception)
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and hint in last, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("make_args", [
    lambda port: ["sim-server", "--port", str(port)],  # the port is taken
    lambda port: ["sim-server", "--host", "nonexistent.invalid", "--port", "0"],
], ids=["port taken", "unknown host"])
def test_sim_server_that_cannot_listen_is_one_error_line(
    files: Path, make_args: Callable[[int], list[str]]
) -> None:
    sock, port = _taken_port()
    with sock:
        proc = subprocess.run([sys.executable, "-m", "plait", *make_args(port)],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot listen on ") and "--port" in last
