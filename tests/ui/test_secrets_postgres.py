"""A PostgreSQL journal through the web view, and no secret in any page or answer:
not the DSN's password, not an API key, not a password held in a run's arguments."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

import plait
from plait.llm import SimServer
from plait.ui import UIServer
from tests._support import end, with_schema
from tests.ui._runs import RUN_IDS, SECRET_DSN, make_runs

pytestmark = pytest.mark.timeout(90)

DB_PASSWORD = "pw-of-the-journal-4471"  # trust authentication takes and ignores it
API_KEY = "sk-secret-key-of-the-test-9302"


@plait.workflow
async def remote(topic: str) -> str:
    return await plait.generate(f"One fact about {topic}.", model="openai:sim")


@pytest.fixture
def pg_journal(postgres_dsn: str, pg_schema: str) -> str:
    """A journal DSN with a password, in a schema of its own (`pg_schema`)."""
    parts = urlsplit(postgres_dsn)
    user, _, host = parts.netloc.rpartition("@")
    netloc = f"{user or 'postgres'}:{DB_PASSWORD}@{host}"
    return with_schema(urlunsplit(parts._replace(netloc=netloc)), pg_schema)


def crawl(ui: UIServer) -> str:
    """Every page and API answer the view gives for every run, as one text."""
    seen = [httpx.get(ui.url + p, timeout=10) for p in ("/", "/static/ui.js")]
    runs = httpx.get(ui.url + "/api/runs", timeout=10)
    seen.append(runs)
    for run in runs.json()["runs"]:
        rid = run["run_id"]
        for path in (f"/runs/{rid}", f"/api/runs/{rid}", f"/api/runs/{rid}/rows",
                     f"/api/runs/{rid}/rows?status=failed", f"/api/runs/{rid}/timeline"):
            seen.append(httpx.get(ui.url + path, timeout=10))
    seen.append(httpx.get(ui.url + "/api/runs/not-there", timeout=10))
    assert all(r.status_code in (200, 404) for r in seen), [r.text for r in seen]
    return "\n".join(r.text for r in seen)


def assert_no_secret(text: str) -> None:
    password = urlsplit(SECRET_DSN).password
    assert password
    for secret in (DB_PASSWORD, API_KEY, password):
        assert secret not in text


def test_a_postgres_journal_shows_its_runs_and_no_secret(
        pg_journal: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_runs(pg_journal)
    with SimServer(ttft=0.0, tps=2000.0) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
        plait.run(remote, "comets", journal=pg_journal, run_id="remote1")
    with UIServer(pg_journal) as ui:
        text = crawl(ui)
        runs = {r["run_id"]: r for r in httpx.get(ui.url + "/api/runs").json()["runs"]}
        assert set(runs) == RUN_IDS | {"remote1"}
        assert runs["remote1"]["cost_unpriced"] == ["openai:sim"]  # no price: unknown
        job = httpx.get(ui.url + "/api/runs/job1").json()["run"]
        assert job["rows"] == {"done": 6, "dropped": 3, "failed": 3}
        failed = httpx.get(ui.url + "/api/runs/job1/rows?status=failed").json()["rows"]
        assert [r["ordinal"] for r in failed] == [2, 6, 10]
        journal = httpx.get(ui.url + "/api/runs").json()["journal"]
        assert journal.startswith("postgresql://") and "***" not in journal
        # The argument that held a DSN is there, its password redacted.
        ok1 = httpx.get(ui.url + "/api/runs/ok1").json()["run"]
        assert ok1["arguments"]["args"][1] == SECRET_DSN.replace(
            urlsplit(SECRET_DSN).password, "***")
    assert_no_secret(text)
    # `plait ui` names the journal it serves, without the password.
    proc = subprocess.Popen([sys.executable, "-m", "plait", "ui", "--journal", pg_journal,
                             "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line
        assert DB_PASSWORD not in line and "***" in line
        assert_no_secret(httpx.get(url.group(0) + "/api/runs", timeout=10).text)
    finally:
        end(proc)


def test_no_secret_on_sqlite(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    journal = str(tmp_path / "runs.db")
    make_runs(journal)
    with SimServer(ttft=0.0, tps=2000.0) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
        plait.run(remote, "comets", journal=journal, run_id="remote1")
    with UIServer(journal) as ui:
        assert_no_secret(crawl(ui))
