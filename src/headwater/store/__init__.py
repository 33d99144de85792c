"""Persistence for headwater: the relational store and the artifact store.

:func:`open_store` returns a :class:`Store`, one contract over SQLite (the
embedded default, ``.headwater/store.db``) and PostgreSQL (the multi-host
store), written once in SQLAlchemy Core over the schema in
:mod:`headwater.store.schema` and migrated by Alembic. Blobs live beside it in
a content-addressed :class:`ArtifactStore` (``store.artifacts``). The records
exchanged with the store are the plain dataclasses of
:mod:`headwater.store.records`. ``docs/store.md`` documents the contract.
"""

from headwater.store.artifacts import ArtifactStore
from headwater.store.records import (
    CHECKPOINT_STATUSES,
    RUN_STATUSES,
    USE_DIRECTIONS,
    ArtifactRecord,
    AssetUse,
    CheckpointRecord,
    ClaimRecord,
    EventRecord,
    RunRecord,
    TaskRecord,
)
from headwater.store.engine import mask_url, normalise_url
from headwater.store.store import Store, open_store

__all__ = [
    "CHECKPOINT_STATUSES",
    "RUN_STATUSES",
    "USE_DIRECTIONS",
    "ArtifactRecord",
    "ArtifactStore",
    "AssetUse",
    "CheckpointRecord",
    "ClaimRecord",
    "EventRecord",
    "RunRecord",
    "Store",
    "TaskRecord",
    "mask_url",
    "normalise_url",
    "open_store",
]
