"""`plait.map`, `plait.amap`, `plait.stream`: a workflow over every row of a dataset.

    @plait.workflow
    async def qa(row: dict) -> dict:
        answer = await plait.generate(f"Answer briefly: {row['question']}")
        return {"id": row["id"], "answer": answer}

    result = plait.map(qa, "questions.jsonl", key="id", out="answers.parquet",
                       journal="runs.db", run_id="qa-v1")

A job with a journal is one run in it: resumed under its run id, it skips the rows
it finished and re-pays at most the calls that were in flight when it stopped. Its
output file is written from the journal's row records when the last row has
ended, in source order: a job killed at any instant leaves either no output file
or a whole one, each row in it once.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plait.runtime import _events as ev
from plait._api import Workflow, _sync, close_after, workflow
from plait.runtime._durable import Durable, close_durable, code_version, open_durable
from plait.runtime._engine import journal_failure, new_run_id
from plait._entry import import_entry
from plait._errors import PlaitError
from plait.runtime._ownership import DEFAULT_LEASE_TTL
from plait.data import _twins
from plait.data._progress import MapProgress
from plait.data._ray._controller import Plan
from plait.data._rows import (
    Job,
    KeyFn,
    OnRowError,
    Row,
    RowError,
    RowRunner,
    workflow_runner,
)
from plait.data._sinks import Sink, open_sink
from plait.data._sources import Source, open_source, reopen_source
from plait.generate._pool import LLMPool, current_pool, spec_of
from plait.journal import Journal, JournalError, RunNotFoundError, open_journal
from plait.llm import LLM

ENTRY_PREFIX = "map:"
_EXPORT_PAGE = 1000


@dataclass(frozen=True, slots=True)
class MapResult:
    """What a dataset job did. Counts are over the whole job (earlier processes too,
    when it was resumed); `failures` holds the rows that failed in this process."""

    run_id: str
    status: str  # done | failed
    rows_done: int
    rows_dropped: int
    rows_failed: int
    rows_skipped: int  # finished by an earlier process of this job: not run again
    tokens: int  # spent in this process
    elapsed: float
    out: Path | None = None
    failures: tuple[Row, ...] = field(default=(), repr=False)
    error: BaseException | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "done"

    @property
    def rows(self) -> int:
        return self.rows_done + self.rows_dropped + self.rows_failed


class MapOptionError(PlaitError, ValueError):
    """Options of a dataset job that cannot work together (the message says why)."""


_KEEP_FAILURES = 100  # failed rows a result keeps (all are in the journal)


def _runner(obj: Any) -> tuple[RowRunner, str, dict[str, Any] | None]:
    """What runs each row, the job's entry name, and how a resume rebuilds it.

    A workflow of one parameter gets the row (a dict). An object with `run_row`
    (`plait.asker(...)`: a question per row) runs rows itself; its `recipe()`
    names the factory that makes it again on resume."""
    run_row = getattr(obj, "run_row", None)
    if run_row is not None:
        return run_row, obj.name, obj.recipe()
    wf = workflow(obj)
    params = [p for p in inspect.signature(wf.fn).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(params) < 1:
        raise MapOptionError(
            f"{wf.name} takes no argument: a dataset workflow takes the row, "
            "e.g. async def qa(row: dict) -> dict")
    return workflow_runner(wf.fn, wf.name), wf.name, None


def _options(
    window: int, ordered: bool, on_row_error: OnRowError, max_failed_rows: int | None,
    out: str | os.PathLike[str] | None,
) -> dict[str, Any]:
    return {"window": window, "ordered": ordered, "on_row_error": on_row_error,
            "max_failed_rows": max_failed_rows,
            "out": str(Path(out).resolve()) if _is_path(out) else None}


async def stream(
    wf: Workflow | Callable[..., Coroutine[Any, Any, Any]],
    source: Any,
    *,
    key: str | KeyFn | None = None,
    window: int = 256,
    ordered: bool = False,
    on_row_error: OnRowError = "record",
    max_failed_rows: int | None = None,
    journal: str | Journal | None = None,
    run_id: str | None = None,
    retry_failed: bool = False,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    wait: float = 0.0,
    model: str | LLM | None = None,
) -> AsyncIterator[Row]:
    """Run `wf` on every row of `source`; yield each row's outcome (a `Row`) as it ends,
    or in source order with `ordered=True`.

    At most `window` rows are read and not yet handed out: a consumer that stops
    pulling stops the reading. Failed rows are yielded too (`row.status ==
    "failed"`), unless `on_row_error="stop"` (or more than `max_failed_rows` fail):
    then the stream raises `RowError`. Rows a resumed job finished before are not
    yielded again. Breaking out of the loop cancels the rows still running."""
    async with _JobRun.open(wf, source, key=key, window=window, ordered=ordered,
                            on_row_error=on_row_error, max_failed_rows=max_failed_rows,
                            journal=journal, run_id=run_id, retry_failed=retry_failed,
                            lease_ttl=lease_ttl, wait=wait, out=None, model=model) as job:
        async for row in job.rows():
            yield row


async def amap(
    wf: Workflow | Callable[..., Coroutine[Any, Any, Any]],
    source: Any,
    *,
    key: str | KeyFn | None = None,
    out: str | os.PathLike[str] | Sink | None = None,
    window: int = 256,
    ordered: bool = False,
    on_row_error: OnRowError = "record",
    max_failed_rows: int | None = None,
    journal: str | Journal | None = None,
    run_id: str | None = None,
    retry_failed: bool = False,
    progress: bool = False,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    wait: float = 0.0,
    model: str | LLM | None = None,
    raise_on_error: bool = True,
    executor: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    shard_rows: int | None = None,
) -> MapResult:
    """Run `wf` on every row of `source`; write the done rows to `out` (.jsonl or
    .parquet) and return the counts.

    out: a path (.jsonl or .parquet), or a sink object (`write`, `close`, `abort`).
    source: a path (.jsonl, .csv, .parquet), a `datasets.Dataset`, or any iterable or
    async iterable of dicts, read lazily. key: the column that names a row (its
    identity on resume); default: its position, with the source's fingerprint
    checked on resume. A row whose workflow returns `plait.DROP` is left out.
    A row that fails is recorded and the job goes on (`on_row_error="record"`) up
    to `max_failed_rows`; `"stop"` ends the job at the first. journal/run_id: as
    for `plait.run`; the same run id resumes the job (`retry_failed=True` runs its
    failed rows again). model: the model of the rows' `plait.generate` calls that
    name none (a spec, or an LLM object); every row shares one opened model, so
    its limits (concurrency, requests and tokens per minute) hold for the job.

    executor="ray": the rows run on `workers` Ray actors (of the cluster at
    `ray_address`, or the one this process is connected to), in shards of
    `shard_rows` rows handed out one at a time; the journal must be a spec every
    worker opens (PostgreSQL, or SQLite with every node on this host). The model's
    limits are the whole job's, split over the workers. See docs/ray.md."""
    started = time.perf_counter()
    sharded = _sharding(executor, workers, ray_address, shard_rows, journal, model)
    if _is_path(out):
        # A bad output (its format, its folder, a missing extra) is said now, not
        # after the last row: a sink opened and dropped at once writes nothing.
        _sink(out).abort()
    failures: list[Row] = []
    error: BaseException | None = None
    async with _JobRun.open(wf, source, key=key, window=window, ordered=ordered,
                            on_row_error=on_row_error, max_failed_rows=max_failed_rows,
                            journal=journal, run_id=run_id, retry_failed=retry_failed,
                            lease_ttl=lease_ttl, wait=wait, out=out, model=model,
                            sharded=sharded) as job:
        counts = job.job.counts
        # Without a journal the rows go to the sink as they end; with one, the sink is
        # written from the journal at the end (see the module doc).
        direct = _sink(out) if out is not None and job.durable is None else None
        # Counting may read the whole file: off the loop, and only for the view.
        total = await asyncio.to_thread(job.job.source.count_rows) if progress else None
        view = MapProgress(counts, total=total, enabled=progress)
        try:
            with view:
                try:
                    if sharded is not None:
                        error, total_rows = await _run_sharded(job, sharded, wf,
                                                               max_failed_rows)
                        if error is None:
                            twins, error = await job.twins(total_rows, sharded=True)
                            failures += twins[:_KEEP_FAILURES]
                    else:
                        async for row in job.rows():
                            if row.status == "done" and direct is not None:
                                direct.write(_plain(row.value))
                            elif row.status == "failed" and len(failures) < _KEEP_FAILURES:
                                failures.append(row)
                except RowError as exc:
                    error = exc
            if error is None and out is not None:
                if direct is not None:
                    direct.close()
                    direct = None
                else:
                    await job.export(out)
        finally:
            if direct is not None:
                direct.abort()
        job.error = error
        totals = await job.totals()
    result = MapResult(
        run_id=job.run_id,
        status="done" if error is None else "failed",
        rows_done=totals["done"], rows_dropped=totals["dropped"], rows_failed=totals["failed"],
        rows_skipped=counts.skipped, tokens=counts.tokens,
        elapsed=time.perf_counter() - started,
        out=Path(out) if _is_path(out) and error is None else None,
        failures=tuple(failures), error=error,
    )
    if error is not None and raise_on_error:
        raise error
    return result


