"""PostgreSQL journals of one DSN share one bounded connection pool, and a lost
connection is a transient error that the journal recovers from.

The real server on 127.0.0.1; backends are told apart by `application_name`
(unique per test) in pg_stat_activity and terminated with pg_terminate_backend.
A server that goes away and comes back is a real TCP relay in front of it that
the test stops and starts again on the same port.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from plait.journal import (
    Intent,
    JournalError,
    JournalTransientError,
    Result,
    RunRecord,
    encode_value,
    open_journal,
)
from plait.journal._pgpool import open_pools
from tests._support import free_port, with_schema


@pytest.fixture
def app() -> str:
    return f"plait_pool_{uuid.uuid4().hex[:10]}"


def _spec(dsn: str, schema: str, app: str, **params: object) -> str:
    spec = with_schema(dsn, schema) + f"&application_name={app}"
    return spec + "".join(f"&{k}={v}" for k, v in params.items())


def _backends(dsn: str, app: str) -> list[int]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)
        ).fetchall()
    return [r[0] for r in rows]


def _terminate(dsn: str, app: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as admin:
        return admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (app,),
        ).fetchone()[0]


def _until(check: object, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _call(run_id: str, n: int) -> tuple[Intent, Result]:
    key = f"k{n}"
    return (
        Intent(run_id, key, "tool", encode_value({"n": n}, "test")),
        Result(run_id, key, True, encode_value(n * 10, "test")),
    )


def test_journals_of_one_dsn_share_one_bounded_pool(
    postgres_dsn: str, pg_schema: str, app: str
) -> None:
    spec = _spec(postgres_dsn, pg_schema, app, pool_max=3)
    users, rounds = 40, 5
    errors: list[BaseException] = []
    most = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            most[0] = max(most[0], len(_backends(postgres_dsn, app)))
            time.sleep(0.02)

    def user(i: int) -> None:
        try:
            with open_journal(spec) as j:
                run_id = f"r{i}"
                j.create_run(RunRecord(run_id, "e"))
                for n in range(rounds):
                    intent, result = _call(run_id, n)
                    j.write([intent])
                    j.write((), [result])
                    assert j.get_run(run_id) is not None
                j.update_run(run_id, status="done")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=user, args=(i,)) for i in range(users)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        stop.set()
        watcher.join(10)
    assert not errors, errors[:3]
    assert 1 <= most[0] <= 3, most[0]
    with open_journal(spec) as j:
        runs = j.list_runs(limit=100)
        assert len(runs) == users and {r.status for r in runs} == {"done"}
        assert len(j.load("r7").results) == rounds
    # The last journal closed its pool, and the pool its connections.
    assert not [p for p in open_pools() if p.key.schema == pg_schema]
    _until(lambda: not _backends(postgres_dsn, app))


def test_the_pool_closes_with_the_last_journal(
    postgres_dsn: str, pg_schema: str, app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plait.journal import PostgresJournal

    migrated: list[str] = []
    connect = PostgresJournal._connect

    def counted(self: PostgresJournal) -> object:
        migrated.append(self.schema)
        return connect(self)

    monkeypatch.setattr(PostgresJournal, "_connect", counted)
    spec = _spec(postgres_dsn, pg_schema, app)
    first, second = open_journal(spec), open_journal(spec)
    assert migrated == [pg_schema]  # once per pool, not per journal
    try:
        pools = [p for p in open_pools() if p.key.schema == pg_schema]
        assert len(pools) == 1 and pools[0].users == 2
        first.create_run(RunRecord("r", "e"))
        first.close()
        first.close()  # twice is once
        assert pools[0].users == 1
        assert second.get_run("r") is not None  # the pool still serves the other
        with pytest.raises(JournalError, match="is closed"):
            first.get_run("r")
    finally:
        second.close()
    assert not [p for p in open_pools() if p.key.schema == pg_schema]
    _until(lambda: not _backends(postgres_dsn, app))


def test_a_terminated_backend_fails_the_next_write_then_the_journal_works(
    postgres_dsn: str, pg_schema: str, app: str
) -> None:
    # A password in the URL (the server trusts, so it is not checked) must not
    # reach the message.
    dsn = postgres_dsn.replace("postgres@", "postgres:s3cret-pw@", 1)
    assert "s3cret-pw" in dsn
    with open_journal(_spec(dsn, pg_schema, app)) as j:
        j.create_run(RunRecord("r", "e"))
        intent, result = _call("r", 1)
        j.write([intent])
        assert _terminate(postgres_dsn, app) >= 1
        with pytest.raises(JournalTransientError) as info:
            j.write((), [result])
        message = str(info.value)
        assert "connection was lost" in message and "127.0.0.1" in message
        assert "s3cret-pw" not in message
        j.write((), [result])  # on a new connection: the failed write did not commit
        state = j.load("r")
        assert [r.value for r in state.results.values()] == [10]


def test_reads_survive_terminated_backends(postgres_dsn: str, pg_schema: str, app: str) -> None:
    with open_journal(_spec(postgres_dsn, pg_schema, app)) as j:
        j.create_run(RunRecord("r", "e"))
        intent, result = _call("r", 1)
        j.write([intent], [result])
        for read in (
            lambda: j.get_run("r"),
            lambda: j.list_runs(),
            lambda: j.load("r"),
        ):
            assert _terminate(postgres_dsn, app) >= 1
            assert read()  # tried again at once, on a fresh connection


def test_waiting_for_a_busy_pool_ends_in_a_clear_error(
    postgres_dsn: str, pg_schema: str, app: str
) -> None:
    with open_journal(_spec(postgres_dsn, pg_schema, app, pool_max=1, pool_timeout=0.5)) as j:
        pool = j._pool  # type: ignore[attr-defined]
        held = pool.get("hold the only connection")
        try:
            t0 = time.monotonic()
            with pytest.raises(JournalTransientError, match=r"pool_max") as info:
                j.get_run("r")
            assert time.monotonic() - t0 < 3
            assert "within 0.5 s" in str(info.value)
        finally:
            pool.put(held)
        assert j.get_run("r") is None


def test_bad_pool_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(JournalError, match=r"pool_max"):
        open_journal("postgresql://u@127.0.0.1:1/db?pool_max=0")
    with pytest.raises(JournalError, match=r"\?pool_timeout=.*not a number"):
        open_journal("postgresql://u@127.0.0.1:1/db?pool_timeout=soon")
    monkeypatch.setenv("PLAIT_PG_POOL_MAX", "many")
    with pytest.raises(JournalError, match=r"\$PLAIT_PG_POOL_MAX"):
        open_journal("postgresql://u@127.0.0.1:1/db")


# --- a server that goes away and comes back -------------------------------------------


class Relay:
    """A TCP relay on 127.0.0.1:`port` to the server: stopping it closes every
    relayed connection and refuses new ones, as a server that went down."""

    def __init__(self, port: int, target: tuple[str, int]):
        self.port = port
        self.target = target
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        t = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (Linux)
            except OSError:
                pass
            listener.close()
        with self._lock:
            socks, self._sockets = self._sockets, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(5)
        self._threads = [t for t in self._threads if t.is_alive()]

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                t = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                t.start()
                self._threads.append(t)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def relay(postgres_dsn: str) -> Iterator[Relay]:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(postgres_dsn)
    r = Relay(free_port(), (str(params.get("host", "127.0.0.1")), int(params.get("port", 5432))))
    r.start()
    yield r
    r.stop()


def test_a_server_that_goes_down_and_comes_back(
    postgres_dsn: str, pg_schema: str, app: str, relay: Relay
) -> None:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(postgres_dsn)
    dsn = (
        f"postgresql://{params.get('user', 'postgres')}@127.0.0.1:{relay.port}/"
        f"{params.get('dbname', 'postgres')}"
    )
    with open_journal(_spec(dsn, pg_schema, app)) as j:
        j.create_run(RunRecord("r", "e"))
        relay.stop()
        # The connection it had is gone, and no new one can be made: each call
        # ends soon (well within connect_timeout, 5 s), as a transient error
        # naming the server.
        for n in range(2):
            intent, _ = _call("r", n)
            t0 = time.monotonic()
            with pytest.raises(JournalTransientError) as info:
                j.write([intent])
            assert time.monotonic() - t0 < 5, time.monotonic() - t0
            assert f"127.0.0.1:{relay.port}" in str(info.value)
        assert "cannot connect" in str(info.value)
        relay.start()
        # Back: the pool reconnects (its retries back off from 1 s) and the journal
        # works again.
        deadline = time.monotonic() + 15
        while True:
            try:
                j.write([_call("r", 5)[0]])
                break
            except JournalTransientError:
                assert time.monotonic() < deadline
        assert list(j.load("r").intents) == ["k5"]
