"""Optional dependencies of the data layer, imported only when used.

pyarrow (the `data` extra) is needed by Parquet sources and sinks only; a JSONL
job never imports it. A missing one is a clear error naming the extra.
"""

from __future__ import annotations

from typing import Any


def _missing(what: str, extra: str) -> ImportError:
    # The LLM layer's error, so one `except MissingExtraError` covers every extra.
    from plait.llm._protocol import MissingExtraError

    return MissingExtraError(what, extra)


def import_pyarrow(what: str) -> tuple[Any, Any]:
    """(pyarrow, pyarrow.parquet), or MissingExtraError naming `what` needs them."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise _missing(f"{what} (pyarrow)", "data") from None
    return pyarrow, pyarrow.parquet
