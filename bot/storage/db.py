"""The database: SQLite (the default) or PostgreSQL (asyncpg), one transaction per unit of work.

`Database.run(work)` runs `work(session)` — plain synchronous SQLAlchemy over a `Session` — as one transaction;
`run_core(work)` runs `work(connection)`, for work of Core statements alone (what every answered message does).
On SQLite the whole unit runs in the database's own thread, so it costs the event loop one hop. Through aiosqlite
every statement, fetch, commit and rollback is a hop of its own; with SQLite's single writer those hops line up
behind each other, and under a burst of chats that queue, not SQL, was the bot's bottleneck (bench/bench_bot.py).
On PostgreSQL the unit runs through the async engine (`AsyncSession.run_sync`), whose pool lets units run side by
side. A unit of work that has started finishes even when its caller is cancelled; units must be short.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from bot.storage.models import Base

T = TypeVar("T")
_BUSY_TIMEOUT_MS = 30_000


class Database:
    """Owns the engine (SQLite: a synchronous one in its own thread; PostgreSQL: asyncpg); `run()` does a unit of
    work."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._async_engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._engine: Engine | None = None  # SQLite: the synchronous engine its thread uses
        self._thread: _DaemonThread | None = None
        if not self.is_sqlite:  # engines connect on first use
            self._async_engine = create_async_engine(self.url, pool_pre_ping=True)
            self._sessions = async_sessionmaker(self._async_engine, expire_on_commit=False)
        else:
            memory = not self.url.database or self.url.database == ":memory:"
            if not memory:
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
            # one connection in one thread: SQLite has one writer anyway, and writers that wait on each other
            # through busy_timeout sleep in steps of up to 100 ms (measured: 12x slower under a burst)
            sync_engine = create_engine(self.url.set(drivername="sqlite"), poolclass=StaticPool,
                                        connect_args={"timeout": _BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
            event.listen(sync_engine, "connect", _sqlite_pragmas)
            self._engine = sync_engine
            self._thread = _DaemonThread("sqlite")
        self._here: Session | None = None  # SQLite: the thread's session, on a connection it keeps

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run `work(session)` as one transaction: committed when it returns, rolled back when it raises."""
        if self._engine is not None and self._thread is not None:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self._run_here, work)
        assert self._sessions is not None
        async with self._sessions() as s, s.begin():
            return await s.run_sync(work)

    async def run_core(self, work: Callable[[Connection], T]) -> T:
        """`run` for work of Core statements alone (no ORM objects): one transaction on a connection, without a
        session's bookkeeping, which costs more than the SQL of a small write (0.35 ms against 0.22 for an INSERT
        and a SELECT on SQLite: the inbox, the turn's reads and writes and the delivery journal run per message)."""
        if self._engine is not None and self._thread is not None:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self._run_core_here, work)
        assert self._async_engine is not None
        async with self._async_engine.begin() as conn:
            return await conn.run_sync(work)

    def _session_here(self) -> Session:
        s = self._here
        if s is None:
            assert self._engine is not None
            self._here = s = Session(bind=self._engine.connect(), expire_on_commit=False)
        return s

    def _run_core_here(self, work: Callable[[Connection], T]) -> T:
        conn = self._session_here().bind  # the session's connection: between units it has no transaction open
        assert isinstance(conn, Connection)
        try:
            with conn.begin():
                return work(conn)
        except BaseException:
            self._drop_here()  # as in _run_here
            raise

    def _run_here(self, work: Callable[[Session], T]) -> T:
        # One session on one connection for the thread's life, each unit a transaction of its own that starts with
        # an empty identity map (what a new session gives): a session and a connection per unit were a third of
        # the thread's CPU per answered message (bench/bench_bot.py, issue 17). After a failed unit (a broken
        # connection among them) the next one starts afresh.
        s = self._session_here()
        try:
            with s.begin():
                return work(s)
        except BaseException:
            # whatever failed (a COMMIT that raised leaves the driver's transaction open, and the next unit would
            # commit it), the next unit starts on a fresh connection: returning this one to the pool rolls it back
            self._drop_here()
            raise
        finally:
            s.expunge_all()

    def _drop_here(self) -> None:
        s, self._here = self._here, None
        if s is not None:
            bind = s.bind
            with contextlib.suppress(Exception):
                s.close()
            if isinstance(bind, Connection):
                with contextlib.suppress(Exception):
                    bind.close()

    def _close_here(self, engine: Engine) -> None:
        self._drop_here()
        engine.dispose()

    async def create_all(self) -> None:
        def create(s: Session) -> None:
            # replicas starting together would race to create the same tables, columns and indexes between looking
            # and creating ("table settings already exists"): one takes the lock and creates them, the others wait
            # and find them there
            if self.is_sqlite:
                # the write lock before the first look (waiting for it under busy_timeout); without BEGIN the
                # driver runs each DDL statement on its own, outside any transaction
                s.connection().exec_driver_sql("BEGIN IMMEDIATE")
            else:
                s.execute(text("SELECT pg_advisory_xact_lock(2017253411)"))  # a unique violation in the catalogue
            Base.metadata.create_all(s.connection())
            _add_new_columns(s.connection())
            _add_new_indexes(s.connection())

        await self.run(create)

    async def dispose(self) -> None:
        if self._async_engine is not None:
            await self._async_engine.dispose()
        if self._thread is not None and self._engine is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._close_here, self._engine)
            self._thread.shutdown(wait=False)


def _add_new_columns(connection: Connection) -> None:
    """Add the nullable columns a newer release gave an existing table (there is no migration tool)."""
    inspector = inspect(connection)
    for table in Base.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present and column.nullable:
                kind = column.type.compile(connection.dialect)
                connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))


def _add_new_indexes(connection: Connection) -> None:
    """Create the indexes a newer release gave an existing table (create_all makes them only with the table)."""
    inspector = inspect(connection)
    for table in Base.metadata.sorted_tables:
        present = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in present:
                index.create(connection)


class _DaemonThread(Executor):
    """One daemon thread running calls in order (SQLite's).

    A daemon, unlike ThreadPoolExecutor's threads: a call stuck on the database (its lock held by another program,
    a hung disk) cannot keep the process from exiting at shutdown; SQLite's journal undoes a half-done transaction.
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._closed = False
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if self._closed:
            raise RuntimeError("the database is closed")
        future: Future[T] = Future()
        self._calls.put((future, functools.partial(fn, *args, **kwargs)))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        self._calls.put(None)

    def _loop(self) -> None:
        while (call := self._calls.get()) is not None:
            future, fn = call
            if not future.set_running_or_notify_cancel():  # cancelled while it waited
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    # WAL lets readers run beside the one writer; busy_timeout makes writers wait instead of failing.
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """Put the database file in WAL mode (once per file; a no-op on a file in WAL mode already)."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            # replicas opening a new file together: each reads it, then needs it alone to switch it, and SQLite
            # refuses one of them at once ("database is locked", without waiting: waiting could deadlock). Once the
            # other has switched the file, the statement needs no such lock: try again.
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