def map(wf: Workflow | Callable[..., Coroutine[Any, Any, Any]], source: Any,
        **options: Any) -> MapResult:
    """Sync `amap`: the same arguments, for code that is not already async."""
    return _sync(amap(wf, source, **options))


async def aresume_map(run_id: str, journal: str | Journal, *,
                      workflow_fn: Workflow | Callable[..., Any] | None = None,
                      **options: Any) -> MapResult:
    """Continue a dataset job: its workflow, source and options come from the journal."""
    from plait._api import _import_entry

    journal_obj = open_journal(journal) if isinstance(journal, str) else journal
    try:
        record = journal_obj.get_run(run_id)
        if record is None:
            raise RunNotFoundError(run_id, str(journal))
        if not record.entry.startswith(ENTRY_PREFIX):
            raise PlaitError(f"run {run_id!r} is not a dataset job ({record.entry})")
        entry = record.entry.removeprefix(ENTRY_PREFIX)
        arguments = record.arguments or {}
        recipe = arguments.get("runner")
        runner: Any
        if recipe is not None:  # e.g. a question per row: its factory makes it again
            runner = import_entry(recipe["factory"])(**recipe.get("kwargs", {}))
        else:
            wf = workflow(workflow_fn) if workflow_fn is not None else _import_entry(entry)
            runner = Workflow(wf.fn, entry)
        source = reopen_source(arguments["source"])
        merged = {**dict(arguments.get("options") or {}), **options}
        # Workers of a job on Ray open the journal themselves: by its spec.
        target = journal if merged.get("executor") == "ray" else journal_obj
        return await amap(runner, source, key=arguments.get("key"),
                          journal=target, run_id=run_id, **merged)
    finally:
        if isinstance(journal, str):
            journal_obj.close()


