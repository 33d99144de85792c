"""Two processes writing checkpoints into one store at the same time.

Both workers add batches to a shared run and to a run of their own. Every
checkpoint must land, the shared run's ``seq`` must be gap-free and each
worker's own order must be preserved in it. On SQLite this exercises WAL,
BEGIN IMMEDIATE and the busy timeout; on PostgreSQL the run-row lock.
"""

from __future__ import annotations

import multiprocessing

import pytest

from headwater.store import open_store
from tests.store import factories as f

BATCHES = 50
PER_BATCH = 4


def _writer(url: str, root: str, worker: int, barrier) -> None:
    store = open_store(url, root=root)
    try:
        barrier.wait(timeout=60)
        for b in range(BATCHES):
            batch = []
            for i in range(PER_BATCH):
                n = worker * 10_000 + b * PER_BATCH + i
                batch.append(f.checkpoint("shared", f"w{worker}", n, outputs=[f.art(f"o{n}", "out")]))
                batch.append(f.checkpoint(f"own-{worker}", "t", n, inputs=[f.art("common", "x/in")]))
            store.add_checkpoints(batch, events=[f.event("batch", float(b), run_id="shared")])
    finally:
        store.close()


@pytest.mark.slow
def test_two_processes_add_checkpoints_concurrently(store, store_url):
    for run_id in ("shared", "own-0", "own-1"):
        store.create_run(f.run(run_id))
    ctx = multiprocessing.get_context("spawn")
    # Both writers open the store, then start writing at the same moment.
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(target=_writer, args=(store_url, str(store.root), w, barrier)) for w in (0, 1)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]

    per_worker = BATCHES * PER_BATCH
    shared = store.list_checkpoints("shared")
    assert [c.seq for c in shared] == list(range(1, 2 * per_worker + 1))
    for w in (0, 1):
        mine = [c.doc["n"] for c in shared if c.task == f"w{w}"]
        assert mine == sorted(mine) and len(mine) == per_worker
        own = store.list_checkpoints(f"own-{w}")
        assert [c.seq for c in own] == list(range(1, per_worker + 1))
    assert all(len(c.outputs) == 1 for c in shared)
    assert len(store.checkpoints_with_artifact(f.sha("common"))["consumed_by"]) == 2 * per_worker
    assert len(store.list_events(run_id="shared")) == 2 * BATCHES
