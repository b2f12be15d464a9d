"""Load user code named on the command line: `pkg.module:name` or `path/file.py:name`."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import typer


def load_module(spec: str) -> ModuleType:
    """Import a module by dotted name, or a Python file by path."""
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        path = Path(spec).resolve()
        if not path.is_file():
            raise typer.BadParameter(f"no such file: {spec}")
        name = f"plait_user_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise typer.BadParameter(f"cannot import {spec}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        raise typer.BadParameter(f"cannot import {spec!r}: {exc}") from None


def load_object(target: str) -> Any:
    """`module:attribute` -> the attribute."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise typer.BadParameter(f"expected module:name or file.py:name, got {target!r}")
    module = load_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise typer.BadParameter(f"{module_name} has no attribute {attr!r}") from None
