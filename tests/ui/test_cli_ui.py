"""`plait ui` from the shell: it serves, and says in one line what stops it."""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from plait.cli import app
from tests._support import end
from tests.ui._runs import RUN_IDS

pytestmark = pytest.mark.timeout(60)

OLD = Path(__file__).resolve().parents[1] / "journal" / "fixtures" / "journal_001_002.db"


def cli_error(*args: str) -> str:
    r = CliRunner().invoke(app, ["ui", *args])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_it_serves_until_stopped(journal: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "plait", "ui", "--journal", journal,
                             "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert found and f"journal {journal} (read-only)" in line, line
        runs = httpx.get(found.group(0) + "/api/runs", timeout=10).json()["runs"]
        assert {r["run_id"] for r in runs} == RUN_IDS
        assert 'data-page="index"' in httpx.get(found.group(0) + "/", timeout=10).text
    finally:
        end(proc)
    assert proc.returncode is not None


def test_a_journal_that_is_not_there_is_not_made(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    assert cli_error("--journal", str(missing)) == (
        f"error: cannot open journal {missing} read-only: no such file")
    assert not missing.exists()


def test_an_older_journal_is_not_upgraded_behind_the_users_back(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    shutil.copy(OLD, old)
    before = hashlib.sha256(old.read_bytes()).hexdigest()
    line = cli_error("--journal", str(old))
    assert ("was written by an older plait (schema migrations 003_rows, 004_calls_by_row "
            "not applied)") in line
    assert "plait runs --journal" in line
    assert hashlib.sha256(old.read_bytes()).hexdigest() == before


def test_a_port_taken_a_bad_port_a_bad_price_file(journal: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = cli_error("--journal", journal, "--port", str(port))
        assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert cli_error("--journal", journal, "--port", "70000") == (
        "error: --port must be within 0..65535, got 70000")
    prices = tmp_path / "prices.toml"
    prices.write_text("[prices]\nsim = { input = 1 }\n")
    monkeypatch.setenv("PLAIT_PRICES", str(prices))
    assert cli_error("--journal", journal) == (
        f"error: price file {prices}: entry prices.\"sim\": missing 'output' (fields: input, "
        "output, per million tokens)")


def test_without_the_extra_it_names_the_extra(journal: str) -> None:
    # starlette made unimportable in a fresh interpreter, as where it is not installed.
    code = ("import sys; sys.modules['starlette'] = None; from plait.cli import main; "
            f"sys.argv = ['plait', 'ui', '--journal', {journal!r}, '--port', '0']; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("error: plait ui (starlette is not installed) needs the "
                                   "optional extra: pip install 'plait[ui]'")
