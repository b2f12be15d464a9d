"""Serving the app: in the foreground (`plait ui`) or in a thread (`UIServer`)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Self

from plait.cost import Prices, load_prices
from plait.journal import Journal, open_journal
from plait.ui._app import LOOPBACK_HOSTS, create_app, require_ui_extra

DEFAULT_PORT = 8766


def _config(app: Any, host: str, port: int, log_level: str) -> Any:
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          timeout_graceful_shutdown=1, lifespan="off")


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port taken (or a host not this
    machine's) is an OSError for the caller, not a log line and an exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


def _hosts(host: str) -> tuple[str, ...] | None:
    """The Host headers to answer: loopback names when listening on loopback."""
    return LOOPBACK_HOSTS if host in LOOPBACK_HOSTS else None


def open_read_only(spec: str) -> Journal:
    """The journal `spec` names, opened never to write (see `open_journal`)."""
    return open_journal(spec, read_only=True)


def serve(journal: str, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          prices: Prices | None = None, log_level: str = "warning",
          on_listen: Any = None) -> None:
    """Serve the web view of `journal` until interrupted. A journal that cannot
    be opened raises `JournalError`, an address it cannot listen on `OSError`,
    both before anything is served. `on_listen(port)` is called once listening."""
    require_ui_extra()
    import uvicorn

    j = open_read_only(journal)
    try:
        app = create_app(j, prices if prices is not None else load_prices(), _hosts(host))
        sock = _bind(host, port)
        if on_listen is not None:
            on_listen(sock.getsockname()[1])
        uvicorn.Server(_config(app, host, port, log_level)).run(sockets=[sock])
    finally:
        j.close()


class UIServer:
    """The web view in a background thread, for tests and scripts.

    >>> with UIServer("runs.db") as ui:
    ...     httpx.get(ui.url + "/api/runs").json()

    `port=0` takes a free port (`.port` says which once started).
    """

    def __init__(self, journal: str, *, host: str = "127.0.0.1", port: int = 0,
                 prices: Prices | None = None) -> None:
        require_ui_extra()
        import uvicorn

        self._journal = open_read_only(journal)
        try:
            self._sock = _bind(host, port)
        except BaseException:
            self._journal.close()
            raise
        self.host = host
        self.port = self._sock.getsockname()[1]
        app = create_app(self._journal, prices if prices is not None else load_prices(),
                         _hosts(host))
        self._server = uvicorn.Server(_config(app, host, self.port, "warning"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="plait-ui", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> Self:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the plait ui server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()
        self._journal.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
