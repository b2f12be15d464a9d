"""`plait ui`: a local, read-only web view of a journal (SQLite or PostgreSQL).

Pages: the runs list (status, duration, tokens, cost), a run with its calls,
a dataset job's rows by status, updated live while a run goes on; a JSON API
under /api/ that they read (the data of `plait runs --json` and `plait show
--json`). Needs ``pip install 'plait[ui]'`` (starlette, uvicorn). See docs/ui.md.

    with plait.ui.UIServer("runs.db") as ui:     # a free port on 127.0.0.1
        print(ui.url)
"""

from plait.ui._app import create_app
from plait.ui._server import DEFAULT_PORT, UIServer, serve

__all__ = ["DEFAULT_PORT", "UIServer", "create_app", "serve"]
