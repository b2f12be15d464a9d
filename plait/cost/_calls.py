"""What journaled calls cost, and what a resume saved.

A call is priced by the tokens its result journaled: an LLM-call node's record
has the split (`prompt_tokens`, `completion_tokens`; journals from before
`plait.generate` kept it in the value) and its request names the model. A call
with only a total count is priced only when its model's input and output prices
are equal (the split cannot matter); otherwise its cost is unknown, never
guessed. Token counts the backend did not report (plait counted them itself)
make the cost *estimated*. Only the last attempt of a retried call is journaled,
and a call cut off (in doubt) journaled no tokens: neither is in the cost.

A resume replays every call that finished before it from the journal instead of
paying again: `saved` is what the calls the last session replayed cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from plait.cost._table import Prices
from plait.journal import Intent, JournalState, Result

__all__ = ["CallCost", "RunCost", "call_cost", "run_cost", "session_of"]


@dataclass(frozen=True, slots=True)
class CallCost:
    """One call's cost (None: unknown), the model it was priced as and its split."""

    cost: float | None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    estimated: bool = False
    unpriced: str | None = None  # why unknown: the model without a price, or the tool


@dataclass(frozen=True, slots=True)
class RunCost:
    """A run's cost: `total` (None when a paid call's cost is unknown), `saved` by
    its last resume (0 when never resumed, None when unknown), `estimated` if a
    priced token count was plait's own estimate, `unpriced` the models (or tools)
    that used tokens but have no price, `unsplit` how many calls had only a total
    count (priced only where the split cannot matter), `replayed` how many calls
    the last session replayed."""

    total: float | None
    saved: float | None
    currency: str
    estimated: bool = False
    unpriced: tuple[str, ...] = field(default=())
    unsplit: int = 0
    replayed: int = 0  # calls the last session took from the journal

    def fields(self) -> dict[str, Any]:
        """The JSON fields of a run (`plait runs --json`, docs/durable.md)."""
        return {"cost": self.total, "cost_saved": self.saved, "currency": self.currency,
                "cost_estimated": self.estimated, "cost_unpriced": list(self.unpriced),
                "replayed": self.replayed}


def session_of(result: Result) -> int | None:
    """Which of the run's processes ran the call (1 the first, +1 for each resume);
    journals written before this was recorded have none."""
    session = result.extra.get("session") if isinstance(result.extra, dict) else None
    return session if type(session) is int else None


def _int(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _model(intent: Intent) -> str | None:
    """The model of an LLM-call node: its request's spec."""
    args = intent.arguments
    request = args.get("request") if isinstance(args, dict) else None
    model = request.get("model") if isinstance(request, dict) else None
    return model if isinstance(model, str) else None


def _split(result: Result) -> tuple[int | None, int | None, bool]:
    """(prompt, completion, estimated) from the record, or from the value of a call
    journaled before plait.generate ({text, prompt_tokens, ...})."""
    for source in (result.extra, result.value):
        if isinstance(source, dict) and "prompt_tokens" in source:
            prompt, completion = _int(source.get("prompt_tokens")), _int(
                source.get("completion_tokens"))
            if prompt is not None and completion is not None:
                return prompt, completion, bool(source.get("estimated"))
    return None, None, False


def call_cost(intent: Intent, result: Result, prices: Prices) -> CallCost:
    """What one finished (or failed) call cost."""
    prompt, completion, estimated = _split(result)
    total = result.tokens if prompt is None or completion is None else prompt + completion
    model = _model(intent)
    if not total:
        return CallCost(0.0, model, prompt, completion)  # nothing journaled, nothing priced
    if model is None:  # a tool that counted tokens (plait.add_tokens): no model to price
        return CallCost(None, None, prompt, completion, estimated, unpriced=intent.tool)
    price = prices.price_of(model)
    if price is None:
        return CallCost(None, model, prompt, completion, estimated, unpriced=model)
    if prompt is None or completion is None:
        if price.input != price.output:
            return CallCost(None, model)  # a total only: the split would matter
        return CallCost(price.of(total, 0), model)
    return CallCost(price.of(prompt, completion), model, prompt, completion, estimated)


def run_cost(state: JournalState, prices: Prices) -> RunCost:
    """What the run's journaled calls cost and what its last resume saved."""
    costs = [(r, call_cost(state.intents[k], r, prices))
             for k, r in state.results.items() if k in state.intents]
    last = max((s for r, _ in costs if (s := session_of(r)) is not None), default=None)
    total: float | None = 0.0
    # Journals from before sessions were recorded cannot say what was replayed.
    saved: float | None = 0.0 if last is not None or not costs else None
    estimated = False
    unpriced: set[str] = set()
    unsplit = 0
    replayed = 0
    for result, c in costs:
        if c.unpriced is not None:
            unpriced.add(c.unpriced)
        elif c.cost is None:
            unsplit += 1
        if c.cost is None:
            total = None
        elif total is not None:
            total += c.cost
        estimated = estimated or (c.estimated and c.cost is not None and c.cost > 0)
        session = session_of(result)
        if last is not None and last > 1 and (session is None or session < last):
            replayed += 1
            if c.cost is None or session is None:
                saved = None
            elif saved is not None:
                saved += c.cost
    return RunCost(total, saved, prices.currency, estimated, tuple(sorted(unpriced)), unsplit,
                   replayed)
