"""`plait resume RUN_ID`: continue a journaled run (a workflow or a question) from
its journal alone: its entry, arguments and options are recorded there."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import typer

from plait._api import aresume
from plait._entry import FILE_MODULE_PREFIX
from plait.cli._app import app
from plait.cli._fail import fail
from plait.cli._journal import HELP, journal_option, open_existing
from plait.cli._load import load_object
from plait.cli.ask import DEFAULT_TOOLS, answer_question
from plait.cli.map import StdoutRows, run_job
from plait.cli.reason import ENTRY as REASONING
from plait.cli.reason import resume_reasoning
from plait.cli.run import start_run
from plait.data import aresume_map
from plait.journal import RunRecord


@app.command("resume")
def resume_command(
    run_id: str = typer.Argument(..., help="a run id from `plait runs`"),
    journal: str = typer.Option(journal_option, "--journal", "-j", help=HELP),
    allow_rerun: bool = typer.Option(
        False, help="run calls in doubt again even if their tool is not idempotent"
    ),
    workflow: str = typer.Option(
        None, help="module:workflow, when the recorded entry cannot be imported"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    tools: str = typer.Option(
        None, "--tools",
        help="for a question (`plait ask`): its tools module, when the recorded one "
        "cannot be imported",
    ),
    mcp: list[str] = typer.Option(
        None, "--mcp", metavar="CMD|URL",
        help="for a question asked with --mcp: its MCP servers, as it was asked (the "
        "journal does not hold them)"),
    wait: float = typer.Option(
        0.0, "--wait", min=0.0, metavar="SECONDS",
        help="if another process is running this run id, wait this long for it to end",
    ),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="for a dataset job (`plait map`): run its failed "
        "rows again"),
) -> None:
    """Continue a run from its journal: finished calls are replayed, not re-run; a
    dataset job skips its finished rows (and, with --retry-failed, runs its failed
    rows again).

    The run keeps the options it was started with (--max-concurrency, --on-error;
    for a question its tools, model, mode, --max-replans, --timeout)."""
    j = open_existing(journal)
    try:
        record = j.get_run(run_id)
    finally:
        j.close()
    if record is None:
        fail(f"no run {run_id!r} in journal {j.location}")
    if record.entry.startswith("map:"):  # a dataset job: skip its finished rows
        wf = load_object(workflow) if workflow else None
        # A job started without --out printed its rows: so does its resume.
        recorded = ((record.arguments or {}).get("options") or {}).get("out")
        extra = {} if recorded else {"out": StdoutRows()}
        run_job(lambda: aresume_map(run_id, journal, workflow_fn=wf, retry_failed=retry_failed,
                                    wait=wait, progress=True, raise_on_error=False, **extra),
                as_json, run_id, journal, j.location)
        return
    if retry_failed:
        fail(f"run {run_id} is not a dataset job: --retry-failed is for `plait map` jobs")
    if record.entry.startswith(REASONING):  # a reasoning: reason again under its run id
        resume_reasoning(record, journal, as_json)
        return
    if record.entry.startswith("ask:"):  # a question: ask it again under its run id
        _resume_question(record, journal, tools, as_json=as_json, allow_rerun=allow_rerun,
                         wait=wait, mcp=list(mcp or ()))
        return
    wf = load_object(workflow) if workflow else None
    start_run(
        lambda listeners: aresume(run_id, journal, workflow_fn=wf, allow_rerun=allow_rerun,
                                  wait=wait, listeners=listeners),
        as_json, run_id, journal, j.location,
    )


def _resume_question(record: RunRecord, journal: str, tools: str | None, *, as_json: bool,
                     mcp: list[str], **options: Any) -> None:
    arguments = record.arguments or {}
    kept = dict(arguments.get("options") or {})
    source = kept.pop("tools_module", None)
    timeout = kept.pop("timeout", None)
    if tools is None and not (mcp and source is None):  # asked with --mcp alone: no module
        tools = _recorded_tools(source)
    answer_question(
        arguments["question"], tools, mcp=mcp, as_json=as_json,
        timeout=600.0 if timeout is None else timeout, model=arguments["model"],
        mode=record.entry.removeprefix("ask:"), journal=journal, run_id=record.run_id,
        asked_with=arguments.get("tools"), **kept, **options,
    )


def _recorded_tools(source: dict[str, Any] | None) -> str:
    """The tools module a question was asked with, as `--tools` would name it: by
    module name when that imports, else by its file (a `--tools file.py`)."""
    if not source:  # asked before tools were recorded, or with a list of tools
        return DEFAULT_TOOLS
    name, file = source.get("name") or "", source.get("file")
    if name and not name.startswith(FILE_MODULE_PREFIX) and name != "__main__":
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except (ImportError, ValueError):
            pass
    if file and Path(file).is_file():
        return str(file)
    fail(f"the question was asked with the tools of {file or name}, which cannot be "
         "imported now: pass --tools MODULE_OR_FILE with the same tools")
