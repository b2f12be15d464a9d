"""`plait map module:workflow data.jsonl --out out.parquet`: a workflow over a dataset."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import typer

from plait.runtime._engine import new_run_id
from plait._errors import PlaitError
from plait.cli._app import app
from plait.cli._fail import about_journal, fail
from plait.cli._journal import NO_JOURNAL_HELP, WRITE_HELP, for_run, resume_hint
from plait.cli._load import load_workflow
from plait.cli.run import EXIT_INTERRUPTED
from plait.data import MapResult, amap
from plait.journal._postgres import redact

ON_ROW_ERROR = ("record", "stop")


@app.command("map")
def map_command(
    target: str = typer.Argument(..., help="module:workflow or path/to/file.py:workflow; "
                                 "the workflow takes one row (a dict)"),
    source: str = typer.Argument(..., help="the rows: a .jsonl, .csv or .parquet file"),
    out: str = typer.Option(None, "--out", "-o",
                            help="write the done rows here (.jsonl or .parquet); without "
                            "it they go to stdout as JSON lines"),
    model: str = typer.Option(None, "--model", help="the model of the rows' LLM calls that "
                              "name none: local | openai:MODEL | sim:... (default: "
                              "$PLAIT_MODEL, else local)"),
    key: str = typer.Option(None, help="the column that names a row (unique); default: "
                            "its position, with the file's fingerprint checked on resume"),
    window: int = typer.Option(256, min=1, help="most rows read and not yet finished"),
    ordered: bool = typer.Option(False, help="keep the source's order (the output file "
                                 "of a journaled job is always in order)"),
    on_row_error: str = typer.Option("record", help="record (go on) | stop"),
    max_failed_rows: int = typer.Option(None, min=0,
                                        help="stop the job when more rows than this fail"),
    journal: str = typer.Option(None, "--journal", "-j", help=WRITE_HELP),
    no_journal: bool = typer.Option(False, "--no-journal", help=NO_JOURNAL_HELP),
    run_id: str = typer.Option(None, help="name the job; a journaled job with this id "
                               "is resumed"),
    wait: float = typer.Option(0.0, "--wait", min=0.0, metavar="SECONDS",
                               help="if another process is running this job, wait this "
                               "long for it to end"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    ray: str = typer.Option(None, "--ray", metavar="ADDRESS",
                            help="run the rows on worker actors of the Ray cluster at "
                            "ADDRESS (host:port, or auto); see docs/ray.md"),
    workers: int = typer.Option(None, min=1, help="with --ray: how many workers"),
    shard_rows: int = typer.Option(None, min=1, help="with --ray: rows per shard (default: "
                                   "four shards per worker)"),
) -> None:
    """Run a workflow on every row of a dataset, many rows at once, with a live view.

    Every row's calls are journaled: a job stopped any way continues with
    `plait resume RUN_ID`, skipping the rows it finished. A row that fails is
    recorded (see `plait show RUN_ID --rows failed`) and the job goes on. Exit
    codes: 0 done (even with failed rows), 1 the job stopped, 2 an error
    (arguments, the journal), 130 interrupted (Ctrl-C)."""
    if on_row_error not in ON_ROW_ERROR:
        raise typer.BadParameter("must be record or stop", param_hint="--on-row-error")
    if ray is None and (workers is not None or shard_rows is not None):
        raise typer.BadParameter("--workers and --shard-rows go with --ray ADDRESS",
                                 param_hint="--workers")
    sharding: dict[str, Any] = {}
    if ray is not None:
        if no_journal:
            raise typer.BadParameter("a job on Ray is journaled (its workers resume from "
                                     "it)", param_hint="--no-journal")
        sharding = {"executor": "ray", "workers": workers or 1, "ray_address": ray,
                    "shard_rows": shard_rows}
    wf = load_workflow(target)
    spec = for_run(journal, no_journal)
    if spec is not None and not run_id:
        run_id = new_run_id()
    run_job(lambda: amap(wf, source, key=key, out=out or StdoutRows(), window=window,
                         ordered=ordered,
                         on_row_error=on_row_error,  # type: ignore[arg-type]
                         max_failed_rows=max_failed_rows, journal=spec, run_id=run_id,
                         wait=wait, model=model, progress=True, raise_on_error=False,
                         **sharding),
            as_json, run_id, spec)


def run_job(job: Callable[[], Coroutine[Any, Any, MapResult]], as_json: bool,
            run_id: str | None, journal: str | None, location: str | None = None) -> None:
    """Run (or resume) a dataset job, then report it; shared with `plait resume`."""
    try:
        result = asyncio.run(job())
    except KeyboardInterrupt:
        hint = resume_hint(run_id, journal) if run_id else ""
        print(f"interrupted{hint}", file=sys.stderr)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (PlaitError, OSError) as exc:  # a journal, a source that cannot be read
        where = location or (redact(journal) if journal else None)
        fail(about_journal(exc, where) if where and isinstance(exc, PlaitError) else str(exc))
    report(result, as_json, journal)
    if not result.ok:
        raise typer.Exit(1)


class StdoutRows:
    """A sink that prints each row as a JSON line on stdout (`plait map ... | jq`)."""

    def write(self, row: dict[str, Any]) -> None:
        print(json.dumps(row, ensure_ascii=False, default=str), flush=True)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def report(result: MapResult, as_json: bool, journal: str | None) -> None:
    if as_json:
        print(json.dumps({
            "run_id": result.run_id, "status": result.status, "rows_done": result.rows_done,
            "rows_dropped": result.rows_dropped, "rows_failed": result.rows_failed,
            "rows_skipped": result.rows_skipped, "tokens": result.tokens,
            "elapsed": result.elapsed, "out": str(result.out) if result.out else None,
            "error": str(result.error) if result.error else None,
        }))
        return
    if result.out is not None:  # the job's value: the file it wrote
        print(result.out)
    if result.error is not None:
        print(f"job stopped: {result.error}", file=sys.stderr)
    if result.rows_failed:
        shown = "" if journal is None else (
            f"; list them with: plait show {result.run_id} --rows failed")
        print(f"{result.rows_failed:,} rows failed{shown}", file=sys.stderr)
        for row in result.failures[:5]:
            print(f"  row {row.ordinal} (key {row.key}): {row.error}", file=sys.stderr)
    if not result.ok and journal is not None:
        print(f"continue it with: plait resume {result.run_id}", file=sys.stderr)
