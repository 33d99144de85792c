"""open_store: URL forms, defaults, connection settings and error messages."""

from __future__ import annotations

import pytest

from headwater.errors import StoreError
from headwater.store import normalise_url, open_store
from tests.store import factories as f


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://h/db", "postgresql+psycopg://h/db"),
        ("sqlite:////abs/store.db", "sqlite:////abs/store.db"),
    ],
)
def test_normalise_url(given, expected):
    assert normalise_url(given) == expected


@pytest.mark.parametrize(
    "url", ["mysql://user:hunter2@host/db", "/path/to/store.db", "postgresql+psycopg2://u:hunter2@h/db"]
)
def test_unknown_scheme_names_the_url_and_the_accepted_forms(url, tmp_path):
    with pytest.raises(StoreError) as info:
        open_store(url, root=tmp_path)
    message = str(info.value)
    assert "hunter2" not in message
    assert "sqlite:///" in message and "postgresql://" in message


def test_connection_failure_masks_the_password_and_says_what_to_check(tmp_path):
    with pytest.raises(StoreError) as info:
        open_store("postgresql://alice:hunter2@127.0.0.1:1/nowhere?connect_timeout=2", root=tmp_path)
    message = str(info.value)
    assert "hunter2" not in message and "alice:***@127.0.0.1:1" in message
    assert "Check that the server is running" in message


def test_default_is_sqlite_under_root(tmp_path, monkeypatch):
    monkeypatch.delenv("HEADWATER_STORE", raising=False)
    root = tmp_path / "deep" / ".headwater"
    with open_store(root=root) as store:
        assert store.dialect == "sqlite"
        assert store.url == f"sqlite:///{root.resolve() / 'store.db'}"
        store.create_run(f.run("run-0001"))
    assert (root / "store.db").is_file() and (root / "objects").is_dir()


def test_environment_variable_names_the_store(tmp_path, monkeypatch):
    target = tmp_path / "elsewhere" / "s.db"
    monkeypatch.setenv("HEADWATER_STORE", f"sqlite:///{target}")
    with open_store(root=tmp_path / "hw") as store:
        store.create_run(f.run("run-0001"))
    assert target.is_file()
    assert (tmp_path / "hw" / "objects").is_dir()


def test_sqlite_connections_are_wal_durable_and_fk_checked(tmp_path):
    with open_store(f"sqlite:///{tmp_path / 's.db'}", root=tmp_path) as store:
        with store.engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            assert raw.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            assert raw.execute("PRAGMA busy_timeout").fetchone()[0] == 30000


def test_in_memory_sqlite_store_works(tmp_path):
    with open_store("sqlite://", root=tmp_path) as store:
        store.create_run(f.run("run-0001"))
        store.add_checkpoints([f.checkpoint("run-0001")])
        assert len(store.list_checkpoints("run-0001")) == 1


def test_repr_masks_the_password(tmp_path):
    from headwater.store import Store

    store = Store("postgresql+psycopg://bob:hunter2@db.example/x", root=tmp_path)
    assert "hunter2" not in repr(store) and "bob:***@" in repr(store)
    store.close()
