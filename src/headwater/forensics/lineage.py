"""``headwater lineage ARTIFACT|CKPT``: what a result came from and fed into.

Upstream follows each checkpoint's parents and the producers of its input
artifacts; downstream follows the checkpoints that consumed its outputs, in
any run (a cached result links runs together). Both are transitive.
"""

from __future__ import annotations

from collections import deque

from headwater.errors import NotFound
from headwater.store import Store


def _node(ck) -> dict:
    return {"id": ck.id, "run": ck.run_id, "task": ck.task, "attempt": ck.attempt, "status": ck.status}


def lineage(store: Store, ident: str, depth: int = 50) -> dict:
    """Lineage of a checkpoint id (or prefix) or an artifact sha256 (or prefix)."""
    try:
        ck = store.get_checkpoint(ident)
        roots, subject = [ck.id], {"kind": "checkpoint", **_node(ck)}
        start_up, start_down = list(ck.parents) + _producers(store, [i.sha256 for i in ck.inputs]), \
            _consumers(store, [o.sha256 for o in ck.outputs])
    except NotFound:
        sha = _artifact(store, ident)
        links = store.checkpoints_with_artifact(sha)
        roots, subject = [], {"kind": "artifact", "sha256": sha}
        start_up, start_down = links["produced_by"], links["consumed_by"]
    up = _walk(store, start_up, depth, upstream=True, exclude=set(roots))
    down = _walk(store, start_down, depth, upstream=False, exclude=set(roots))
    return {"subject": subject, "upstream": up, "downstream": down}


def _artifact(store: Store, ident: str) -> str:
    if len(ident) == 64:
        return ident
    matches = {o.sha256 for ck in store.list_checkpoints() for o in ck.outputs if o.sha256.startswith(ident)}
    if len(matches) != 1:
        raise NotFound("checkpoint or artifact", ident, "give a longer id" if matches else "see `headwater checkpoints RUN`")
    return matches.pop()


def _producers(store: Store, shas: list[str]) -> list[str]:
    return [c for sha in shas for c in store.checkpoints_with_artifact(sha)["produced_by"]]


def _consumers(store: Store, shas: list[str]) -> list[str]:
    return [c for sha in shas for c in store.checkpoints_with_artifact(sha)["consumed_by"]]


def _walk(store: Store, start: list[str], depth: int, *, upstream: bool, exclude: set[str]) -> list[dict]:
    seen = set(exclude)
    out: list[dict] = []
    queue = deque((cid, 1) for cid in start)
    while queue:
        cid, d = queue.popleft()
        if cid in seen or d > depth:
            continue
        seen.add(cid)
        ck = store.get_checkpoint(cid)
        out.append({**_node(ck), "distance": d})
        nxt = (list(ck.parents) + _producers(store, [i.sha256 for i in ck.inputs])) if upstream \
            else _consumers(store, [o.sha256 for o in ck.outputs])
        queue.extend((n, d + 1) for n in nxt)
    return out
