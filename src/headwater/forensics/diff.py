"""``headwater diff A B``: what differs between two checkpoints or two runs.

For checkpoints: params, seed, code and spec, environment (packages added,
removed, changed, from the stored package lists), and artifacts by name.
For runs: run params and spec, then the checkpoint diff of every task the two
runs share.
"""

from __future__ import annotations

from typing import Any

from headwater.checkpoint.env import diff_packages
from headwater.errors import NotFound
from headwater.spec import diff_specs
from headwater.store import Store
from headwater.store.records import CheckpointRecord


def _dict_diff(a: dict, b: dict) -> dict[str, list[Any]]:
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def diff_checkpoints(store: Store, a: CheckpointRecord, b: CheckpointRecord) -> dict:
    da, db = a.doc, b.doc
    ma, mb = da["manifest"], db["manifest"]
    env_a, env_b = store.get_env(a.env_fp), store.get_env(b.env_fp)
    packages = diff_packages(env_a[1] if env_a else {}, env_b[1] if env_b else {})
    arts_a = {x["name"]: x["sha256"] for x in da.get("artifacts", [])}
    arts_b = {x["name"]: x["sha256"] for x in db.get("artifacts", [])}
    return {
        "a": a.id, "b": b.id, "task": [a.task, b.task],
        "params": _dict_diff(ma.get("params", {}), mb.get("params", {})),
        "seed": [ma.get("seed"), mb.get("seed")] if ma.get("seed") != mb.get("seed") else None,
        "code": _dict_diff(ma.get("code", {}), mb.get("code", {})),
        "inputs": _dict_diff(ma.get("inputs", {}), mb.get("inputs", {})),
        "versions": _dict_diff(ma.get("versions", {}), mb.get("versions", {})),
        "env": {"fingerprint": [a.env_fp, b.env_fp] if a.env_fp != b.env_fp else None,
                "summary": _dict_diff(da.get("env", {}), db.get("env", {})), "packages": packages},
        "artifacts": {
            "added": sorted(set(arts_b) - set(arts_a)),
            "removed": sorted(set(arts_a) - set(arts_b)),
            "changed": sorted(n for n in set(arts_a) & set(arts_b) if arts_a[n] != arts_b[n]),
            "same": sorted(n for n in set(arts_a) & set(arts_b) if arts_a[n] == arts_b[n]),
        },
        "claims": _dict_diff({c["key"]: c["value"] for c in da["intent"].get("claims", [])},
                             {c["key"]: c["value"] for c in db["intent"].get("claims", [])}),
        "why": [da.get("spec_diff", {}).get("why"), db.get("spec_diff", {}).get("why")],
    }


def diff(store: Store, a: str, b: str) -> dict:
    """Diff two runs (when both ids name runs) or two checkpoints."""
    try:
        ra, rb = store.get_run(a), store.get_run(b)
    except NotFound:
        ra = rb = None
    if ra is not None and rb is not None:
        spec_changes: list[str] = []
        if ra.spec_hash != rb.spec_hash:
            try:
                spec_changes = diff_specs(store.get_spec(ra.spec_hash), store.get_spec(rb.spec_hash))
            except NotFound:
                spec_changes = ["spec"]
        last = lambda run: {c.task: c for c in store.list_checkpoints(run.id) if c.status == "committed"}  # noqa: E731
        ca, cb = last(ra), last(rb)
        return {
            "kind": "runs", "a": ra.id, "b": rb.id, "workflow": [ra.workflow, rb.workflow],
            "params": _dict_diff(ra.params, rb.params),
            "seed": [ra.seed, rb.seed] if ra.seed != rb.seed else None,
            "spec": spec_changes, "why": [ra.why, rb.why],
            "only_in_a": sorted(set(ca) - set(cb)), "only_in_b": sorted(set(cb) - set(ca)),
            "tasks": {t: diff_checkpoints(store, ca[t], cb[t]) for t in ca if t in cb},
        }
    return {"kind": "checkpoints", **diff_checkpoints(store, store.get_checkpoint(a), store.get_checkpoint(b))}
