"""The OpenAI-compatible backend's errors say how to fix the usual mistakes: a base
URL without /v1, no OPENAI_API_KEY nor OPENAI_BASE_URL, a server that is not
running, a key the server wants or refuses. Real servers on 127.0.0.1 only."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

import plait
from plait.llm import LLMConnectionError, LLMHTTPError, LLMOptionError, Message, OpenAILLM, get_llm
from tests._support import free_port

from .hostile_server import HostileServer

HI = [Message("user", "hi")]
SECRET = "s3cret-pass-77"


pytestmark = pytest.mark.usefixtures("no_env_credentials")


@pytest.fixture(scope="module")
def server(hostile: HostileServer) -> HostileServer:
    return hostile


@plait.tool
def search(query: str) -> str:
    """Look a thing up."""
    return f"{query}: 8611 m"


def complete(llm: OpenAILLM) -> str:
    async def body() -> str:
        try:
            return (await llm.complete(HI)).text
        finally:
            await llm.aclose()

    return asyncio.run(asyncio.wait_for(body(), 30))


def error_of(llm: OpenAILLM) -> BaseException:
    try:
        complete(llm)
    except Exception as exc:  # noqa: BLE001 - the test reads it
        return exc
    raise AssertionError("no error")


def test_a_base_url_without_v1_says_to_add_it(server: HostileServer) -> None:
    root = server.url("v1_only").removesuffix("/v1")  # http://127.0.0.1:PORT/v1_only
    error = error_of(OpenAILLM("m", base_url=root, max_retries=0))
    assert isinstance(error, LLMHTTPError) and error.status == 404
    text = str(error)
    assert f"{root}/chat/completions" in text  # the URL tried
    assert "add /v1" in text and f"base_url={root}/v1" in text
    assert complete(OpenAILLM("m", base_url=f"{root}/v1")) == "fine"  # the hint works


def test_the_hint_names_the_variable_the_url_came_from(server, monkeypatch) -> None:
    root = server.url("v1_only").removesuffix("/v1")
    monkeypatch.setenv("OPENAI_BASE_URL", root)
    text = str(error_of(get_llm("openai:m", max_retries=0)))
    assert f"OPENAI_BASE_URL={root}/v1" in text


def test_a_404_at_a_versioned_url_keeps_the_servers_word_and_no_v1_hint(server) -> None:
    # A versioned URL that still answers 404 (a model the server does not have, say):
    # adding /v1 would be wrong advice.
    url = server.url("v1_only").replace("/v1_only/v1", "/v1_only/v2")
    text = str(error_of(OpenAILLM("m", base_url=url, max_retries=0)))
    assert "HTTP 404" in text and "Not Found" in text and "add /v1" not in text


def test_no_key_and_no_url_names_both_variables_and_the_url() -> None:
    with pytest.raises(LLMOptionError) as info:
        get_llm("openai:gpt-4o-mini")
    text = str(info.value)
    for piece in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "https://api.openai.com/v1",
                  "openai:gpt-4o-mini"):
        assert piece in text


def test_either_variable_is_enough(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-1")
    assert get_llm("openai:m").base_url == "https://api.openai.com/v1"
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # a local server: no key
    assert get_llm("openai:m").base_url == "http://127.0.0.1:9/v1"


def test_a_server_not_running_is_named_without_its_password() -> None:
    port = free_port()  # nothing listens there
    llm = OpenAILLM("m", base_url=f"http://alice:{SECRET}@127.0.0.1:{port}/v1", max_retries=0)
    error = error_of(llm)
    assert isinstance(error, LLMConnectionError)
    text = str(error)
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in text
    assert "is the server running" in text and SECRET not in text and "alice" not in text


def test_401_without_a_key_says_to_set_it(server) -> None:
    text = str(error_of(OpenAILLM("m", base_url=server.url("echo_401"), max_retries=0)))
    assert "HTTP 401" in text and "set OPENAI_API_KEY" in text


def test_401_with_a_key_says_it_was_refused_never_showing_it(server) -> None:
    llm = OpenAILLM("m", base_url=server.url("echo_401"), api_key=SECRET, max_retries=0)
    text = str(error_of(llm))
    assert "HTTP 401" in text and "was refused" in text and "OPENAI_API_KEY" in text
    assert SECRET not in text


def test_401_with_url_credentials_says_they_were_refused(server) -> None:
    llm = OpenAILLM("m", base_url=server.url("echo_401", f"alice:{SECRET}@"), max_retries=0)
    text = str(error_of(llm))
    assert "user and password in the base URL were refused" in text and SECRET not in text


@pytest.mark.parametrize("case", ["no variables", "no /v1"])
def test_plait_ask_shows_the_hint_as_one_error_line(server, monkeypatch, case) -> None:
    from plait.cli._app import app

    if case == "no /v1":
        monkeypatch.setenv("OPENAI_BASE_URL", server.url("v1_only").removesuffix("/v1"))
    result = CliRunner().invoke(app, ["ask", "How high is K2?", "--model", "openai:m",
                                      "--tools", "plait.examples.tools", "--timeout", "30"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert "Traceback" not in result.output and lines[-1].startswith("error: ")
    assert ("OPENAI_API_KEY" if case == "no variables" else "add /v1") in lines[-1]
