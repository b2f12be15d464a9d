"""`open_journal(spec, read_only=True)`: reads what a writer wrote, while it
writes; refuses every write (the database does); creates and migrates nothing."""

from __future__ import annotations

import pytest

from plait.journal import (
    Intent,
    JournalError,
    Result,
    RunRecord,
    open_journal,
)
from tests.journal.conftest import Store


def test_it_reads_and_never_writes(store: Store) -> None:
    writer = store.open()
    try:
        writer.create_run(RunRecord("r1", "entry"))
        lease = writer.acquire("r1", ttl=30)
        writer.write(intents=[Intent("r1", "k1", "tool", {"x": 1})], lease=lease)
        reader = open_journal(store.spec, read_only=True)
        try:
            assert [r.run_id for r in reader.list_runs()] == ["r1"]
            assert set(reader.load("r1").intents) == {"k1"}
            # The writer goes on while the reader is open, and the reader sees it.
            writer.write(results=[Result("r1", "k1", True, value=2, tool="tool")], lease=lease)
            assert reader.load("r1").results["k1"].value == 2
            held = reader.get_lease("r1")
            assert held is not None and (held.owner, held.epoch) == (lease.owner, lease.epoch)
            for write in (lambda: reader.create_run(RunRecord("r2", "entry")),
                          lambda: reader.acquire("r1", ttl=30),
                          lambda: reader.update_run("r1", status="done")):
                with pytest.raises(JournalError):
                    write()
            assert store.count("runs") == 1
            held = writer.get_lease("r1")  # not taken over
            assert held is not None and (held.owner, held.epoch) == (lease.owner, lease.epoch)
        finally:
            reader.close()
    finally:
        writer.close()


def test_nothing_is_created(store: Store) -> None:
    with pytest.raises(JournalError, match="no journal at|no such file"):
        open_journal(store.spec, read_only=True).list_runs()
    with pytest.raises(Exception):  # noqa: B017 - no table, no file: nothing was made
        store.count("runs")

