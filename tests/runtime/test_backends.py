"""The runtime and forensics on each store backend (PostgreSQL when configured)."""

from headwater.forensics import reproduce, verify_store
from headwater.runtime import RunOptions, run_workflow
from tests.runtime.workflows import CHAIN


def test_run_verify_reproduce_on_each_backend(ws_any, write_wf):
    wf = write_wf(CHAIN)
    summary = run_workflow(ws_any, wf, {}, RunOptions(workers=2, seed=9))
    assert summary.ok, [t.error for t in summary.tasks]
    cks = ws_any.store.list_checkpoints(summary.run_id)
    assert [c.task for c in cks] == ["make", "decide", "double", "total"]
    assert [c.seq for c in cks] == [1, 2, 3, 4]
    assert verify_store(ws_any.store, ws_any.key.public_hex, summary.run_id).ok
    assert reproduce(ws_any.store, cks[-1].id).identical
    # agents resolve claims through the same store: a second workflow uses the first one's claim
    consumer = write_wf('''
from headwater import Workflow
wf = Workflow("consumer")
@wf.task()
def read(ctx):
    ctx.save("seen", ctx.use("claim:chain.total"))
''')
    second = run_workflow(ws_any, consumer, {}, RunOptions(workers=2))
    assert second.ok, [t.error for t in second.tasks]
    ck = ws_any.store.list_checkpoints(second.run_id)[0]
    assert ck.doc["manifest"]["versions"]["claim:chain.total"] == cks[-1].id[:12]
    assert [(u.kind, u.name, u.direction) for u in ck.uses if u.kind == "claim"] == [("claim", "chain.total", "consumed")]
    # the runtime also records the compute it ran on (the hardware class)
    assert [u.kind for u in ck.uses if u.kind == "compute"] == ["compute"]
