"""What runs cost: a price per model, and the cost of journaled calls.

    prices = plait.cost.load_prices()          # $PLAIT_PRICES, else the config dir
    prices = plait.cost.Prices({"openai:gpt-4o-mini": (0.15, 0.60)})   # or in code
    cost = plait.cost.run_cost(journal.load(run_id), prices)
    cost.total, cost.saved                     # None where a price is unknown

Prices are per million prompt (input) and completion (output) tokens. Local and
simulated models cost 0; no provider's price is shipped, so an unpriced model's
cost is unknown and shown as such. See docs/durable.md ("What a run cost").
"""

from plait.cost._calls import CallCost, RunCost, call_cost, run_cost, session_of
from plait.cost._file import ENV, load_prices, parse_prices, prices_path
from plait.cost._table import DEFAULT_PRICES, Price, PriceError, Prices

__all__ = [
    "DEFAULT_PRICES",
    "ENV",
    "CallCost",
    "Price",
    "PriceError",
    "Prices",
    "RunCost",
    "call_cost",
    "load_prices",
    "parse_prices",
    "prices_path",
    "run_cost",
    "session_of",
]
