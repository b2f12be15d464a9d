"""The `plait` command. Each sub-module adds its commands to the one Typer app."""

from __future__ import annotations

# Importing a command module registers its commands on `app`.
from plait.cli import ask as _ask  # noqa: F401,E402
from plait.cli import map as _map  # noqa: F401,E402
from plait.cli import reason as _reason  # noqa: F401,E402
from plait.cli import resume as _resume  # noqa: F401,E402
from plait.cli import run as _run  # noqa: F401,E402
from plait.cli import runs as _runs  # noqa: F401,E402
from plait.cli import sim as _sim  # noqa: F401,E402
from plait.cli import ui as _ui  # noqa: F401,E402
from plait.cli._app import app


def main() -> None:
    app()
