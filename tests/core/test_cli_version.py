"""`plait --version`, and `python -m plait` as the `plait` command."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from typer.testing import CliRunner

import plait
from plait.cli import app


def test_version_comes_from_the_package_metadata_and_matches_the_source() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"plait {metadata.version('plait')}\n"
    assert metadata.version("plait") == plait.__version__  # pyproject.toml and plait/__init__.py


def test_python_dash_m_plait_is_the_plait_command() -> None:
    proc = subprocess.run([sys.executable, "-m", "plait", "--version", "ask", "ignored"],
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"plait {plait.__version__}\n", "")