def resume_map(run_id: str, journal: str | Journal, **options: Any) -> MapResult:
    """Sync `aresume_map`."""
    return _sync(aresume_map(run_id, journal, **options))


# ---------------------------------------------------------------- one job's run


class _JobRun:
    """A job and the journal run it lives in, opened and closed together."""

    def __init__(self, job: Job, durable: Durable | None, run_id: str, own: bool,
                 same_data: bool = False) -> None:
        self.job = job
        self.durable = durable
        self.run_id = run_id
        self.own = own
        # The source is the one the job started with (its fingerprint): its rows
        # have the ordinals they had, so a missing one is a twin (plait/data/_twins.py).
        self.same_data = same_data
        self.error: BaseException | None = None

    async def rows(self) -> AsyncIterator[Row]:
        """The job's rows as they end, then the twins found at its end."""
        async for row in self.job.rows():
            yield row
        found, stop = await self.twins(self.job.counts.read, sharded=False)
        for row in found:
            yield row
        if stop is not None:
            raise stop

    async def twins(self, total: int, *, sharded: bool) -> tuple[list[Row], RowError | None]:
        """Twins no process could see, once every row of the job has ended: in a
        sharded job, or in a resumed one on the data it started with (a fresh local
        job refuses every twin as it reads it)."""
        job = self.job
        if (self.durable is None or job.key is None or not self.same_data
                or (job.fresh and not sharded)):
            return [], None
        await self.durable.writer.flush()
        ordinals = await asyncio.to_thread(_twins.find, self.durable.journal, self.run_id, total)
        return await asyncio.to_thread(_twins.refuse, job, ordinals, job.max_failed_rows)

    @classmethod
    def open(cls, wf: Any, source: Any, *, key: str | KeyFn | None, window: int,
             ordered: bool, on_row_error: OnRowError, max_failed_rows: int | None,
             journal: str | Journal | None, run_id: str | None, retry_failed: bool,
             lease_ttl: float, wait: float, out: Any, model: str | LLM | None,
             sharded: Plan | None = None) -> _Opening:
        return _Opening(cls, wf, source, dict(
            key=key, window=window, ordered=ordered, on_row_error=on_row_error,
            max_failed_rows=max_failed_rows, journal=journal, run_id=run_id,
            retry_failed=retry_failed, lease_ttl=lease_ttl, wait=wait, out=out, model=model,
            sharded=sharded))

    async def export(self, out: Any) -> None:
        """Write every done row, in source order, from the journal to `out`."""
        assert self.durable is not None
        await self.durable.writer.flush()
        journal = self.durable.journal
        sink = _sink(out)
        try:
            after = -1
            while True:
                page = await asyncio.to_thread(
                    journal.iter_rows, self.run_id, status="done", after=after,
                    limit=_EXPORT_PAGE)
                for record in page:
                    sink.write(_plain(record.value))
                if len(page) < _EXPORT_PAGE:
                    break
                after = page[-1].ordinal
            sink.close()
        except BaseException:
            sink.abort()
            raise

    async def totals(self) -> dict[str, int]:
        """Rows by status over the whole job (this process's, without a journal)."""
        counts = self.job.counts
        if self.durable is None:
            return {"done": counts.done, "dropped": counts.dropped, "failed": counts.failed}
        await self.durable.writer.flush()
        stored = await asyncio.to_thread(self.durable.journal.count_rows, self.run_id)
        return {s: stored.get(s, 0) for s in ("done", "dropped", "failed")}


