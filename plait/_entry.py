"""A run's entry point, by name: `package.module:workflow` or `/path/to/file.py:workflow`.

A journaled run records its entry so a resume can import it again. A workflow
defined in a file (`plait run flow.py:wf`) is recorded by the file's absolute
path, since the module name it was loaded under means nothing to a later
process. A file is imported as `python file.py` would run it: its directory
first on `sys.path`, so the modules next to it import.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

# The module name a file is imported under: not importable by that name elsewhere.
FILE_MODULE_PREFIX = "plait_user_"


def is_file_spec(spec: str) -> bool:
    """`spec` names a Python file (rather than a dotted module name)."""
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def import_file(path: Path) -> ModuleType:
    """Import the Python file at `path` (which exists); its errors propagate."""
    path = path.resolve()
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = f"{FILE_MODULE_PREFIX}{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def import_entry(entry: str) -> Any:
    """The object an entry names; ImportError or AttributeError if it is not there."""
    module_name, _, qualname = entry.rpartition(":")
    if is_file_spec(module_name):
        path = Path(module_name)
        if not path.is_file():
            raise ImportError(f"no such file: {module_name}")
        obj: Any = import_file(path)
    else:
        obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def file_entry(path: str | Path, attr: str) -> str:
    """The entry of workflow `attr` of the file at `path`."""
    return f"{Path(path).resolve()}:{attr}"
