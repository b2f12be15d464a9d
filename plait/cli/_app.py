from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="plait",
    help="Run LLM agent work as a parallel, streaming, durable dataflow graph.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Run LLM agent work as a parallel, streaming, durable dataflow graph."""
    # Model output can hold what the terminal cannot encode (a lone surrogate
    # from a cut answer, anything on an ASCII locale): it is escaped, never a
    # UnicodeEncodeError after the work is done.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
