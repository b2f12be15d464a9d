"""Load user code named on the command line: `pkg.module:name` or `path/file.py:name`.

User code that raises while it is imported (an error, a syntax error, a missing
import) is shown as `python file.py` would show it: the user's own frames and
error, none of the loader's or importlib's, then one `error:` line.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, NoReturn

from plait.cli._fail import fail

# Frames of these files (as imported, and resolved) come before the user's code.
_LOADER_FILES = frozenset(
    f for path in (__file__, importlib.__file__) if path for f in (path, str(Path(path).resolve()))
)


def load_module(spec: str) -> ModuleType:
    """Import a module by dotted name, or a Python file by path."""
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        path = Path(spec).resolve()
        if not path.is_file():
            fail(f"no such file: {spec}")
        name = f"plait_user_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            fail(f"cannot import {spec}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            _import_failed(spec, exc)
        return module
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name and (spec == exc.name or spec.startswith(exc.name + ".")):
            fail(f"cannot import {spec!r}: {exc}")  # the module itself is not there
        _import_failed(spec, exc)
    except Exception as exc:
        _import_failed(spec, exc)


def _import_failed(spec: str, exc: BaseException) -> NoReturn:
    _print_user_traceback(exc)
    what = (str(exc).splitlines() or [""])[0][:200]
    fail(f"cannot import {spec}: {type(exc).__name__}" + (f": {what}" if what else ""))


def _print_user_traceback(exc: BaseException) -> None:
    """The traceback from the first frame of user code on (a syntax error has none)."""
    tb: TracebackType | None = exc.__traceback__
    while tb is not None and _loader_frame(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)


def _loader_frame(filename: str) -> bool:
    return filename.startswith("<frozen importlib") or filename in _LOADER_FILES


def load_object(target: str) -> Any:
    """`module:attribute` -> the attribute."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        fail(f"expected module:name or file.py:name, got {target!r}")
    module = load_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        fail(f"{module_name} has no attribute {attr!r}")
