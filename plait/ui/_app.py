"""The web app: three pages and the JSON API they read (starlette).

    GET /                         the runs list         GET /api/runs?limit=N
    GET /runs/{id}                a run or a job        GET /api/runs/{id}
                                                        GET /api/runs/{id}/rows?status=&after=&limit=
                                                        GET /api/runs/{id}/timeline

A run's page draws its timeline with plait.timeline's own script
(`plaitTimeline.render`, served from /static/timeline/) from
`plait.timeline.to_json`, again at each poll while the run goes on.

Read-only: the journal is opened with `read_only=True` (the database refuses a
write) and the app has no route that writes, takes a lease or runs anything.
Journal reads are blocking calls: starlette runs each endpoint in its thread
pool. Every answer's strings pass the journal's DSN redaction.
"""

from __future__ import annotations

import threading
import time
from importlib import resources
from typing import Any

from plait.cli._runview import clean
from plait.cost import Prices
from plait.journal import Journal, JournalError, RunNotFoundError
from plait.ui import _data

STATIC = resources.files("plait.ui") / "static"
TIMELINE_STATIC = resources.files("plait.timeline") / "static"
PAGES = {"index": "index.html", "run": "run.html", "job": "job.html"}


def require_ui_extra() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        from plait.llm._protocol import MissingExtraError

        raise MissingExtraError(f"plait ui ({exc.name} is not installed)", "ui") from None


# Served to loopback only, the app answers only requests addressed to loopback:
# a web page elsewhere cannot read the journal through DNS rebinding.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
# What a page may load and run: this server only (the pages' own inline calls).
CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' "
       "'unsafe-inline'; connect-src 'self'; img-src 'self' data:")


def create_app(journal: Journal, prices: Prices | None = None,
               allowed_hosts: tuple[str, ...] | None = LOOPBACK_HOSTS) -> Any:
    """The app over an open journal (open it with `read_only=True`). The caller
    closes the journal after the app is done. `allowed_hosts`: the Host headers it
    answers (None: any, for a server listening beyond this machine)."""
    require_ui_extra()
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    table = prices if prices is not None else Prices()
    # Ended runs' descriptions, so that a list polled every few seconds loads only
    # the runs still running. Guarded: endpoints run in a thread pool.
    described: dict[tuple[Any, ...], dict[str, Any]] = {}
    lock = threading.Lock()

    def page(name: str) -> Response:
        html = (STATIC / PAGES[name]).read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Cache-Control": "no-store",
                                           "Content-Security-Policy": CSP,
                                           "X-Content-Type-Options": "nosniff"})

    def answer(read: Any) -> Response:
        try:
            return JSONResponse(read(), headers={"Cache-Control": "no-store"})
        except RunNotFoundError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except _BadParameter as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except JournalError as exc:  # its messages never hold a password
            return JSONResponse({"error": str(exc)}, status_code=503)

    def index(request: Request) -> Response:
        return page("index")

    def run_page(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            record = journal.get_run(run_id)
        except JournalError:
            record = None  # the page shows the API's error
        return page("job" if record is not None and _data.is_job(record.entry) else "run")

    def api_runs(request: Request) -> Response:
        def read() -> Any:
            limit = _int(request, "limit", 50, 1, 1000)
            with lock:
                return _data.runs(journal, table, limit, described)
        return answer(read)

    def api_run(request: Request) -> Response:
        return answer(lambda: _data.run(journal, request.path_params["run_id"], table))

    def api_timeline(request: Request) -> Response:
        from plait.timeline import build, to_json

        # `now`: a live run's calls still running are drawn up to this moment.
        return answer(lambda: clean(to_json(build(journal, request.path_params["run_id"],
                                                  now=time.time(), prices=table))))

    def api_rows(request: Request) -> Response:
        def read() -> Any:
            status = request.query_params.get("status", "all")
            if status not in _data.ROW_FILTERS:
                raise _BadParameter(f"status must be one of {', '.join(_data.ROW_FILTERS)}")
            after = _int(request, "after", -1, -1, None)
            limit = _int(request, "limit", 100, 1, _data.MAX_ROWS)
            return _data.rows(journal, request.path_params["run_id"], status, after, limit)
        return answer(read)

    routes = [
        Route("/", index),
        Route("/runs/{run_id:path}", run_page),
        Route("/api/runs", api_runs),
        Route("/api/runs/{run_id:path}/rows", api_rows),
        Route("/api/runs/{run_id:path}/timeline", api_timeline),
        Route("/api/runs/{run_id:path}", api_run),
        Mount("/static/timeline", StaticFiles(directory=str(TIMELINE_STATIC)),
              name="timeline"),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    middleware = ([] if allowed_hosts is None else
                  [Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))])
    return Starlette(routes=routes, middleware=middleware)


class _BadParameter(ValueError):
    pass


def _int(request: Any, name: str, default: int, low: int, high: int | None) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise _BadParameter(f"{name} must be a whole number, got {text!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise _BadParameter(f"{name} must be within {bound}, got {value}")
    return value
