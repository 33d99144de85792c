"""Store URLs and the SQLAlchemy engines behind them.

This is where the two dialects differ most: how a URL is spelled and how a
connection is set up. Everything above it (queries, transactions, the
contract) is shared.

SQLite. Each new connection gets, through a pool ``connect`` event: WAL
journaling (readers never block the writer), ``synchronous=FULL`` (a
committed transaction survives power loss), ``foreign_keys=ON``, a 30 s busy
timeout (writers in other processes queue instead of failing) and a page
cache large enough for a batch of hundreds of checkpoints. The ``sqlite3``
module's own transaction handling is switched off (``isolation_level=None``)
and a ``begin`` event emits the ``BEGIN`` instead: ``BEGIN IMMEDIATE`` for
connections marked as writers (see :data:`WRITE_OPTION`), which takes the
write lock up front so a read-then-write transaction cannot be refused
half-way, and a deferred ``BEGIN`` (a consistent WAL snapshot) for readers.
This is the recipe the SQLAlchemy SQLite documentation gives for correct
transactions with the ``sqlite3`` driver.

PostgreSQL. psycopg 3 (the ``postgres`` extra), ``pool_pre_ping`` so a
connection dropped by a server restart or a proxy is replaced rather than
failing the next statement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from headwater.errors import OptionalDependency, StoreError

ACCEPTED_URLS = (
    "sqlite:///relative/path/store.db, sqlite:////absolute/path/store.db, "
    "postgresql://user:password@host:5432/dbname (also postgres:// and postgresql+psycopg://)"
)

SQLITE_BUSY_TIMEOUT_S = 30.0

WRITE_OPTION = "headwater_write"
"""Execution option marking a connection whose transaction will write."""

# Per-connection SQLite settings (see the module docstring). The 64 MiB page
# cache keeps a large batch, whose random-hash keys dirty pages all over the
# indexes, from spilling pages to the WAL mid-transaction.
_SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout = 30000",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA cache_size = -65536",
)


def normalise_url(url: str) -> str:
    """Validate a store URL and pin PostgreSQL URLs to the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith(("sqlite://", "sqlite+pysqlite://")):
        return url
    raise StoreError(f"unsupported store URL {mask_url(url)!r}; use one of: {ACCEPTED_URLS}")


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url.split("@", 1)[-1] if "@" in url else url


def create_engine(url: str) -> sa.Engine:
    """The engine for a URL already passed through :func:`normalise_url`."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    try:
        return sa.create_engine(parsed, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise OptionalDependency("a PostgreSQL store", "postgres") from exc


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    database = url.database or ""
    memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
    if not memory:
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        # An in-memory database lives and dies with its one connection.
        poolclass=StaticPool if memory else None,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
