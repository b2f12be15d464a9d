"""Many journaled questions in one process: every one answers, and memory stays flat.

    python benchmarks/many_questions.py [--burst 1000] [--repeat 3] [--wave 1000]
        [--waves 10] [--postgres DSN | --no-postgres] [--no-sqlite] [--no-memory]

Burst: `--burst` questions at once (`plait.aask` gathered on one event loop), each
journaled on PostgreSQL by DSN (each opens its journal from the string, as a user
does) with the server's own `max_connections`; failures are counted, and the
most backends the process held at once (pg_stat_activity, by application_name).
Repeated `--repeat` times; the table shows medians and the worst.

Memory: `--waves` waves of `--wave` questions at once, one wave after the other,
on PostgreSQL and on SQLite, each in a fresh process (this script again, under
``-X tracemalloc``): its RSS (less tracemalloc's own tables) and the Python
memory tracemalloc sees (every allocation since the interpreter started that is
still alive) after 1,000 questions and after the last wave, after a gc.collect().
SQLite runs `--sqlite-wave` at once (200): each question's journal is its own
connection to one file, and 1,000 at once wait past its 10 s busy timeout.

The model is plait's simulated backend (`SimLLM`) with a scripted plan of two
lookups and a joiner's answer, no delay: what is measured is plait's own work.

Targets (issue 9): all of the burst answer; memory after 10,000 questions within
10% of after 1,000.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the shared question lives with its test

import plait  # noqa: E402
from plait.llm import SimLLM  # noqa: E402
from tests.durable.two_lookups import lookup_tool, script  # noqa: E402

DEFAULT_DSN = os.environ.get("PLAIT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
lookup = lookup_tool(0)


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _wave(n: int, journal: str, tag: str) -> tuple[int, float, str]:
    """`n` questions at once; (failures, seconds, first failure)."""

    async def one(i: int) -> plait.Answer:
        model = SimLLM(script, ttft=0.0, tps=100_000)
        return await plait.aask(f"x and y? ({tag} {i})", [lookup], model=model,
                                journal=journal, run_id=f"{tag}-{i}", timeout=300)

    t0 = time.perf_counter()
    answers = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    seconds = time.perf_counter() - t0
    failed = [a for a in answers if isinstance(a, BaseException)]
    wrong = [a for a in answers if not isinstance(a, BaseException) and a.text != "x and y"]
    first = repr(failed[0])[:200] if failed else ""
    return len(failed) + len(wrong), seconds, first


class _Backends:
    """The most backends with `app` as application_name, polled in a thread."""

    def __init__(self, dsn: str, app: str):
        import psycopg

        self.most = 0
        self._stop = threading.Event()
        self._conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
        self._app = app
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def count(self, app: str | None = None) -> int:
        if app is None:
            sql, params = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = %s", (
                "client backend",)
        else:
            sql, params = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (
                app,)
        return self._conn.execute(sql, params).fetchone()[0]

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.most = max(self.most, self.count(self._app))
            time.sleep(0.05)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def burst(dsn: str, n: int, repeat: int) -> list[tuple[str, str, str, bool | None]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
    failures, seconds, most, others = [], [], [], []
    first = ""
    for r in range(repeat):
        schema = f"plait_bq_{uuid.uuid4().hex[:10]}"
        app = f"plait_bq_{uuid.uuid4().hex[:8]}"
        spec = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}&application_name={app}"
        try:
            with _Backends(dsn, app) as backends:
                others.append(backends.count() - 1)
                failed, secs, why = asyncio.run(_wave(n, spec, f"b{r}"))
        finally:
            _drop_schema(dsn, schema)
        failures.append(failed)
        seconds.append(secs)
        most.append(backends.most)
        first = first or why
        _progress(f"  burst {r + 1}/{repeat}: {n - failed}/{n} answered in {secs:.1f} s, "
                  f"at most {backends.most} backends (other clients: {others[-1]})"
                  + (f"; first failure: {why}" if why else ""))
    rows = [
        ("server max_connections", f"{max_connections}", "", None),
        ("other clients at start", f"{max(others)}", "", None),
        (f"{n} at once: failed (worst)", f"{max(failures)}", "0", max(failures) == 0),
        ("  answered per second (median)", f"{n / statistics.median(seconds):.0f}", "", None),
        ("  seconds (median)", f"{statistics.median(seconds):.1f}", "", None),
        ("  backends held (most)", f"{max(most)}", "", None),
    ]
    if first:
        rows.append(("  first failure", first[:90], "", None))
    return rows


def waves_child(name: str, journal: str, wave: int, waves: int) -> None:
    """The memory measure, in a process started under ``-X tracemalloc``: prints
    one JSON line (failures, seconds, and RSS/traced MB after each wave)."""
    assert tracemalloc.is_tracing(), "run under -X tracemalloc"
    marks = []
    failed_total = 0
    t0 = time.perf_counter()
    for w in range(1, waves + 1):
        failed, secs, why = asyncio.run(_wave(wave, journal, f"{name}-m{w}"))
        failed_total += failed
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] / 2**20
        # tracemalloc's own tables are C memory that grows with the traces it
        # keeps: not the program's.
        rss = _rss_mb() - tracemalloc.get_tracemalloc_memory() / 2**20
        marks.append((rss, traced))
        _progress(f"  {name} wave {w}/{waves}: {wave - failed}/{wave} answered in {secs:.1f} s; "
                  f"RSS {rss:.1f} MB, traced {traced:.2f} MB"
                  + (f"; first failure: {why}" if why else ""))
    print(json.dumps({"failed": failed_total, "seconds": time.perf_counter() - t0,
                      "marks": marks}))


Row = tuple[str, str, str, bool | None]  # measure, value, target, met (None: no target)


def memory(name: str, journal: str, wave: int, waves: int) -> list[Row]:
    out = subprocess.run(
        [sys.executable, "-X", "tracemalloc", __file__, "--child", name, journal,
         "--wave", str(wave), "--waves", str(waves)],
        check=True, stdout=subprocess.PIPE, text=True, timeout=7200,
    ).stdout
    got = json.loads(out.strip().splitlines()[-1])
    failed_total, elapsed = got["failed"], got["seconds"]
    # The baseline: after 1,000 questions (or the first wave, if larger).
    base = min(waves, max(1, round(1000 / wave)))
    (rss1, tr1), (rssn, trn) = got["marks"][base - 1], got["marks"][-1]
    first, total, later = wave * base, wave * waves, waves - base
    return [
        (f"{name}: questions (failed)", f"{wave * waves} ({failed_total})", "0 failed",
         failed_total == 0),
        (f"  RSS after {first} / {total}",
         f"{rss1:.1f} / {rssn:.1f} MB ({100 * (rssn - rss1) / rss1:+.1f}%)",
         "<= +10%", rssn <= 1.10 * rss1),
        (f"  traced after {first} / {total}",
         f"{tr1:.2f} / {trn:.2f} MB ({100 * (trn - tr1) / tr1:+.1f}%)",
         "<= +10%", trn <= 1.10 * tr1),
        (f"  growth per {wave} after {first}",
         (f"RSS {1024 * (rssn - rss1) / max(1, later):+.0f} KB, traced "
          f"{1024 * (trn - tr1) / max(1, later):+.0f} KB"),
         "", None),
        ("  per question (wall, traced)", f"{1e3 * elapsed / (wave * waves):.1f} ms", "", None),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--wave", type=int, default=1000)
    parser.add_argument("--waves", type=int, default=10)
    parser.add_argument("--postgres", default=DEFAULT_DSN)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--sqlite-wave", type=int, default=200,
                        help="questions at once on SQLite (one connection each, one file: "
                        "1,000 at once wait past its 10 s busy timeout)")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "JOURNAL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        waves_child(*args.child, args.wave, args.waves)
        return

    rows: list[tuple[str, str, str, bool | None]] = []
    if not args.no_postgres:
        _progress(f"burst: {args.burst} journaled questions at once on PostgreSQL, "
                  f"{args.repeat} times")
        rows += burst(args.postgres, args.burst, args.repeat)
    if not args.no_memory:
        if not args.no_postgres:
            schema = f"plait_bm_{uuid.uuid4().hex[:10]}"
            dsn = args.postgres
            spec = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
            _progress(f"memory: {args.waves} waves of {args.wave} on PostgreSQL")
            try:
                rows += memory("PostgreSQL", spec, args.wave, args.waves)
            finally:
                _drop_schema(dsn, schema)
        if not args.no_sqlite:
            with tempfile.TemporaryDirectory(prefix="plait-bench-") as tmp:
                _progress(f"memory: {args.waves} waves of {args.wave} on SQLite")
                sqlite_waves = args.wave * args.waves // args.sqlite_wave
                _progress(f"  (SQLite: {sqlite_waves} waves of {args.sqlite_wave})")
                rows += memory("SQLite", str(Path(tmp) / "runs.db"), args.sqlite_wave,
                               sqlite_waves)

    print()
    print(f"many journaled questions in one process (plait {plait.__version__}, "
          f"{os.cpu_count()} cores)")
    head = f"{'measure':<34} {'value':>32} {'target':>9} {'':>6}"
    print(head)
    print("-" * len(head))
    for measure, value, target, ok in rows:
        mark = "" if ok is None else ("met" if ok else "MISSED")
        print(f"{measure:<34} {value:>32} {target:>9} {mark:>6}")


if __name__ == "__main__":
    main()
