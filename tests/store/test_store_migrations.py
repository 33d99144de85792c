"""Migrations: head matches the live metadata, opening is idempotent and cheap,
and a database from the future is refused clearly."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from headwater.errors import StoreError
from headwater.store import migrate, open_store
from headwater.store.schema import metadata
from tests.store import factories as f


def test_head_constant_matches_the_revision_scripts():
    assert migrate.script_head() == migrate.HEAD_REVISION


def test_migrated_database_matches_the_metadata(store):
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        assert migrate.current_revision(conn) == migrate.HEAD_REVISION


def test_opening_again_is_idempotent_and_skips_alembic(store_url, tmp_path, monkeypatch):
    with open_store(store_url, root=tmp_path / "hw") as first:
        first.create_run(f.run("run-0001"))

    def no_upgrade(conn):
        raise AssertionError("an up-to-date store must not run the migrator")

    monkeypatch.setattr(migrate, "upgrade", no_upgrade)
    with open_store(store_url, root=tmp_path / "hw") as second:
        assert second.get_run("run-0001").id == "run-0001"


def test_migrate_on_an_up_to_date_store_changes_nothing(store):
    store.create_run(f.run("run-0001"))
    store.migrate()
    store.migrate()
    assert store.get_run("run-0001").id == "run-0001"


def test_downgrade_to_base_and_upgrade_again(store):
    with store.transaction() as conn:
        command.downgrade(migrate.alembic_config(conn), "base")
    with store.engine.connect() as conn:
        assert migrate.current_revision(conn) is None
        assert not sa.inspect(conn).has_table("checkpoint")
    store.migrate()
    store.create_run(f.run("run-0001"))
    assert store.get_run("run-0001").id == "run-0001"


def test_a_store_from_a_newer_headwater_is_refused(store_url, tmp_path):
    with open_store(store_url, root=tmp_path / "hw") as opened:
        with opened.transaction() as conn:
            conn.execute(sa.update(migrate._version).values(version_num="9999"))
    with pytest.raises(StoreError, match="9999"):
        open_store(store_url, root=tmp_path / "hw")
