"""The docs run: what README.md and docs/*.md show, runs as shown.

- Every ```python block runs as a script, offline. Text that only illustrates
  is fenced otherwise (```text).
- Every line of every ```sh block runs as a command, verbatim, through bash, in
  page order, from a fresh copy of the repository (the files `git ls-files`
  lists, untracked ones included) as its working directory, unless `NOT_RUN`
  below names it with its reason. Each must exit 0 and print something on
  stdout; a few must print what `EXPECT` says. The exact text is not checked:
  the CLI's output is free to change.
- `plait` is `python -m plait` and `python` this interpreter (shims first on
  PATH), the copy is on PYTHONPATH. HOME and the XDG directories are in the
  test's tmp and PLAIT_JOURNAL is unset, so default journals land there, as a
  new user's would land in their home. `OPENAI_BASE_URL` is a sim server of
  this test, scripted by role for questions on `examples/my_tools.py`, so a
  line that asks `openai:MODEL` runs offline.
- A `plait sim-server` or `plait ui` line keeps serving: it is started in the
  background, waited for, and stopped after its page. Port 8765 (the docs' port) is a free
  port here, in every line of the page, so parallel test runs do not collide.
- Every file a page names exists, links stay inside the repository, and every
  file in `examples/` is run by some command.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from plait.llm import Message, SimServer
from tests._support import end, free_port

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.DOTALL | re.MULTILINE)
JSON_BLOCK = re.compile(r"^```json\n(.*?)^```", re.DOTALL | re.MULTILINE)
COMMENT = re.compile(r"\s+#(\s.*)?$")  # a trailing shell comment
DOCS_PORT = "8765"
# Commands that keep serving -> the path that answers 200 once they serve.
SERVERS = {"plait sim-server": "/v1/models", "plait ui": "/api/runs"}

# Lines of ```sh blocks that do not run here: the command (its trailing comment
# left out) -> why. A test checks that each is still in the docs.
NOT_RUN = {
    "make demo": "sets up its own .venv (minutes); tests/compiler covers the demo's question",
    "make test": "the whole suite, this test included",
    "python benchmarks/compiler.py": "a benchmark (~50 s), not a test; `make bench` runs it",
    "python benchmarks/compiler.py --quick": "a benchmark (~10 s), not a test",
    "python benchmarks/compiler.py --search-latency 1.5 2.5": "a benchmark (~50 s), not a test",
    "plait map examples/reviews.py:complaints examples/reviews.jsonl --out complaints.jsonl "
    "--model sim:script=examples/sim_reviews.json --journal "
    "postgresql://postgres@127.0.0.1:5432/test --ray 127.0.0.1:6379 --workers 3":
        "needs a Ray cluster at that address; tests/ray/test_shards.py runs this command "
        "against the test cluster",
}
# Lines whose output must hold a text: the command -> the text.
EXPECT = {
    'OPENAI_BASE_URL=http://127.0.0.1:8765/v1 plait ask "Which is taller, Mount Everest or K2?" '
    "--model openai:sim": "Mount Everest",
    # `make demo`'s question, on the bundled model: the right answer, not just one.
    'plait ask "Which is taller, Mount Everest or K2?"': "Mount Everest",
}


# ---------------------------------------------------------------- python blocks


# Pages whose ```python blocks need a service this test does not start: the page ->
# the test that runs them, against that service.
ELSEWHERE = {"docs/ray.md": "tests/ray/test_docs.py, against the session's Ray cluster"}


def blocks(pages: Sequence[Path] | None = None) -> list[tuple[str, str]]:
    found = []
    for page in PAGES if pages is None else pages:
        name = str(page.relative_to(ROOT))
        if pages is None and name in ELSEWHERE:
            continue
        for n, match in enumerate(BLOCK.finditer(page.read_text()), 1):
            found.append((f"{name}#{n}", match.group(1)))
    return found


def test_pages_run_elsewhere_are_run_there() -> None:
    for page, where in ELSEWHERE.items():
        assert (ROOT / page).exists() and (ROOT / where.split(",")[0]).exists(), page


@pytest.mark.parametrize(("where", "code"), blocks(), ids=[w for w, _ in blocks()])
def test_doc_block_runs(where: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"{where} failed:\n{proc.stderr[-3000:]}"


# ---------------------------------------------------------------- shell lines


def command(line: str) -> str:
    return COMMENT.sub("", line).strip()


def sh_lines(page: Path) -> list[tuple[int, str]]:
    """(line number, line) of every command in the page's ```sh blocks."""
    text = page.read_text()
    out = []
    for block in SH_BLOCK.finditer(text):
        first = text.count("\n", 0, block.start(1)) + 1
        for i, line in enumerate(block.group(1).splitlines()):
            if line.strip() and not line.lstrip().startswith("#"):
                out.append((first + i, line))
    return out


SH_PAGES = [p for p in PAGES if sh_lines(p)]


