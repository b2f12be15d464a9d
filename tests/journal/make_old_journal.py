"""Makes `fixtures/journal_001_002.db` with plait as it was before migration 003
(schema 001_initial + 002_leases), for tests/journal/test_migrate_rows.py:

    git archive 78bbd4b plait | tar -x -C /tmp/old
    cd /tmp && PYTHONPATH=/tmp/old:$REPO python $REPO/tests/journal/make_old_journal.py

Two runs of `_old_tools.greet`: "done" (["a", "b"], finished) and "half"
(["a", "b", "c"]: shout("c") failed, so the run failed with a and b done).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import plait
from tests.journal import _old_tools

OUT = Path(__file__).with_name("fixtures") / "journal_001_002.db"


def main() -> None:
    OUT.unlink(missing_ok=True)
    done = plait.run(_old_tools.greet, ["a", "b"], journal=str(OUT), run_id="done")
    assert done.value == "A B", done.value
    _old_tools.FAIL.add("c")
    half = plait.run(_old_tools.greet, ["a", "b", "c"], journal=str(OUT), run_id="half",
                     raise_on_error=False)
    assert not half.ok
    with sqlite3.connect(OUT) as conn:  # everything in the main file, no WAL left
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("VACUUM")
        names = [r[0] for r in conn.execute("SELECT name FROM _plait_migrations")]
    assert names == ["001_initial", "002_leases"], names


if __name__ == "__main__":
    main()
