"""Claims over HTTP: a claim held open until work is ready (``wait``), the
next batch claimed with a batch's results (``claim`` in a submission), and
the agent loop that uses both. On SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import threading

from headwater.runtime.shared import WorkContext, execute, submit_run
from tests.server.test_security import _claim, _refused

CHAIN = """
from headwater import Workflow

wf = Workflow("claims-chain")

@wf.task
def a(ctx):
    ctx.save("out", [1])

@wf.task(after="a")
def b(ctx):
    ctx.save("out", ctx.load("a/out") + [2])
"""


def _in_background(fn):
    """Run ``fn`` in a thread; returns a callable that joins it and gives its result."""
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()

    def result():
        thread.join(timeout=30)
        assert not thread.is_alive(), "the held claim never returned"
        return out[0]

    return result


def _executed(agent, items: list[dict]) -> list:
    contexts = [WorkContext.from_json(i["context"]) for i in items]
    subs = [execute(ctx, agent.workflow_for(ctx), agent.name, agent.cache, agent.key) for ctx in contexts]
    agent.upload_outputs(subs)
    return subs


def test_a_held_claim_returns_work_made_ready_by_another_agents_results(api, tmp_path):
    wf = api.write_wf(CHAIN)
    api.wf_file = wf.source_file
    run_id = submit_run(api.store, wf, now=api.clock(), queue=api.queue)
    secret = api.token("worker")
    first = api.remote(secret, "w1", tmp_path / "w1")
    first.client.register("w1", first.key.public_hex)
    api.agent(secret, "w2")
    (item,) = first.client.claim("w1", ["worker"], 5, 30.0)
    assert item["claim"]["task"] == "a"
    held = _in_background(lambda: _claim(api, secret, "w2", limit=5, wait=8))
    assert first.client.submit([s.to_json() for s in _executed(first, [item])])[0]["ok"]
    (then,) = held()
    assert (then["claim"]["run_id"], then["claim"]["task"], then["claim"]["holder"]) == (run_id, "b", "w2")
    assert then["context"]["inputs"]  # built after a's result was committed


def test_a_held_claim_sees_a_run_submitted_by_another_process_and_an_empty_one_ends_at_wait(api):
    secret = api.token("worker")
    api.agent(secret, "w1")
    assert _claim(api, secret, "w1", wait=0.3) == []
    held = _in_background(lambda: _claim(api, secret, "w1", limit=5, wait=8))
    run_id = api.run()  # enqueued straight into the store, as `headwater submit` does
    (item,) = held()
    assert item["claim"]["run_id"] == run_id


def test_a_submission_carries_the_next_claim(api, tmp_path):
    runs = [api.run(), api.run()]
    secret = api.token("worker")
    agent = api.remote(secret, "w1", tmp_path)
    agent.client.register("w1", agent.key.public_hex)
    (item,) = agent.client.claim("w1", ["worker"], 1, 30.0)
    subs = _executed(agent, [item])
    results, following = agent.client.submit_and_claim([s.to_json() for s in subs],
                                                       agent.client.claim_body("w1", ["worker"], 5, 30.0))
    assert [r["ok"] for r in results] == [True]
    (nxt,) = following
    assert nxt["claim"]["run_id"] == ({*runs} - {item["claim"]["run_id"]}).pop()
    assert nxt["context"]["claim"]["token"] == nxt["claim"]["token"]
    assert api.queue.lease(nxt["claim"]["token"]).holder == "w1"
    assert api.queue.scoreboard(nxt["claim"]["run_id"])["tasks"]["a"]["state"] == "leased"


def test_a_next_claim_the_token_may_not_make_refuses_the_whole_submission(api, tmp_path):
    run_id = api.run()
    secret = api.token("worker")
    agent = api.remote(secret, "w1", tmp_path)
    agent.client.register("w1", agent.key.public_hex)
    items = agent.client.claim("w1", ["worker"], 1, 30.0)
    subs = _executed(agent, items)
    body = {"items": [s.to_json() for s in subs], "claim": {"agent": "w1", "roles": ["verifier"], "limit": 5}}
    _refused(api.client.post("/v1/submissions", json=body, headers=api.auth(secret)), 403, "wrong-role")
    api.agent(api.token("worker"), "someone-else")
    body["claim"] = {"agent": "someone-else", "limit": 5}
    _refused(api.client.post("/v1/submissions", json=body, headers=api.auth(secret)), 403, "not-your-agent")
    assert api.queue.scoreboard(run_id)["tasks"]["a"]["state"] == "leased"  # nothing applied


def test_the_agent_loop_claims_each_next_batch_with_its_results(api, tmp_path):
    runs = [api.run(), api.run(), api.run()]
    agent = api.remote(api.token("worker"), "w1", tmp_path, batch=1, until_idle=0.5)
    agent.options.once = False
    stats = agent.run()
    assert (stats.batches, stats.accepted, stats.refused) == (3, 3, 0), stats.errors
    assert all(api.queue.finished(r) for r in runs)
    metrics = api.client.get("/metrics", headers=api.auth(api.token("worker"))).text
    # One claim to start, one held open at the end; the batches in between came with results.
    assert 'headwater_http_requests_total{method="POST",route="/v1/claims",status="200"} 2.0' in metrics
    assert 'headwater_http_requests_total{method="POST",route="/v1/submissions",status="200"} 3.0' in metrics
