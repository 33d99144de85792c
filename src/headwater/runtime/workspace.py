"""The ``.headwater/`` directory: store, artifact store and signing key.

``headwater init`` creates it; every other command opens it and creates it on
first use. The store defaults to SQLite inside it; ``--store URL`` or the
``HEADWATER_STORE`` variable points at PostgreSQL instead, while artifacts and
the key stay in the directory, as does the cache of which distribution
installs which module (``env-modules.json``, see
:func:`headwater.checkpoint.env.module_distributions`), which saves each new
process from reading every installed distribution again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from headwater.checkpoint.env import set_cache_file
from headwater.checkpoint.signing import SigningKey, load_or_create
from headwater.store import Store, open_store

DEFAULT_ROOT = ".headwater"
MODULE_CACHE = "env-modules.json"


@dataclass
class Workspace:
    root: Path
    store: Store
    key: SigningKey

    @property
    def key_path(self) -> Path:
        return self.root / "signing.key"

    def close(self) -> None:
        self.store.close()


def open_workspace(root: str | os.PathLike | None = None, store_url: str | None = None) -> Workspace:
    """Open (creating when missing) the workspace at ``root``."""
    root_path = Path(root or os.environ.get("HEADWATER_HOME", DEFAULT_ROOT)).absolute()
    root_path.mkdir(parents=True, exist_ok=True)
    store = open_store(store_url, root=root_path)
    key = load_or_create(root_path / "signing.key")
    set_cache_file(root_path / MODULE_CACHE)
    return Workspace(root=root_path, store=store, key=key)
