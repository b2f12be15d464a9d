"""A price per model, and the table that finds a model's price."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from plait._errors import PlaitError

__all__ = ["DEFAULT_PRICES", "Price", "PriceError", "Prices"]

PER = 1_000_000  # prices are per million tokens, as providers list them


class PriceError(PlaitError, ValueError):
    """A price table that cannot be read: names the file and the bad entry."""


@dataclass(frozen=True, slots=True)
class Price:
    """What a model charges per million prompt (`input`) and completion
    (`output`) tokens, in the table's currency."""

    input: float
    output: float

    def __post_init__(self) -> None:
        for name in ("input", "output"):
            value = getattr(self, name)
            if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
                raise PriceError(f"{name} must be a number >= 0 (per million tokens), "
                                 f"got {value!r}")

    def of(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The cost of one call with this token split."""
        return (prompt_tokens * self.input + completion_tokens * self.output) / PER


# Models that run on this machine (the bundled one, any GGUF, the simulated one)
# cost nothing per token. No provider's price is shipped: they change, and a
# stale price is worse than none (an unknown model's cost is unknown, said so).
DEFAULT_PRICES: Mapping[str, Price] = {"local": Price(0, 0), "sim": Price(0, 0)}


class Prices(Mapping[str, Price]):
    """Prices by model spec, as plait journals a call's model (`openai:gpt-4o-mini`,
    `sim:ttft=0.4,tps=60`, `local:/models/x.gguf`).

    A key prices the spec it names and every spec it begins up to a ``:`` or a
    ``,`` (`sim` prices `sim:ttft=0.4`; `openai` would price every `openai:`
    model); the longest key that fits wins. Given prices are laid over
    `DEFAULT_PRICES` unless `defaults=False`.
    """

    __slots__ = ("_prices", "currency", "source")

    def __init__(self, prices: Mapping[str, Price | tuple[float, float]] | None = None, *,
                 currency: str = "USD", source: str = "", defaults: bool = True) -> None:
        table = dict(DEFAULT_PRICES) if defaults else {}
        for model, price in (prices or {}).items():
            if not isinstance(model, str) or not model.strip():
                raise PriceError(f"a model is named by its spec (text), got {model!r}")
            table[model.strip()] = price if isinstance(price, Price) else Price(*price)
        self._prices = table
        self.currency = currency
        self.source = source  # the file it was read from, "" if none

    def price_of(self, model: str) -> Price | None:
        """The price of `model`, or None when no key fits it."""
        found = self._prices.get(model)
        if found is not None:
            return found
        # Cut at each ':' or ',' from the right: the longest fitting key first.
        cut = len(model)
        while cut > 0:
            cut = max(model.rfind(":", 0, cut), model.rfind(",", 0, cut))
            if cut <= 0:
                return None
            found = self._prices.get(model[:cut])
            if found is not None:
                return found
        return None

    def __getitem__(self, model: str) -> Price:
        return self._prices[model]

    def __iter__(self) -> Iterator[str]:
        return iter(self._prices)

    def __len__(self) -> int:
        return len(self._prices)

    def __repr__(self) -> str:
        where = f" from {self.source}" if self.source else ""
        return f"<Prices {len(self)} models in {self.currency}{where}>"
