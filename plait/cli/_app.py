from __future__ import annotations

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
