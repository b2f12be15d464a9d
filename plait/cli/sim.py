"""`plait sim-server`: the simulated model as an OpenAI-compatible HTTP server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plait.cli._app import app
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
) -> None:
    """Serve a simulated model at http://HOST:PORT/v1 (chat completions, models).

    Rules in the script may carry a "fault" (status + retry_after, drop_after,
    stall_after, hang) for fault-injection tests; see docs/llm.md.
    """
    from plait.llm._sim_server import serve

    if ttft < 0 or tps <= 0:
        raise typer.BadParameter("need --ttft >= 0 and --tps > 0")
    try:
        replies = SimScript(script)
        typer.echo(f"plait sim-server: http://{host}:{port}/v1  ttft={ttft}s tps={tps}", err=True)
        serve(replies, ttft=ttft, tps=tps, host=host, port=port, model=model)
    except (LLMError, OSError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
