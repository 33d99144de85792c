"""Fixtures shared by every test suite: stores on each backend.

* ``store_url`` is parametrised over ``"sqlite"`` (a file in the test's tmp
  dir) and ``"postgresql"``; the PostgreSQL variant runs when
  ``HEADWATER_TEST_POSTGRES`` holds a server URL (for example
  ``postgresql://postgres@127.0.0.1:5432/test``) and is skipped otherwise.
* ``store`` is a :class:`~headwater.store.Store` opened (and migrated) on
  ``store_url``, with its root directory in the test's tmp dir; any test
  that takes it runs once per backend.
* ``pg_url`` is a PostgreSQL URL isolated for one test.

Isolation on PostgreSQL: each test gets a schema of its own, named after the
process id and a random suffix, and its URL sets ``search_path`` to that
schema (``?options=-csearch_path=...``), so tests in one run, in concurrent
runs (pytest-xdist or separate invocations) and the schema migrations of each
never see one another. The schema is dropped with everything in it when the
test ends.
"""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from headwater.store import normalise_url, open_store

PG_ENV = "HEADWATER_TEST_POSTGRES"


@pytest.fixture
def pg_url():
    """A PostgreSQL URL whose ``search_path`` is a fresh schema, dropped afterwards."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"set {PG_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test) for PostgreSQL")
    url = make_url(normalise_url(base))
    schema = f"hw_test_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    # A lock timeout keeps a test that leaked an open transaction from
    # hanging the DROP SCHEMA forever; it fails loudly instead.
    admin = sa.create_engine(
        url, poolclass=NullPool, connect_args={"options": "-c lock_timeout=10000"}
    )
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    isolated = url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield isolated.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    """The URL of an empty store on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url, tmp_path):
    """An opened, migrated store on each backend; closed after the test."""
    opened = open_store(store_url, root=tmp_path / ".headwater")
    yield opened
    opened.close()


@pytest.fixture
def ws(tmp_path):
    """A workspace (store, artifacts, key) on SQLite in the test's tmp dir."""
    from headwater.runtime import open_workspace

    workspace = open_workspace(tmp_path / ".headwater")
    yield workspace
    workspace.close()


@pytest.fixture
def ws_any(tmp_path, store_url):
    """A workspace on each backend (SQLite, and PostgreSQL when configured)."""
    from headwater.runtime import open_workspace

    workspace = open_workspace(tmp_path / ".headwater", store_url)
    yield workspace
    workspace.close()


@pytest.fixture
def write_wf(tmp_path):
    """Write a workflow module into tmp_path and load it."""
    import textwrap

    from headwater.spec import load_workflow

    counter = {"n": 0}

    def make(source: str, name: str | None = None):
        counter["n"] += 1
        path = tmp_path / f"wf_{counter['n']}.py"
        path.write_text(textwrap.dedent(source))
        return load_workflow(path, name)

    return make
