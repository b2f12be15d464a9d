"""`plait sim-server`: the simulated model as an OpenAI-compatible HTTP server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plait.cli._app import app
from plait.cli._fail import fail
from plait.llm._protocol import LLMError
from plait.llm._sim import DEFAULT_TPS, DEFAULT_TTFT, SimScript


@app.command("sim-server")
def sim_server(
    script: Annotated[Path | None, typer.Option(
        help="JSON file: a list of replies and rules")] = None,
    ttft: Annotated[float, typer.Option(help="seconds to the first token")] = DEFAULT_TTFT,
    tps: Annotated[float, typer.Option(help="tokens per second after the first")] = DEFAULT_TPS,
    port: Annotated[int, typer.Option(help="port to listen on")] = 8765,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    model: Annotated[str, typer.Option(help="model id the server reports")] = "sim",
    slots: Annotated[int | None, typer.Option(
        help="most calls decoded at once; more wait in a FIFO queue")] = None,
    capacity: Annotated[float | None, typer.Option(
        help="tokens/s shared by the calls decoding at once")] = None,
    lengths: Annotated[str | None, typer.Option(
        help="reply lengths for replies the script leaves empty: "
             "lognormal:mean=60,sigma=0.5 or fixed:N")] = None,
    seed: Annotated[int, typer.Option(help="seed of the drawn lengths")] = 0,
    rate_limit: Annotated[str | None, typer.Option(
        help="answer 429 + Retry-After beyond N requests/s (or N/min)")] = None,
    tokens: Annotated[str, typer.Option(
        help="what a token is: word (a word and the space before it) or bpe "
             "(~4 characters, as real tokenizers cut English)")] = "word",
) -> None:
    """Serve a simulated model at http://HOST:PORT/v1 (chat completions, models)
    and its counters at http://HOST:PORT/stats.

    Rules in the script may carry a "fault" (status + retry_after, drop_after,
    stall_after, hang) for fault-injection tests; see docs/llm.md.
    """
    from plait.llm._capacity import Capacity
    from plait.llm._sim_server import serve

    if ttft < 0 or tps <= 0:
        fail(f"need --ttft >= 0 and --tps > 0, got --ttft {ttft:g} --tps {tps:g}")
    if not 0 <= port <= 65535:
        fail(f"--port must be within 0..65535, got {port}")
    options = {"slots": slots, "capacity": capacity, "lengths": lengths, "seed": seed,
               "rate_limit": rate_limit, "tokens": tokens}
    try:
        cap = Capacity(ttft=ttft, tps=tps, **options)
    except LLMError as e:  # a bad --slots, --capacity, --lengths or --rate-limit
        fail(f"{e} (see plait sim-server --help)")
    try:
        replies = SimScript(script if script is not None or cap.lengths is None else "")
    except LLMError as e:  # a script that is missing, not JSON, or with a bad rule
        fail(str(e) if str(script) in str(e) else f"sim script {script}: {e}")
    defaults = {"tokens": "word"}  # said only when changed
    extra = "".join(f" {k}={v}" for k, v in cap.options().items()
                    if v is not None and k not in ("ttft", "tps", "seed")
                    and defaults.get(k, ...) != v)
    typer.echo(f"plait sim-server: http://{host}:{port}/v1  ttft={ttft}s tps={tps}{extra}",
               err=True)
    try:
        serve(replies, ttft=ttft, tps=tps, host=host, port=port, model=model, **options)
    except OSError as e:  # the port is taken, the host is not this machine's
        fail(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port "
             "or --host")
