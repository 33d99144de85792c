"""Executing and accepting shared-queue work end to end (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import pytest

from headwater.checkpoint.signing import SigningKey
from headwater.checkpoint.verify import check_checkpoint
from headwater.runtime.agent import OutputsView
from headwater.runtime.shared import (
    Rejected,
    Submission,
    WorkContext,
    accept,
    accept_many,
    execute,
    submit_run,
    work_context,
    work_contexts,
)
from headwater.store.queue import StaleLease, WorkQueue
from tests.runtime.workflows import CHAIN

VERIFIED = '''
from headwater import Workflow

wf = Workflow("verified")

@wf.task(verify=2)
def measure(ctx):
    ctx.save("value", 41)

@wf.task(after="measure")
def report(ctx):
    ctx.save("report", ctx.load("measure/value") + 1)
'''

ROLES = ["worker", "verifier"]


def step(ws, queue, wf, agent, now=1.0):
    """Claim one item as ``agent``, run it and hand the result in; the claim, or None."""
    claims = queue.claim(agent, ROLES, now, 30.0)
    if not claims:
        return None
    (claim,) = claims
    ctx = WorkContext.from_json(json.loads(json.dumps(work_context(ws.store, claim).to_json())))
    sub = Submission.from_json(json.loads(json.dumps(execute(ctx, wf, agent, ws.store.artifacts, ws.key).to_json())))
    accept(ws.store, queue, sub, now)
    return claim


def drain(ws, queue, wf, agents):
    for _ in range(100):
        if not any([step(ws, queue, wf, a) for a in agents]):
            break


def test_chain_runs_through_the_queue_with_signed_bundles(ws_any, write_wf):
    ws = ws_any
    wf = write_wf(CHAIN)
    queue = WorkQueue(ws.store)
    run_id = submit_run(ws.store, wf, {"scale": 3.0}, seed=7, now=0.0)
    drain(ws, queue, wf, ["a1"])
    assert queue.finished(run_id)
    board = queue.scoreboard(run_id)["tasks"]
    assert {n: r["state"] for n, r in board.items()} == {
        "make": "committed", "decide": "committed", "triple": "committed", "double": "skipped", "total": "committed"}
    cks = {c.task: c for c in ws.store.list_checkpoints(run_id)}
    assert set(cks) == {"make", "decide", "triple", "total"}
    assert all(c.status == "committed" for c in cks.values())
    assert OutputsView("total", cks["total"].outputs, ws.store.artifacts).load("total") == {"total": 18}
    assert cks["total"].parents == [cks["triple"].id]
    assert [c.key for c in cks["total"].claims] == ["chain.total"]
    assert all(check_checkpoint(c.id, c.bundle, c.signature, ws.key.public_hex) == [] for c in cks.values())
    assert ws.store.get_run(run_id).status == "succeeded"


def test_verification_by_two_other_agents_commits(ws_any, write_wf):
    ws = ws_any
    wf = write_wf(VERIFIED)
    queue = WorkQueue(ws.store)
    run_id = submit_run(ws.store, wf, now=0.0)
    assert step(ws, queue, wf, "p").task == "measure"
    (ck,) = ws.store.list_checkpoints(run_id)
    assert ck.status == "provisional" and ck.doc["status"] == "provisional"
    assert step(ws, queue, wf, "p") is None  # the producer may not judge its own work
    assert step(ws, queue, wf, "v1").kind == "verify"
    assert ws.store.get_checkpoint(ck.id).status == "provisional"
    assert step(ws, queue, wf, "v2").kind == "verify"
    assert ws.store.get_checkpoint(ck.id).status == "committed"
    assert step(ws, queue, wf, "p", 3.0).task == "report"
    assert queue.finished(run_id)


def test_tampered_bundle_forged_signature_and_wrong_claim_are_rejected(ws_any, write_wf):
    ws = ws_any
    wf = write_wf(CHAIN)
    queue = WorkQueue(ws.store)
    run_id = submit_run(ws.store, wf, now=0.0)
    (claim,) = queue.claim("a1", ROLES, 1.0, 30.0)
    sub = execute(work_context(ws.store, claim), wf, "a1", ws.store.artifacts, ws.key)
    tampered = Submission(**{**sub.__dict__, "bundle": sub.bundle.replace(b'"attempt":1', b'"attempt":2')})
    with pytest.raises(Rejected, match="signature"):
        accept(ws.store, queue, tampered, 2.0)
    stranger = SigningKey.generate()
    forged = Submission(**{**sub.__dict__, "signature": stranger.sign(sub.bundle), "key_id": stranger.key_id})
    with pytest.raises(Rejected, match="signature"):
        accept(ws.store, queue, forged, 2.0)
    # Validly signed by a key the caller trusts, but for another attempt than the lease covers.
    other = Submission(**{**tampered.__dict__, "signature": stranger.sign(tampered.bundle)})
    with pytest.raises(Rejected, match="attempt 2"):
        accept(ws.store, queue, other, 2.0, public_key=stranger.public_hex)
    assert ws.store.list_checkpoints(run_id) == []
    assert accept(ws.store, queue, sub, 2.0) is not None  # the genuine one still goes in


def test_missing_artifact_is_rejected(ws_any, write_wf, tmp_path):
    from headwater.store.artifacts import ArtifactStore

    ws = ws_any
    wf = write_wf(CHAIN)
    queue = WorkQueue(ws.store)
    submit_run(ws.store, wf, now=0.0)
    (claim,) = queue.claim("a1", ROLES, 1.0, 30.0)
    elsewhere = ArtifactStore(tmp_path / "elsewhere")  # outputs written where the store cannot see them
    sub = execute(work_context(ws.store, claim), wf, "a1", elsewhere, ws.key)
    with pytest.raises(Rejected, match="not in the artifact store"):
        accept(ws.store, queue, sub, 2.0)


def test_stale_token_is_refused_and_the_rerun_is_accepted(ws_any, write_wf):
    ws = ws_any
    wf = write_wf(CHAIN)
    queue = WorkQueue(ws.store)
    run_id = submit_run(ws.store, wf, now=0.0)
    (claim,) = queue.claim("slow", ROLES, 1.0, 5.0)
    late = execute(work_context(ws.store, claim), wf, "slow", ws.store.artifacts, ws.key)
    assert [c.token for c in queue.reap(10.0)] == [claim.token]
    assert step(ws, queue, wf, "fast", 10.0).task == "make"
    with pytest.raises(StaleLease):
        accept(ws.store, queue, late, 11.0)
    assert [c.task for c in ws.store.list_checkpoints(run_id)] == ["make"]


def test_failed_attempt_is_retried(ws_any, write_wf):
    ws = ws_any
    wf = write_wf('''
from headwater import Workflow
wf = Workflow("flaky")

@wf.task(retries=1)
def once(ctx):
    if ctx.attempt == 1:
        raise RuntimeError("first try fails")
    ctx.save("ok", True)
''')
    queue = WorkQueue(ws.store)
    run_id = submit_run(ws.store, wf, backoff=(0.0, 1.0, 0.0), now=0.0)
    first = step(ws, queue, wf, "a")
    assert first.attempt == 1 and not ws.store.list_checkpoints(run_id)
    assert step(ws, queue, wf, "a").attempt == 2
    assert queue.finished(run_id) and ws.store.get_run(run_id).status == "succeeded"


FAN = '''
from headwater import Workflow

wf = Workflow("fan")

for i in range(4):
    @wf.task(name=f"leaf{i}")
    def leaf(ctx):
        ctx.save("value", 1)

@wf.task(after=[f"leaf{i}" for i in range(4)])
def total(ctx):
    ctx.save("total", sum(ctx.load(f"leaf{i}/value") for i in range(4)))
'''


def test_accept_many_applies_the_good_and_refuses_each_bad_one_alone(ws_any, write_wf):
    ws = ws_any
    wf = write_wf(FAN)
    queue = WorkQueue(ws.store)
    run_id = submit_run(ws.store, wf, now=0.0)
    claims = queue.claim("a1", ROLES, 1.0, 30.0, limit=10)
    assert len(claims) == 4
    contexts = work_contexts(ws.store, claims)
    assert [c.to_json() for c in contexts] == [work_context(ws.store, c).to_json() for c in claims]
    subs = [execute(ctx, wf, "a1", ws.store.artifacts, ws.key) for ctx in contexts]
    stranger = SigningKey.generate()
    forged = Submission(**{**subs[1].__dict__, "signature": stranger.sign(subs[1].bundle)})
    batch = [subs[0], forged, subs[2], subs[2], subs[3]]  # subs[2] twice: only the first may count
    out = accept_many(ws.store, queue, batch, 2.0)
    assert [o.ok for o in out] == [True, False, True, False, True]
    assert isinstance(out[1].error, Rejected) and "signature" in out[1].error.reason
    assert isinstance(out[3].error, StaleLease)
    cks = {c.task: c for c in ws.store.list_checkpoints(run_id)}
    assert set(cks) == {"leaf0", "leaf2", "leaf3"}
    assert {out[i].checkpoint for i in (0, 2, 4)} == {c.id for c in cks.values()}
    assert len({c.seq for c in cks.values()}) == 3 and all(c.status == "committed" for c in cks.values())
    assert queue.scoreboard(run_id)["tasks"]["total"]["state"] == "pending"
    assert accept(ws.store, queue, subs[1], 3.0) is not None  # the forged one's lease was kept
    assert step(ws, queue, wf, "a2", 4.0).task == "total"
    assert queue.finished(run_id)
    cks = {c.task: c for c in ws.store.list_checkpoints(run_id)}
    assert OutputsView("total", cks["total"].outputs, ws.store.artifacts).load("total") == 4
    assert all(check_checkpoint(c.id, c.bundle, c.signature, ws.key.public_hex) == [] for c in cks.values())


def test_accept_many_mixes_verdicts_and_results(ws_any, write_wf):
    ws = ws_any
    wf = write_wf(VERIFIED)
    queue = WorkQueue(ws.store)
    run_id = submit_run(ws.store, wf, now=0.0)
    assert step(ws, queue, wf, "p").task == "measure"
    assert queue.claim("p", ROLES, 1.0, 30.0) == []  # never its own work to judge
    votes = [queue.claim(v, ROLES, 1.0, 30.0)[0] for v in ("v1", "v2")]
    subs = [execute(work_context(ws.store, c), wf, c.holder, ws.store.artifacts, ws.key) for c in votes]
    assert [o.ok for o in accept_many(ws.store, queue, subs, 2.0)] == [True, True]
    (ck,) = ws.store.list_checkpoints(run_id)
    assert ws.store.get_checkpoint(ck.id).status == "committed"
    assert step(ws, queue, wf, "p", 3.0).task == "report"
    assert queue.finished(run_id)