class _Opening:
    """`async with _JobRun.open(...) as job`: opens the journal run, closes it with the
    job's status (done, failed or cancelled), whatever ended the job."""

    def __init__(self, cls: type[_JobRun], wf: Any, source: Any, options: dict[str, Any]):
        self.cls = cls
        self.wf = wf
        self.source = source
        self.options = options
        self.run: _JobRun | None = None
        self.listeners: tuple[ev.Listener, ...] = ()

    async def __aenter__(self) -> _JobRun:
        # Every row's LLM calls share the job's models (and their limits).
        self.pool = _job_pool(self.options["model"])
        await self.pool.__aenter__()
        try:
            return await self._open()
        except BaseException:
            await self.pool.__aexit__(None, None, None)
            raise

    async def _open(self) -> _JobRun:
        o = self.options
        runner, name, recipe = _runner(self.wf)
        src: Source = open_source(self.source)
        key = o["key"]
        journal = o["journal"]
        run_id = o["run_id"] or new_run_id()
        durable = None
        fresh = True
        same_data = False
        if journal is not None:
            if callable(key):
                raise MapOptionError(
                    "a journaled job needs key= as a column name (a function cannot be "
                    "recorded for the resume)")
            fingerprint = src.fingerprint()
            if key is None and fingerprint is None:
                raise MapOptionError(
                    "this source has no fingerprint (an iterable), so a row's position "
                    "cannot name it on resume: pass key=COLUMN, a column whose values are "
                    "unique")
            options = _options(o["window"], o["ordered"], o["on_row_error"],
                               o["max_failed_rows"], o["out"])
            if isinstance(o["model"], str):
                options["model"] = o["model"]
            if o["sharded"] is not None:  # a resume runs on Ray again, in the same shards
                plan: Plan = o["sharded"]
                options.update(executor="ray", workers=plan.workers,
                               ray_address=plan.address, shard_rows=plan.shard_rows)
            arguments = {"source": src.description, "key": key,
                         "fingerprint": fingerprint, "options": options}
            if recipe is not None:
                arguments["runner"] = recipe
            fresh = await _check_resume(journal, run_id, name, arguments)
            same_data = fingerprint is not None and fingerprint == arguments["fingerprint"]
            durable = await open_durable(
                journal, run_id=run_id, entry=ENTRY_PREFIX + name, arguments=arguments,
                version=code_version(getattr(self.wf, "fn", self.wf)), allow_rerun=False,
                lease_ttl=o["lease_ttl"], wait=o["wait"], load=False)
        job = Job(runner, src, run_id=run_id, key=key, window=o["window"],
                  ordered=o["ordered"], on_row_error=o["on_row_error"],
                  max_failed_rows=o["max_failed_rows"], durable=durable,
                  look_up=durable is not None and (not fresh or key is not None),
                  fresh=fresh, retry_failed=o["retry_failed"])
        self.run = self.cls(job, durable, run_id, own=isinstance(journal, str),
                            same_data=same_data)
        if durable is not None:
            durable.watch(_stop_on_writer_failure(asyncio.current_task()))
        # The job is a run to observers (tracing): its rows' runs are its parts.
        self.listeners = ev.listeners_of(run_id, ENTRY_PREFIX + name, ())
        for listener in self.listeners:
            listener(ev.RunStarted(run_id, time.perf_counter(), ENTRY_PREFIX + name))
        return self.run

    async def __aexit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            await self._close(exc)
        finally:
            await self.pool.__aexit__(None, None, None)
            if self.listeners:
                assert self.run is not None
                status = ("done" if exc is None and self.run.error is None else
                          "failed" if exc is None or isinstance(exc, Exception) else "cancelled")
                for listener in self.listeners:
                    listener(ev.RunFinished(self.run.run_id, time.perf_counter(), status))

    async def _close(self, exc: BaseException | None) -> None:
        run = self.run
        assert run is not None
        durable = run.durable
        if durable is None:
            return
        if exc is not None:
            if isinstance(exc, JournalError) and not isinstance(exc, RunNotFoundError):
                exc = journal_failure(run.run_id, exc, "stopped")
                await close_after(durable, exc, own=run.own, tokens=run.job.counts.tokens)
                raise exc
            await close_after(durable, exc, own=run.own, tokens=run.job.counts.tokens)
            return
        status = "done" if run.error is None else "failed"
        try:
            await close_durable(durable, status, run.error, own=run.own,
                                tokens=run.job.counts.tokens)
        except JournalError as err:
            raise journal_failure(run.run_id, err, "ended, but not in its journal") from err


