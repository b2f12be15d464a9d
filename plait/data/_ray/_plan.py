"""Shard descriptors: how a sharded job's source is cut, and how a worker reads its cut.

A shard is a row range of the source (`start` <= ordinal < `stop`) plus the
source's fingerprint: a descriptor, never row payloads, so the controller's cost
per shard is independent of what the rows hold. A worker reopens the source from
its description and reads only its range (`aiter_rows(start)` skips earlier rows
as cheaply as the format allows).

Each shard has a lease of its own in the journal (`shard_lease_id`, numbered
from 0); a resumed job first takes over every shard lease an earlier controller
held, so it may cut its shards otherwise (other workers, another `shard_rows`).
Row keys never depend on shards (a key column, or the global ordinal), so which
worker runs a row, or how often it was re-assigned, changes nothing in the output.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from plait.data._source_base import Source, SourceRow

DEFAULT_SHARDS_PER_WORKER = 4  # a free worker soon finds more work; a lost one loses little


@dataclass(frozen=True, slots=True)
class Shard:
    index: int
    start: int  # first ordinal
    stop: int  # one past the last ordinal
    fingerprint: str  # the source's: a worker refuses to read other data

    @property
    def rows(self) -> int:
        return self.stop - self.start


def shard_lease_id(run_id: str, index: int) -> str:
    """The lease of one shard: in the journal's lease table next to the run's own
    (a separator no run id of plait's holds)."""
    return f"{run_id}\x1fshard-{index}"


def default_shard_rows(total: int, workers: int) -> int:
    return max(1, -(-total // (workers * DEFAULT_SHARDS_PER_WORKER)))


def split(total: int, shard_rows: int, fingerprint: str) -> list[Shard]:
    """Consecutive shards of `shard_rows` rows over `total` rows (the last shorter)."""
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
    return [Shard(i, start, min(start + shard_rows, total), fingerprint)
            for i, start in enumerate(range(0, total, shard_rows))]


class RangeSource:
    """Rows `start` <= ordinal < `stop` of a source, at their own ordinals (so row
    keys by position are the same as in the whole source)."""

    def __init__(self, source: Source, start: int, stop: int) -> None:
        self.source = source
        self.start = start
        self.stop = stop
        self.description: dict[str, Any] = source.description

    def fingerprint(self) -> str | None:
        return self.source.fingerprint()

    def count_rows(self) -> int | None:
        return self.stop - self.start

    async def aiter_rows(self, start: int = 0) -> AsyncIterator[SourceRow]:
        if self.start >= self.stop:
            return
        async for row in self.source.aiter_rows(max(start, self.start)):
            if row.ordinal >= self.stop:
                break
            yield row
