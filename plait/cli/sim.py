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
) -> None:
    """Serve a simulated model at http://HOST:PORT/v1 (chat completions, models).

    Rules in the script may carry a "fault" (status + retry_after, drop_after,
    stall_after, hang) for fault-injection tests; see docs/llm.md.
    """
    from plait.llm._sim_server import serve

    if ttft < 0 or tps <= 0:
        fail(f"need --ttft >= 0 and --tps > 0, got --ttft {ttft:g} --tps {tps:g}")
    if not 0 <= port <= 65535:
        fail(f"--port must be within 0..65535, got {port}")
    try:
        replies = SimScript(script)
    except LLMError as e:  # a script that is missing, not JSON, or with a bad rule
        fail(str(e) if str(script) in str(e) else f"sim script {script}: {e}")
    typer.echo(f"plait sim-server: http://{host}:{port}/v1  ttft={ttft}s tps={tps}", err=True)
    try:
        serve(replies, ttft=ttft, tps=tps, host=host, port=port, model=model)
    except OSError as e:  # the port is taken, the host is not this machine's
        fail(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port "
             "or --host")
