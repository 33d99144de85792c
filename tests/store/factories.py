"""Builders for store records with deterministic, distinct contents."""

from __future__ import annotations

import hashlib

from headwater.checkpoint.canonical import canonical_json, sha256_hex
from headwater.store import (
    ArtifactRecord,
    AssetUse,
    CheckpointRecord,
    ClaimRecord,
    EventRecord,
    RunRecord,
    TaskRecord,
)


def sha(text: str) -> str:
    """A deterministic sha256 hex standing in for an artifact's hash."""
    return hashlib.sha256(text.encode()).hexdigest()


def art(tag: str, name: str = "", media_type: str = "application/octet-stream") -> ArtifactRecord:
    return ArtifactRecord(sha(tag), len(tag), media_type, f"file:///objects/{sha(tag)}", name)


def run(
    id: str = "run-0001",
    *,
    workflow: str = "wf",
    campaign: str = "default",
    created_at: float = 1000.0,
    status: str = "running",
    **overrides,
) -> RunRecord:
    fields = dict(
        id=id, workflow=workflow, spec_hash=sha("spec-" + workflow), campaign=campaign,
        params={"alpha": 0.5, "grid": [4, 4]}, seed=12345, status=status, why="test",
        source="/tmp/wf.py", created_at=created_at,
    )
    fields.update(overrides)
    return RunRecord(**fields)


def checkpoint(
    run_id: str,
    task: str = "t",
    n: int = 0,
    *,
    workflow: str = "wf",
    status: str = "committed",
    attempt: int = 1,
    created_at: float | None = None,
    inputs: list[ArtifactRecord] | None = None,
    outputs: list[ArtifactRecord] | None = None,
    claims: list[ClaimRecord] | None = None,
    uses: list[AssetUse] | None = None,
    cache_key: str | None = None,
    pad: int = 0,
) -> CheckpointRecord:
    """A checkpoint whose bundle (and so id) is unique to its arguments."""
    body = {"run": run_id, "task": task, "n": n, "attempt": attempt, "pad": "x" * pad,
            "note": "naïve café ∑ — 😀"}
    bundle = canonical_json(body)
    return CheckpointRecord(
        id=sha256_hex(bundle), run_id=run_id, workflow=workflow, task=task, attempt=attempt,
        status=status, bundle=bundle, signature="sig-" + sha256_hex(bundle)[:16], key_id="key-1",
        parents=[sha(f"parent-{n}")], prev=None, cache_key=cache_key, env_fp=sha("env"),
        created_at=1000.0 + n if created_at is None else created_at,
        inputs=list(inputs or []), outputs=list(outputs or []),
        claims=list(claims or []), uses=list(uses or []),
    )


def task(run_id: str, name: str, state: str = "ready", **overrides) -> TaskRecord:
    fields = dict(run_id=run_id, task=name, attempt=1, state=state, updated_at=1.0)
    fields.update(overrides)
    return TaskRecord(**fields)


def event(kind: str, ts: float = 1.0, **overrides) -> EventRecord:
    return EventRecord(ts=ts, kind=kind, **overrides)
