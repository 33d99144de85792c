"""The records the store reads and writes: plain dataclasses, no ORM.

Each record is one row (or one row plus its child rows) of the schema in
:mod:`headwater.store.schema`. Fields that hold JSON are plain ``dict`` /
``list`` values; the store serialises them. Records carry no behaviour beyond
small conveniences such as :attr:`CheckpointRecord.doc`, so the pure cores
(scheduling, oversight, forensics) can build and inspect them without a
database.

The allowed values of the ``status`` / ``state`` / ``direction`` fields are
listed here as frozensets so the store and its callers validate against one
definition.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

RUN_STATUSES = frozenset({"running", "succeeded", "failed", "interrupted"})
"""Values of :attr:`RunRecord.status`."""

CHECKPOINT_STATUSES = frozenset(
    {"committed", "provisional", "verified", "squashed", "refuted", "failed"}
)
"""Values of :attr:`CheckpointRecord.status`."""

USE_DIRECTIONS = frozenset({"consumed", "produced"})
"""Values of :attr:`AssetUse.direction`."""


@dataclass
class RunRecord:
    """One execution of a workflow spec.

    ``spec_hash`` names the spec version (see ``Store.put_spec``); ``source`` is
    the workflow file the run was started from, when there was one;
    ``why`` is the free-text reason the user or an automated policy gave for
    starting it. ``created_at`` / ``finished_at`` are Unix timestamps.
    """

    id: str
    workflow: str
    spec_hash: str
    campaign: str
    params: dict
    seed: int
    status: str
    why: str | None
    source: str | None
    created_at: float
    finished_at: float | None = None
    options: dict = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


@dataclass
class ArtifactRecord:
    """A content-addressed blob, and the name it has within one checkpoint.

    ``sha256``, ``size``, ``media_type`` and ``uri`` describe the blob and are
    stored once per distinct hash; ``name`` is per use (an input is named by
    its ``"task/name"`` reference, an output by its name in the task).
    """

    sha256: str
    size: int
    media_type: str
    uri: str
    name: str = ""


@dataclass
class ClaimRecord:
    """A value a checkpoint publishes under a shared key, e.g. a fitted constant."""

    key: str
    value: Any
    uncertainty: float | None = None
    units: str | None = None


@dataclass
class AssetUse:
    """A checkpoint's use of one version of a shared asset (library, dataset, ...)."""

    kind: str
    name: str
    version: str
    direction: str


@dataclass
class CheckpointRecord:
    """One checkpoint: the signed bundle plus the columns indexed out of it.

    ``id`` is the sha256 hex of ``bundle``, which is the canonical JSON bytes of
    the bundle, stored and returned byte for byte (so signatures over it stay
    verifiable). ``parents`` are the checkpoint ids this one was built from;
    ``prev`` is the previous checkpoint of the same run (the hash chain).
    ``seq`` is assigned by the store: the order in which checkpoints of a run
    were added, starting at 1. ``cache_valid`` goes false when a cached result
    must no longer be reused; ``status_reason`` says why the status last
    changed.
    """

    id: str
    run_id: str
    workflow: str
    task: str
    attempt: int
    status: str
    bundle: bytes
    signature: str
    key_id: str
    parents: list[str]
    prev: str | None
    cache_key: str | None
    env_fp: str
    created_at: float
    inputs: list[ArtifactRecord] = field(default_factory=list)
    outputs: list[ArtifactRecord] = field(default_factory=list)
    claims: list[ClaimRecord] = field(default_factory=list)
    uses: list[AssetUse] = field(default_factory=list)
    seq: int | None = None
    cache_valid: bool = True
    status_reason: str | None = None

    @cached_property
    def doc(self) -> dict:
        """The bundle parsed from its canonical JSON (parsed once, then cached)."""
        return json.loads(self.bundle)


@dataclass
class TaskRecord:
    """The current state of one task of a run (the latest attempt).

    ``fencing`` is the lease's fencing token and ``lease_expiry`` its expiry
    time; ``checkpoint_id`` is the checkpoint the task produced, when it has.
    """

    run_id: str
    task: str
    attempt: int
    state: str
    agent: str | None = None
    fencing: int | None = None
    lease_expiry: float | None = None
    updated_at: float = 0.0
    error: str | None = None
    checkpoint_id: str | None = None


@dataclass
class EventRecord:
    """One entry of the append-only event / audit log.

    ``id`` is assigned by the store and is set on records read back; it orders
    events within one store.
    """

    ts: float
    kind: str
    run_id: str | None = None
    task: str | None = None
    attempt: int | None = None
    agent: str | None = None
    data: dict = field(default_factory=dict)
    id: int | None = None