def _sharding(executor: str, workers: int | None, address: str | None,
              shard_rows: int | None, journal: Any, model: Any) -> Plan | None:
    """The plan of a job on Ray, or None for a job in this process (checked now,
    before anything is opened)."""
    from plait.data._ray import Plan

    if executor == "local":
        if workers is not None or address is not None or shard_rows is not None:
            raise MapOptionError("workers=, ray_address= and shard_rows= are options of "
                                 "executor='ray'")
        return None
    if executor != "ray":
        raise MapOptionError(f"executor must be 'local' or 'ray', got {executor!r}")
    if not isinstance(journal, (str, os.PathLike)):
        raise MapOptionError(
            "a job on Ray needs journal= as a spec every worker opens itself: a "
            "postgresql:// URL (or a SQLite file, with every Ray node on this host)")
    if model is not None and not isinstance(model, str):
        raise MapOptionError("a job on Ray needs model= as a spec string: each worker "
                             "opens the model itself")
    if workers is None or workers < 1:
        raise MapOptionError(f"executor='ray' needs workers=N (N >= 1), got {workers!r}")
    if shard_rows is not None and shard_rows < 1:
        raise MapOptionError(f"shard_rows must be >= 1, got {shard_rows}")
    from plait.data._ray._cluster import preflight

    preflight(address)
    spec = os.fspath(journal)
    if "://" not in spec and spec != ":memory:":
        spec = str(Path(spec).resolve())  # workers start elsewhere
    return Plan(spec, workers, address, shard_rows, model, None)


