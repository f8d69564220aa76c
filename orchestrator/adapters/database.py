"""The database: one engine per process and the sessions made from it (SQLite by default,
PostgreSQL through DATABASE_URL)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, create_engine

from orchestrator.core import defaults

log = logging.getLogger(__name__)
T = TypeVar("T")


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets the API read while a worker writes; busy_timeout makes writers queue, not fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={defaults.SQLITE_BUSY_SECONDS * 1000}")
    # FULL: a commit is on disk before it returns, so an upload answered 202 survives a power
    # loss too (NORMAL would only survive a crash of the process).
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url == "sqlite://":  # in memory: one connection shared by every thread (tests)
        from sqlalchemy.pool import StaticPool

        return create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": defaults.SQLITE_BUSY_SECONDS}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def patiently(
        self, work: Callable[[Session], T], patience: float = defaults.DATABASE_PATIENCE_SECONDS
    ) -> T:
        """``work(session)`` in a transaction of its own, tried again from the start while the
        database is locked or unreachable (OperationalError: SQLite's "database is locked", a
        PostgreSQL restarting), for up to ``patience`` seconds."""
        deadline, delay = time.monotonic() + patience, 0.5
        while True:
            try:
                with self.session() as session:
                    return work(session)
            except OperationalError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("the database is not answering (%s): trying again in %.1f s", exc.orig, delay)
                time.sleep(delay)
                delay = min(delay * 2, 4.0)

    def after_fork(self) -> None:
        """In a forked child (an RQ work horse): never use the parent's connections."""
        self.engine.dispose(close=False)

    def close(self) -> None:
        self.engine.dispose()
