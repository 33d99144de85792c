"""Alembic environment for the headwater store.

headwater runs migrations in-process (``Store.migrate``): it builds an Alembic
``Config`` in code and hands over an open connection in
``config.attributes["connection"]``, already inside the transaction (and, on
PostgreSQL, holding the advisory lock) that serialises concurrent migrators.
When no connection is given, as when a developer generates a revision with
``alembic_config(url=...)`` (see docs/store.md) or passes ``-x url=...``,
this module opens one itself, with the store's own engine settings.

SQLite cannot alter most columns in place, so migrations there are rendered
in Alembic's "batch" mode (copy-and-move tables).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from headwater.store.engine import create_engine, normalise_url
from headwater.store.schema import metadata

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    return context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
    else:
        engine = create_engine(normalise_url(_url()))
        try:
            with engine.begin() as connection:
                _run(connection)
        finally:
            engine.dispose()
