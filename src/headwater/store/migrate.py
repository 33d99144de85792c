"""Bringing a database to the schema in :mod:`headwater.store.schema`.

Migrations are Alembic revisions under ``migrations/versions``, run in-process:
:func:`alembic_config` builds the Alembic ``Config`` in code (no
``alembic.ini`` on disk), pointing ``script_location`` at the package's
``migrations`` directory and handing Alembic an open connection.

Opening a store must be fast, and importing Alembic alone takes a large part
of a second, so the check "is this database already at head?" is done here
without Alembic: :func:`current_revision` reads the ``alembic_version`` table
with Core and compares it with :data:`HEAD_REVISION`. Alembic is imported only
when an upgrade is actually needed. A test keeps :data:`HEAD_REVISION` equal
to the head of the revision scripts.

:func:`upgrade` runs in the caller's write transaction. On SQLite that
transaction began with ``BEGIN IMMEDIATE`` and on PostgreSQL it takes a
transaction-scoped advisory lock first, so processes opening a fresh store at
the same moment migrate it once: the others wait, re-read the revision and
find it at head. SQLite and PostgreSQL both have transactional DDL, so a
failed migration leaves the database at its previous revision.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
"""The Alembic script directory shipped inside the package."""

HEAD_REVISION = "0005"
"""The newest revision under ``migrations/versions``."""

VERSION_TABLE = "alembic_version"

# The key of the PostgreSQL advisory lock taken while migrating: the first
# 8 bytes of sha256(b"headwater.migrate") with the sign bit cleared.
PG_MIGRATION_LOCK = 0x5EEF3D5F6C517BA9

_version = sa.Table(
    VERSION_TABLE, sa.MetaData(), sa.Column("version_num", sa.String(32), nullable=False)
)


def alembic_config(connection: sa.Connection | None = None, url: str | None = None) -> Config:
    """An Alembic ``Config`` for the store's migrations, built in code.

    ``connection``, when given, is used by ``migrations/env.py`` as is
    (inside its current transaction); otherwise ``url`` is opened.
    """
    from alembic.config import Config

    config = Config()
    # ConfigParser interpolates '%'; escape it in paths and URLs.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def script_head() -> str:
    """The head revision according to the revision scripts (imports Alembic)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return str(head)


def current_revision(conn: sa.Connection) -> str | None:
    """The revision the database is at, or None for a database never migrated."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.scalar(sa.select(_version.c.version_num))


def upgrade(conn: sa.Connection) -> bool:
    """Upgrade the database behind ``conn`` to head, inside ``conn``'s transaction.

    Returns whether anything was run. The caller owns the transaction and
    commits it; see the module docstring for how concurrent callers are
    serialised.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_MIGRATION_LOCK)))
    if current_revision(conn) == HEAD_REVISION:
        return False
    from alembic import command

    command.upgrade(alembic_config(conn), "head")
    return True
