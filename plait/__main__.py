"""`python -m plait` is the `plait` command (for when the venv's bin is not on PATH)."""

from plait.cli import main

main()
