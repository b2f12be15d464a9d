"""Child process for the rows crash test: runs dataset rows through a JournalWriter
until it is killed, printing every row whose record was acknowledged (durable).

    python _rows_crash_child.py SPEC RUN_ID WORKERS

Prints "READY" once the journal is open, then "D key" lines. Each row is three
calls (intents committed together, as ready nodes are), their results queued,
then the row's record queued after them; every other row is flushed.
"""

from __future__ import annotations

import asyncio
import os
import sys

from plait.journal import Intent, JournalWriter, Result, RowRecord, open_journal

CALLS = 3


def row_value(row_key: str) -> object:
    """The value the child stores for a row (and its last call): the test checks it."""
    i = int(row_key.rsplit("-", 1)[1])
    return {"row": row_key, "text": row_key * 40} if i % 2 else [row_key, i]


def main() -> None:
    spec, run_id, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    journal = open_journal(spec)
    out = sys.stdout

    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    async def worker(w: int, writer: JournalWriter) -> None:
        i = 0
        while True:
            row = f"{os.getpid()}-{w}-{i}"
            keys = [f"{row}/{j}" for j in range(CALLS)]
            await writer.intents(
                [Intent(run_id, k, "t", {"j": j}, row_key=row) for j, k in enumerate(keys)]
            )
            for j, k in enumerate(keys):
                value = row_value(row) if j == CALLS - 1 else j
                writer.result(Result(run_id, k, True, value, tokens=1, row_key=row))
                await asyncio.sleep(0)
            writer.row(RowRecord(run_id, row, w * 1_000_000 + i, "done", row_value(row),
                                 tokens=CALLS))
            if i % 2:
                await writer.flush()
                say(f"D {row}")
            i += 1

    async def run() -> None:
        writer = JournalWriter(journal)
        say("READY")
        await asyncio.gather(*(worker(w, writer) for w in range(workers)))

    asyncio.run(run())


if __name__ == "__main__":
    main()
