"""Load user code named on the command line: `pkg.module:name` or `path/file.py:name`.

User code that raises while it is imported (an error, a syntax error, a missing
import) is shown as `python file.py` would show it: the user's own frames and
error, none of the loader's or importlib's, then one `error:` line.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import traceback
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, NoReturn

from plait import _entry
from plait._api import Workflow
from plait._entry import file_entry, import_file, is_file_spec
from plait.cli._fail import fail

# Frames of these files (as imported, and resolved) come before the user's code.
_LOADER_FILES = frozenset(
    f
    for path in (__file__, _entry.__file__, importlib.__file__)
    if path
    for f in (path, str(Path(path).resolve()))
)


def load_module(spec: str) -> ModuleType:
    """Import a module by dotted name, or a Python file by path (its directory first
    on sys.path, as `python file.py` has it)."""
    if is_file_spec(spec):
        path = Path(spec)
        if not path.is_file():
            fail(f"no such file: {spec}")
        try:
            return import_file(path)
        except Exception as exc:
            _import_failed(spec, exc)
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


def load_workflow(target: str) -> Workflow:
    """`module:workflow` or `file.py:workflow` -> the workflow, named by `target` when
    that is a file: the run's entry is then the file's absolute path, which a resume
    in another process (and directory) imports again."""
    wf = load_object(target)
    if not isinstance(wf, Workflow):
        fail(f"{target} is not a @plait.workflow")
    module_name, _, attr = target.rpartition(":")
    if is_file_spec(module_name):
        wf = dataclasses.replace(wf, name=file_entry(module_name, attr))
    return wf
