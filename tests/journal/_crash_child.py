"""Child process for the crash-durability test: writes through a JournalWriter
until it is killed, printing every acknowledged (durable) record to stdout.

    python _crash_child.py SPEC RUN_ID WORKERS

Prints "READY" once the journal is open, then lines "I key" (intent committed)
and "R key" (result committed: a flush returned after it was queued).
"""

from __future__ import annotations

import asyncio
import os
import sys

from plait.journal import Intent, JournalWriter, Result, open_journal

SHARED = "S" * 2000  # one blob shared by many results


def expected_value(key: str) -> object:
    """The value the child stores for `key`: the test checks it after the crash."""
    i = int(key.rsplit("-", 1)[1])
    if i % 3 == 0:
        return {"key": key, "big": key * 200}  # a blob of its own
    if i % 3 == 1:
        return {"key": key, "shared": SHARED}  # a shared blob
    return [key, i]  # inline


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
            key = f"{os.getpid()}-{w}-{i}"
            await writer.intents([Intent(run_id, key, "tool", {"w": w, "i": i})])
            say(f"I {key}")
            writer.result(Result(run_id, key, True, expected_value(key), tokens=1))
            if i % 2:
                await writer.flush()
                say(f"R {key}")
            i += 1

    async def run() -> None:
        writer = JournalWriter(journal)
        say("READY")
        await asyncio.gather(*(worker(w, writer) for w in range(workers)))

    asyncio.run(run())


if __name__ == "__main__":
    main()
