from __future__ import annotations

import sys
from importlib import metadata
from typing import Annotated

import typer

app = typer.Typer(
    name="plait",
    help="Run LLM agent work as a parallel, streaming, durable dataflow graph.",
    no_args_is_help=True,
    add_completion=False,
)


def version() -> str:
    """The installed package's version; a source tree that is not installed
    (PYTHONPATH=.) has only the one in plait/__init__.py."""
    try:
        return metadata.version("plait")
    except metadata.PackageNotFoundError:
        from plait import __version__

        return __version__


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"plait {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[bool, typer.Option(
        "--version", help="Print plait's version and exit.", callback=_print_version,
        is_eager=True)] = False,
) -> None:
    """Run LLM agent work as a parallel, streaming, durable dataflow graph."""
    # Model output can hold what the terminal cannot encode (a lone surrogate
    # from a cut answer, anything on an ASCII locale): it is escaped, never a
    # UnicodeEncodeError after the work is done.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
