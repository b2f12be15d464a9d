"""`plait ui`: the journal in a browser, read-only."""

from __future__ import annotations

from typing import Annotated

import typer

from plait._errors import PlaitError
from plait.cli._app import app
from plait.cli._fail import fail
from plait.cli._journal import HELP as JOURNAL_HELP
from plait.cli._journal import journal_option
from plait.journal._postgres import redact

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command("ui")
def ui_command(
    journal: str = typer.Option(journal_option, "--journal", "-j", help=JOURNAL_HELP),
    port: Annotated[int, typer.Option(help="port to listen on (0: any free port)")] = 8766,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
) -> None:
    """Serve a local web view of a journal at http://HOST:PORT: the runs with
    their status, duration, tokens and cost; a run's calls; a dataset job's rows
    (done, dropped, failed) with filters; updated live while a run goes on.

    Read-only: the journal is never written (nor migrated), no run is taken
    over. Stop it with Ctrl-C. Needs plait's ui extra (starlette, uvicorn)."""
    from plait.cost import PriceError, load_prices
    from plait.llm._protocol import MissingExtraError
    from plait.ui import serve

    if not 0 <= port <= 65535:
        fail(f"--port must be within 0..65535, got {port}")
    try:
        prices = load_prices()
    except PriceError as exc:
        fail(str(exc))
    exposed = "" if host in LOOPBACK else (
        "  (listening beyond this machine: anyone who reaches it reads the journal)")

    def listening(bound: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        typer.echo(f"plait ui: http://{shown}:{bound}  journal {redact(journal)} "
                   f"(read-only){exposed}", err=True)

    try:
        serve(journal, host=host, port=port, prices=prices, on_listen=listening)
    except MissingExtraError as exc:
        fail(str(exc))
    except OSError as exc:  # the port is taken, the host is not this machine's
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port "
             "or --host")
    except PlaitError as exc:  # the journal cannot be read
        fail(str(exc))