async def _run_sharded(job: _JobRun, plan: Plan, wf: Any,
                       max_failed_rows: int | None) -> tuple[RowError | None, int]:
    """The job's rows on Ray workers, shard by shard (plait.data._ray): the error
    that stopped it, if any, and how many rows the source has."""
    from dataclasses import replace as _replace

    from plait.data._ray import Controller

    if plan.journal == ":memory:":
        raise MapOptionError("an in-memory journal cannot be shared with workers")
    runner = wf if getattr(wf, "run_row", None) is not None else workflow(wf).fn
    _ship_by_value(runner)
    controller = Controller(job.job, _replace(plan, max_failed_rows=max_failed_rows), runner)
    return await controller.run(), controller.total


def _ship_by_value(runner: Any) -> None:
    """A workflow loaded from a file by path (`plait map path/to/file.py:wf`) lives in
    a module only this process knows: workers get its code, not its name."""
    from plait._entry import FILE_MODULE_PREFIX

    module = sys.modules.get(getattr(runner, "__module__", "") or "")
    if module is not None and module.__name__.startswith(FILE_MODULE_PREFIX):
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(module)


def _job_pool(model: str | LLM | None) -> LLMPool:
    """The pool of a job's rows: the current one when the job names no model; else
    one whose default is `model` (holding it, for an LLM object), under the current."""
    parent = current_pool()
    if model is None:
        return LLMPool(parent=parent)
    if isinstance(model, str):
        return LLMPool(default=model, parent=parent)
    return LLMPool(default=spec_of(model), parent=parent).holding(model)


def _stop_on_writer_failure(task: asyncio.Task[Any] | None) -> Callable[[BaseException], None]:
    """The job's writer gave up (from its thread): cancel the job's task, whose
    journal error then says why (the writer raises it on the next call)."""
    loop = asyncio.get_running_loop()

    def stop(exc: BaseException) -> None:
        def cancel() -> None:
            if task is not None and not task.done():
                task.cancel(f"journal failed: {exc}")
        try:
            loop.call_soon_threadsafe(cancel)
        except RuntimeError:
            pass

    return stop


async def _check_resume(journal: str | Journal, run_id: str, entry: str,
                        arguments: dict[str, Any]) -> bool:
    """True for a new job; for a resumed one, check it is the same job over the same
    data, saying precisely what differs."""
    journal_obj = await asyncio.to_thread(open_journal, journal) if isinstance(journal, str) \
        else journal
    try:
        record = await asyncio.to_thread(journal_obj.get_run, run_id)
    finally:
        if isinstance(journal, str):
            journal_obj.close()
    if record is None:
        return True
    before = record.arguments or {}
    if record.entry != ENTRY_PREFIX + entry:
        raise MapOptionError(f"run {run_id!r} in the journal is {record.entry}, not a job of "
                             f"{entry}: use another run id")
    if before.get("key") != arguments["key"]:
        raise MapOptionError(f"job {run_id!r} named its rows by key={before.get('key')!r}; "
                             f"it cannot be resumed with key={arguments['key']!r}")
    if arguments["key"] is None and before.get("fingerprint") != arguments["fingerprint"]:
        raise MapOptionError(
            f"job {run_id!r} names its rows by position, and its source has changed since "
            "it started (another fingerprint): positions would name other rows. Resume it "
            "on the same data, or start a new run id (with key=COLUMN, a changed source "
            "can be resumed)")
    if before.get("source") != arguments["source"] and arguments["key"] is None:
        raise MapOptionError(f"job {run_id!r} read {before.get('source')}; it cannot be "
                             f"resumed on {arguments['source']}")
    # The source's description (and options) may differ with a key column: a resumed
    # job may read a moved or extended file. The journal keeps what it was started with.
    arguments["source"] = before.get("source", arguments["source"])
    arguments["fingerprint"] = before.get("fingerprint")
    return False


def _is_path(out: Any) -> bool:
    return isinstance(out, (str, os.PathLike))


def _sink(out: Any) -> Sink:
    """A path's sink (by its suffix), or `out` itself: an object with the `Sink`
    methods (`write`, `close`, `abort`), e.g. the CLI's JSON lines on stdout."""
    return open_sink(out) if _is_path(out) else out


def _plain(value: Any) -> Any:
    """A row value as a sink takes it: a dict (a bare value becomes {"value": ...})."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        value = dump(mode="json")
    return value if isinstance(value, dict) else {"value": value}
