"""``headwater verify`` on runs served by the shared queue and signed by remote agents' keys."""

from __future__ import annotations

from headwater.checkpoint.signing import SigningKey
from headwater.forensics import verify_store
from headwater.forensics.verify import check_parents
from headwater.runtime.shared import accept, execute, submit_run, work_context
from headwater.store.queue import WorkQueue
from headwater.store.tokens import Tokens
from tests.runtime.workflows import CHAIN


def _serve(ws, queue, wf, agent: str, key: SigningKey, limit: int, now: float) -> int:
    """Run up to ``limit`` items as ``agent``, signing with ``key``; how many ran."""
    done = 0
    while done < limit:
        claims = queue.claim(agent, ["worker"], now, 30.0)
        if not claims:
            break
        sub = execute(work_context(ws.store, claims[0]), wf, agent, ws.store.artifacts, key)
        accept(ws.store, queue, sub, now, public_key=key.public_hex)
        done += 1
    return done


def test_bundles_signed_by_agents_verify_under_every_key_they_registered(ws_any, write_wf):
    ws = ws_any
    wf = write_wf(CHAIN)
    tokens = Tokens(ws.store)
    token, _ = tokens.create(["worker"], 0.0, label="host-b")
    first, second = SigningKey.generate(), SigningKey.generate()
    queue = WorkQueue(ws.store)
    run_id = submit_run(ws.store, wf, {"scale": 3.0}, seed=7, now=0.0)

    tokens.register_agent(token.id, "b1", first.public_hex, first.key_id, 1.0)
    assert _serve(ws, queue, wf, "b1", first, 2, 1.0) == 2
    # The agent restarts with a new key: bundles signed by the old one must still verify.
    tokens.register_agent(token.id, "b1", second.public_hex, second.key_id, 2.0)
    assert tokens.agent("b1").key_id == second.key_id
    assert _serve(ws, queue, wf, "b1", second, 100, 2.0) == 2
    assert queue.finished(run_id)

    cks = ws.store.list_checkpoints(run_id)
    assert {c.key_id for c in cks} == {first.key_id, second.key_id}
    report = verify_store(ws.store, ws.key.public_hex, run_id)
    assert report.ok, report.problems
    assert report.checkpoints == 4


def test_a_bundle_signed_by_an_unregistered_key_is_reported(ws_any, write_wf):
    ws = ws_any
    wf = write_wf(CHAIN)
    stranger = SigningKey.generate()
    queue = WorkQueue(ws.store)
    run_id = submit_run(ws.store, wf, {"scale": 3.0}, seed=7, now=0.0)
    assert _serve(ws, queue, wf, "x", stranger, 1, 1.0) == 1

    report = verify_store(ws.store, ws.key.public_hex, run_id)
    assert not report.ok
    ((subject, problem),) = report.problems
    assert subject == ws.store.list_checkpoints(run_id)[0].id
    assert stranger.key_id in problem and "registered" in problem


def test_queued_runs_are_chained_by_parents_written_earlier():
    a = {"run": "r", "prev": None, "parents": []}
    b = {"run": "r", "prev": None, "parents": ["A"]}
    assert check_parents([("A", a), ("B", b)]) == []
    assert check_parents([("B", b), ("A", a)]) == [("B", "parent A is not a checkpoint written earlier in the run")]
    linked = {"run": "r", "prev": "A", "parents": ["A"]}
    assert check_parents([("A", a), ("C", linked)]) == [("C", "a queued run's checkpoint names a prev link")]
    foreign = {"run": "s", "prev": None, "parents": []}
    assert check_parents([("A", a), ("B", b), ("F", foreign)]) == [("F", "belongs to run 's', not 'r'")]