def fresh_copy(dest: Path) -> Path:
    """What a clone would hold: the files git knows of, as they are on disk."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True, timeout=60,
        ).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: copy the tree
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "*.db", "*.db-*", ".pytest_cache"))
        return dest
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def shell_env(tmp: Path, repo: Path, openai_url: str) -> dict[str, str]:
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name, target in (("plait", f'"{sys.executable}" -m plait'),
                         ("python", f'"{sys.executable}"')):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        shim.chmod(0o755)
    home = tmp / "home"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PLAIT_", "OPENAI_", "XDG_"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(repo),
        HOME=str(home), XDG_DATA_HOME=str(home / "data"), XDG_CONFIG_HOME=str(home / "config"),
        XDG_CACHE_HOME=str(home / "cache"), XDG_STATE_HOME=str(home / "state"),
        OPENAI_BASE_URL=openai_url, OPENAI_API_KEY="sk-docs-test",
    )
    return env


def my_tools_model(messages: Sequence[Message], role: str | None) -> str:
    """The walker's model: right answers about K2 in feet, on examples/my_tools.py."""
    if role == "planner":
        return '1. lookup("K2", "height")\n2. to_feet($1)\n3. join()'
    if role == "joiner":
        return json.dumps({"action": "finish", "answer": "K2 is 28251.3 feet tall."})
    steps = sum(1 for m in messages if m.role == "assistant")
    return ('Thought: K2\'s height first.\nAction: lookup("K2", "height")',
            "Thought: now in feet.\nAction: to_feet(8611)",
            'Thought: K2 is 28251.3 feet tall.\nAction: finish("28251.3 feet")')[min(steps, 2)]


@pytest.fixture(scope="module")
def openai_url() -> Iterator[str]:
    with SimServer(my_tools_model, ttft=0.0, tps=2000.0) as server:
        yield server.base_url


def wait_for_server(proc: subprocess.Popen, url: str, where: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, f"{where}: the server exited ({proc.returncode})"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{where}: the server did not answer in 30 s"
        time.sleep(0.1)


@pytest.mark.parametrize("page", SH_PAGES, ids=[str(p.relative_to(ROOT)) for p in SH_PAGES])
def test_doc_commands_run(page: Path, tmp_path: Path, openai_url: str) -> None:
    repo = fresh_copy(tmp_path / "repo")
    env = shell_env(tmp_path, repo, openai_url)
    port = str(free_port())
    servers: list[subprocess.Popen] = []
    try:
        for number, line in sh_lines(page):
            where = f"{page.relative_to(ROOT)}:{number}: {line.strip()}"
            if command(line) in NOT_RUN:
                continue
            runnable = line.replace(DOCS_PORT, port)
            ready = next((path for name, path in SERVERS.items()
                          if command(line).startswith(name + " ")), None)
            if ready is not None:
                servers.append(subprocess.Popen(
                    ["bash", "-c", f"exec {runnable}"], cwd=repo, env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                wait_for_server(servers[-1], f"http://127.0.0.1:{port}{ready}", where)
                continue
            proc = subprocess.run(["bash", "-c", runnable], cwd=repo, env=env,
                                  capture_output=True, text=True, timeout=120)
            said = f"{where}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-3000:]}"
            assert proc.returncode == 0, f"exit {proc.returncode}: {said}"
            assert proc.stdout.strip(), f"no output: {said}"
            expected = EXPECT.get(command(line))
            assert expected is None or expected in proc.stdout, f"no {expected!r}: {said}"
    finally:
        for server in servers:
            end(server)


def test_every_line_not_run_or_expected_is_in_the_docs() -> None:
    commands = {command(line) for page in PAGES for _, line in sh_lines(page)}
    assert set(NOT_RUN) <= commands, set(NOT_RUN) - commands
    assert set(EXPECT) <= commands, set(EXPECT) - commands


# ---------------------------------------------------------------- files and links

URL = re.compile(r"[a-z]+://\S+")
FILE = re.compile(r"(?<![\w./-])([\w-][\w./-]*\.(?:py|json))\b")
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_files_a_page_names_exist(page: Path) -> None:
    """A file named in the text (`examples/my_flow.py`, `benchmarks/journal.py`)
    is a path from the repository's root, and it is there. A name in capitals
    (`FILE.json`) is a placeholder."""
    text = URL.sub("", page.read_text())
    missing = sorted({name for name in FILE.findall(text)
                      if not Path(name).stem.isupper() and not (ROOT / name).is_file()})
    assert not missing, f"{page.name} names files the repository does not hold: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_links_stay_in_the_repository(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor of the page
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{page.name} links outside the repository: {target}"
        assert path.exists(), f"{page.name} links to a missing file: {target}"


def test_every_example_runs_in_some_command() -> None:
    commands = " ".join(command(line) for page in PAGES for _, line in sh_lines(page)
                        if command(line) not in NOT_RUN)
    unused = [p.name for p in sorted((ROOT / "examples").iterdir())
              if p.is_file() and f"examples/{p.name}" not in commands]
    assert not unused, f"examples no doc command runs (so no test does): {unused}"


def test_json_blocks_show_their_example_files() -> None:
    """A ```json block after a paragraph naming `examples/NAME.json` shows that file."""
    for page in PAGES:
        text = page.read_text()
        for block in JSON_BLOCK.finditer(text):
            before = text[: block.start()].rstrip().rsplit("\n\n", 1)[-1]
            named = re.findall(r"`(examples/[\w.-]+\.json)`", before)
            shown = json.loads(block.group(1))
            if named:
                assert shown == json.loads((ROOT / named[-1]).read_text()), (page.name, named)
