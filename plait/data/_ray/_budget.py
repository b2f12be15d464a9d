"""Global budgets of a sharded job: the model's limits held by the controller and
lent to workers as shares.

The job's model spec carries its limits (`max_concurrency`, `requests_per_minute`,
`tokens_per_minute`): they are the job's, not each worker's. The controller splits
them over the live workers (a lease of the budget per worker) and splits them again
whenever a worker comes or goes, so the sum of the shares never exceeds the limit
and a lost worker's share is not stranded. Each worker's client keeps its own
AIMD and token buckets within its share (and backs off on 429 by itself).
"""

from __future__ import annotations

from typing import Any

from plait.llm._spec import LIMIT_OPTIONS, parse_openai, parse_sim_options

Limits = dict[str, float | int]


def limits_of(spec: str | None) -> Limits:
    """The client-side limits a model spec names ({} for none, or a local model)."""
    if not spec:
        return {}
    kind, _, rest = spec.strip().partition(":")
    options: dict[str, Any]
    if kind == "openai":
        options = parse_openai(rest)[1]
    elif kind == "sim":
        options = parse_sim_options(rest)
    else:
        return {}
    return {k: v for k, v in options.items() if k in LIMIT_OPTIONS and v is not None}


def shares(limits: Limits, workers: int) -> list[Limits]:
    """`limits` split over `workers`: whole calls in flight (the remainder to the
    first ones; each at least one), rates in equal parts. Their sum is the limit."""
    if workers < 1:
        return []
    out: list[Limits] = [{} for _ in range(workers)]
    for name, total in limits.items():
        if name == "max_concurrency":
            base, extra = divmod(int(total), workers)
            for i, share in enumerate(out):
                share[name] = base + (1 if i < extra else 0)
        else:
            for share in out:
                share[name] = float(total) / workers
    return out


def check_budget(limits: Limits, workers: int) -> str | None:
    """Why `limits` cannot be split over `workers` (a worker with no call in flight
    would never run a row), or None."""
    total = limits.get("max_concurrency")
    if total is not None and int(total) < workers:
        return (f"the model allows max_concurrency={int(total)} calls in flight, fewer than "
                f"workers={workers}: each worker needs at least one; use fewer workers")
    return None
