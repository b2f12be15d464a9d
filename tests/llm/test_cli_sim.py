"""`plait sim-server` as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from plait.llm import LLMHTTPError, Message, OpenAILLM
from tests._support import free_port

# Runs the `plait` app with the sim command registered (also when the CLI
# package does not import it yet).
CLI = "import sys; import plait.cli.sim; from plait.cli._app import app; app(sys.argv[1:])"


def plait_cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLI, *args], **kwargs)


def test_sim_server_command_serves_a_script(tmp_path, arun) -> None:
    script = tmp_path / "replies.json"
    script.write_text(json.dumps([{"match": "capital", "reply": "Paris is the capital."},
                                  {"reply": "I do not know."}]))
    port = free_port()
    proc = plait_cli("sim-server", "--script", str(script), "--ttft", "0.05", "--tps", "500",
                     "--port", str(port), "--host", "127.0.0.1",
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        wait_until_up(proc, base)
        llm = OpenAILLM("sim", base_url=base)
        c = arun(llm.complete([Message("user", "What is the capital of France?")]))
        assert c.text == "Paris is the capital." and c.usage.completion_tokens == 4
        assert arun(llm.complete([Message("user", "Why?")])).text == "I do not know."
    finally:
        proc.terminate()
        proc.wait(10)


def test_sim_server_rules_match_the_role_sent_by_the_client(tmp_path, arun) -> None:
    """The OpenAI client sends a call's role as a header; the server's rules match it."""
    script = tmp_path / "roles.json"
    script.write_text(json.dumps([{"role": "planner", "reply": "a plan"},
                                  {"role": "joiner", "reply": "an answer"}]))
    port = free_port()
    proc = plait_cli("sim-server", "--script", str(script), "--ttft", "0", "--tps", "1000",
                     "--port", str(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        wait_until_up(proc, base)
        llm = OpenAILLM("sim", base_url=base, max_retries=0)
        hi = [Message("user", "hi")]
        assert arun(llm.complete(hi, role="joiner")).text == "an answer"
        assert arun(llm.complete(hi, role="planner")).text == "a plan"
        with pytest.raises(LLMHTTPError, match="no reply left .* of a react call"):
            arun(llm.complete(hi, role="react"))
    finally:
        proc.terminate()
        proc.wait(10)


def test_sim_server_knobs_and_prefill(tmp_path, arun) -> None:
    """--tokens, --pps and --contention reach the server; a rule matches the prefill
    sent as a trailing assistant message; the prefix cache's accounting is in /stats."""
    script = tmp_path / "fork.json"
    script.write_text(json.dumps([{"prefill": "<Thread>\\n1:$", "reply": " five</Thread>"},
                                  {"reply": "<Outlines>1: sum</Outlines>"}]))
    port = free_port()
    proc = plait_cli("sim-server", "--script", str(script), "--ttft", "0", "--tps", "1000",
                     "--tokens", "bpe", "--pps", "100000", "--contention", "1",
                     "--port", str(port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        wait_until_up(proc, base)
        llm = OpenAILLM("sim", base_url=base, max_retries=0)
        q = [Message("user", "2+3?")]
        parent = arun(llm.complete(q))
        thread = arun(llm.complete(q, prefill=parent.text + "\n<Thread>\n1:"))
        assert (parent.text, thread.text) == ("<Outlines>1: sum</Outlines>", " five</Thread>")
        stats = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).json()
        assert stats["options"]["tokens"] == "bpe" and stats["options"]["pps"] == 100000
        assert stats["options"]["contention"] == 1
        # The thread paid for the header only (bpe: 4-character pieces past the reply).
        assert stats["prefill_tokens"] == parent.usage.prompt_tokens + 4  # ceil((3 + 12) / 4)
        assert stats["completion_tokens"] == 7 + 4  # 27 and 14 characters
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert b"tokens=bpe" in err and b"pps=100000" in err and b"contention=1" in err


def wait_until_up(proc: subprocess.Popen, base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "plait sim-server exited early"
        try:
            if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "plait sim-server did not start in 30 s"
        time.sleep(0.1)


@pytest.mark.parametrize("content", ["[not json", '[{"reply": "x", "fault": {"oops": 1}}]'])
def test_sim_server_rejects_a_bad_script(tmp_path, content) -> None:
    script = tmp_path / "bad.json"
    script.write_text(content)
    proc = plait_cli("sim-server", "--script", str(script), "--port", str(free_port()),
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: ") and str(script) in err
