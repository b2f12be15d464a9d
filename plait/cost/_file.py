"""The price file: where it is and how it reads.

`$PLAIT_PRICES` names it; else it is ``prices.toml`` in plait's user config
directory (platformdirs; ``$XDG_CONFIG_HOME/plait`` when that is set, on every
platform). A file named by `$PLAIT_PRICES` must exist; the config directory's
may not (then only the defaults price: local and simulated models cost 0).

TOML (or JSON, for a name ending in ``.json``), prices per million tokens::

    currency = "USD"                 # optional: a label, nothing is converted

    [prices]
    "openai:gpt-4o-mini" = { input = 0.15, output = 0.60 }
    sim = { input = 1.0, output = 2.0 }
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import platformdirs

from plait.cost._table import Price, PriceError, Prices

__all__ = ["ENV", "load_prices", "prices_path"]

ENV = "PLAIT_PRICES"
FIELDS = ("input", "output")


def prices_path() -> Path:
    """The price file plait reads: `$PLAIT_PRICES`, else the config directory's."""
    named = os.environ.get(ENV)
    if named:
        return Path(named).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) / "plait" if os.path.isabs(xdg) else platformdirs.user_config_path("plait")
    return base / "prices.toml"


def load_prices(path: str | os.PathLike[str] | None = None) -> Prices:
    """The price table in `path` (default: `prices_path()`), over the defaults.

    A file that is named (by `path` or `$PLAIT_PRICES`) and missing, unreadable,
    not TOML/JSON, or with a bad entry is a `PriceError` naming the file and the
    entry."""
    named = path is not None or bool(os.environ.get(ENV))
    file = Path(path).expanduser() if path is not None else prices_path()
    if not file.is_file():
        if named:
            why = "it is a directory" if file.is_dir() else "no such file"
            source = f" (from ${ENV})" if path is None else ""
            raise PriceError(f"cannot read the price file {file}{source}: {why}")
        return Prices()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceError(f"cannot read the price file {file}: {exc}") from None
    try:
        data = json.loads(text) if file.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if file.suffix.lower() == ".json" else "TOML"
        raise PriceError(f"price file {file} is not valid {kind}: {exc}") from None
    return parse_prices(data, str(file))


def parse_prices(data: Any, source: str) -> Prices:
    """A table from the file's data (a dict with `currency` and `prices`)."""
    if not isinstance(data, dict):
        raise PriceError(f"price file {source}: expected a table with [prices], "
                         f"got {type(data).__name__}")
    unknown = sorted(set(data) - {"currency", "prices"})
    if unknown:
        raise PriceError(f"price file {source}: unknown key {unknown[0]!r} "
                         "(known: currency, prices)")
    currency = data.get("currency", "USD")
    if not isinstance(currency, str) or not currency.strip():
        raise PriceError(f"price file {source}: currency must be text, got {currency!r}")
    entries = data.get("prices", {})
    if not isinstance(entries, dict):
        raise PriceError(f"price file {source}: prices must be a table of models, "
                         f"got {entries!r}")
    table: dict[str, Price] = {}
    for model, entry in entries.items():
        where = f"price file {source}: entry prices.{json.dumps(model)}"
        if not isinstance(entry, dict):
            raise PriceError(f"{where}: expected {{ input = N, output = N }}, got {entry!r}")
        extra = sorted(set(entry) - set(FIELDS))
        if extra:
            raise PriceError(f"{where}: unknown field {extra[0]!r} (fields: input, output, "
                             "per million tokens)")
        missing = [f for f in FIELDS if f not in entry]
        if missing:
            raise PriceError(f"{where}: missing {missing[0]!r} (fields: input, output, "
                             "per million tokens)")
        try:
            table[model] = Price(entry["input"], entry["output"])
        except PriceError as exc:
            raise PriceError(f"{where}: {exc}") from None
    try:
        return Prices(table, currency=currency.strip(), source=source)
    except PriceError as exc:
        raise PriceError(f"price file {source}: {exc}") from None
