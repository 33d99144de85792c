"""Each forbidden action is refused with the right status and a reason, and
changes nothing; the allowed counterpart succeeds. Runs on SQLite and on
PostgreSQL (when HEADWATER_TEST_POSTGRES is set) through the ``store`` fixture."""

from __future__ import annotations

import base64

from headwater.checkpoint.signing import SigningKey


def _refused(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "detail"} and body["detail"]
    if code is not None:
        assert body["error"] == code
    return body


def _claim(api, secret: str, agent: str, **extra) -> list[dict]:
    r = api.client.post("/v1/claims", json={"agent": agent, **extra}, headers=api.auth(secret))
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _signed(key: SigningKey, token: int, agent: str, bundle: bytes = b'{"x":1}') -> dict:
    return {"token": token, "agent": agent, "kind": "run", "bundle": base64.b64encode(bundle).decode(),
            "signature": key.sign(bundle), "key_id": key.key_id, "artifacts": []}


# ------------------------------------------------------------------ tokens

def test_no_token_is_401_on_every_route_but_healthz(api):
    assert api.client.get("/healthz").status_code == 200
    for method, path in [("get", "/v1/runs"), ("get", "/metrics"), ("post", "/v1/claims"),
                         ("post", "/v1/submissions"), ("get", "/v1/assets"), ("post", "/v1/assets/flag")]:
        r = getattr(api.client, method)(path)
        _refused(r, 401, "unauthenticated")
        assert r.headers["www-authenticate"] == "Bearer"


def test_unknown_and_malformed_tokens_are_401(api):
    secret = api.token("worker")
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    for bad in (forged, "hw_nope_x", "not-a-token"):
        _refused(api.client.get("/v1/whoami", headers=api.auth(bad)), 401, "invalid-token")


def test_revoked_token_is_401_at_once(api):
    secret = api.token("worker")
    assert api.client.get("/v1/whoami", headers=api.auth(secret)).status_code == 200
    token_id = api.client.get("/v1/whoami", headers=api.auth(secret)).json()["id"]
    api.tokens.revoke(token_id, api.clock())
    _refused(api.client.get("/v1/whoami", headers=api.auth(secret)), 401, "invalid-token")
    assert api.tokens.get(token_id).revoked


def test_only_a_hash_of_the_secret_is_stored(api):
    secret = api.token("worker")
    import sqlalchemy as sa

    from headwater.store import schema as t

    with api.store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.api_token)).all()
    assert rows and all(secret not in str(tuple(r)) for r in rows)


# ------------------------------------------------------------------ roles and scope

def test_claiming_for_a_role_the_token_lacks_is_403(api):
    api.run()
    secret = api.token("verifier")
    api.agent(secret, "v1")
    _refused(api.client.post("/v1/claims", json={"agent": "v1", "roles": ["worker"]}, headers=api.auth(secret)),
             403, "wrong-role")
    # Nothing was leased: a worker still gets the item.
    worker = api.token("worker")
    api.agent(worker, "w1")
    assert [i["claim"]["task"] for i in _claim(api, worker, "w1")] == ["a"]


def test_default_roles_are_the_tokens_own(api):
    api.run()
    secret = api.token("verifier")
    api.agent(secret, "v1")
    assert _claim(api, secret, "v1") == []


def test_out_of_scope_run_is_403_and_scoped_claims_see_only_their_runs(api):
    run_in = api.run("wf-in")
    run_out = api.run("wf-out")
    secret = api.token("worker", scope="workflow:wf-in")
    api.agent(secret, "w1")
    _refused(api.client.get(f"/v1/runs/{run_out}", headers=api.auth(secret)), 403, "out-of-scope")
    _refused(api.client.post("/v1/claims", json={"agent": "w1", "run": run_out}, headers=api.auth(secret)),
             403, "out-of-scope")
    assert [r["id"] for r in api.client.get("/v1/runs", headers=api.auth(secret)).json()] == [run_in]
    items = _claim(api, secret, "w1", limit=10)
    assert {i["claim"]["run_id"] for i in items} == {run_in}


def test_campaign_scope(api):
    run_a = api.run(campaign="survey")
    api.run(campaign="other")
    secret = api.token("worker", scope="campaign:survey")
    api.agent(secret, "w1")
    assert {i["claim"]["run_id"] for i in _claim(api, secret, "w1", limit=10)} == {run_a}


def test_acting_as_another_tokens_agent_is_403(api):
    api.run()
    mine, theirs = api.token("worker"), api.token("worker")
    api.agent(theirs, "shared-name")
    _refused(api.client.post("/v1/agents", json={"name": "shared-name", "public_key": "ab" * 32},
                             headers=api.auth(mine)), 403, "not-your-agent")
    _refused(api.client.post("/v1/claims", json={"agent": "shared-name"}, headers=api.auth(mine)),
             403, "not-your-agent")
    _refused(api.client.post("/v1/claims", json={"agent": "never-registered"}, headers=api.auth(mine)),
             403, "unknown-agent")


# ------------------------------------------------------------------ leases and bundles

def test_expired_lease_is_409_and_another_agent_gets_the_item(api):
    api.run()
    secret = api.token("worker")
    key = api.agent(secret, "w1")
    claim = _claim(api, secret, "w1", lease_s=5)[0]["claim"]
    api.clock.now += 60
    api.queue.reap(api.clock())
    _refused(api.client.post(f"/v1/leases/{claim['token']}/renew", json={"agent": "w1"}, headers=api.auth(secret)),
             409, "stale-lease")
    _refused(api.client.post("/v1/submissions", json={"items": [_signed(key, claim["token"], "w1")]},
                             headers=api.auth(secret)), 409, "stale-lease")
    other = api.token("worker")
    api.agent(other, "w2")
    again = _claim(api, other, "w2")[0]["claim"]
    assert again["task"] == "a" and again["token"] > claim["token"]


def test_forged_bundle_is_refused_and_the_lease_kept(api):
    api.run()
    secret = api.token("worker")
    api.agent(secret, "w1")
    claim = _claim(api, secret, "w1")[0]["claim"]
    impostor = SigningKey.generate()
    body = _refused(api.client.post("/v1/submissions", json={"items": [_signed(impostor, claim["token"], "w1")]},
                                    headers=api.auth(secret)), 422, "forged-bundle")
    assert body["results"][0]["ok"] is False
    # A tampered bundle under the right key id fails the signature check too.
    key = api.agent(secret, "w1")
    item = _signed(key, claim["token"], "w1")
    item["bundle"] = base64.b64encode(b'{"x":2}').decode()
    _refused(api.client.post("/v1/submissions", json={"items": [item]}, headers=api.auth(secret)),
             422, "forged-bundle")
    # The lease is still the agent's: refusing the bundle changed nothing.
    r = api.client.post(f"/v1/leases/{claim['token']}/renew", json={"agent": "w1"}, headers=api.auth(secret))
    assert r.status_code == 200, r.text


def test_self_verification_is_403_even_through_a_second_agent_of_the_token(api, tmp_path):
    run_id = api.run(verify=1)
    secret = api.token("worker", "verifier")
    assert api.remote(secret, "w1", tmp_path, roles=["worker"]).run().accepted == 1
    assert api.queue.scoreboard(run_id)["tasks"]["a"]["state"] == "provisional"
    # The API never hands the token's other agents the verify item of its own work...
    api.agent(secret, "w2")
    assert _claim(api, secret, "w2", roles=["verifier"]) == []
    # ...and a verdict on it is refused even when the lease was obtained otherwise.
    verify = api.queue.claim("w3", ["verifier"], api.clock(), 30.0)
    assert verify and verify[0].kind == "verify" and verify[0].producer == "w1"
    api.agent(secret, "w3")
    verdict = {"token": verify[0].token, "agent": "w3", "kind": "verify", "approve": True, "reason": "ok"}
    _refused(api.client.post("/v1/verdicts", json=verdict, headers=api.auth(secret)), 403, "self-verification")
    assert api.queue.scoreboard(run_id)["tasks"]["a"]["state"] == "provisional"
    api.queue.fail(verify[0].token, "w3", api.clock(), "handing back")
    # A verifier of another token may verify it, and that commits the task.
    other = api.token("verifier")
    assert api.remote(other, "v9", tmp_path).run().accepted == 1
    assert api.queue.scoreboard(run_id)["tasks"]["a"]["state"] == "committed"


def test_a_token_may_not_submit_for_a_lease_of_another_kind(api):
    api.run()
    secret = api.token("worker")
    api.agent(secret, "w1")
    claim = _claim(api, secret, "w1")[0]["claim"]
    verdict = {"token": claim["token"], "agent": "w1", "kind": "verify", "approve": True}
    _refused(api.client.post("/v1/verdicts", json=verdict, headers=api.auth(secret)), 422, "wrong-kind")


# ------------------------------------------------------------------ operator actions

def test_agent_tokens_cannot_flag_clear_or_apply_policies_operators_can(api):
    agent = api.token("worker", "verifier")
    operator = api.token(operator=True)
    policy = {"policy": {"policy": "hold-degraded", "rules": [{"when": {"status": "degraded"},
                                                               "then": ["pause"]}]}}
    for path, body in [("/v1/assets/flag", {"asset": "lib:numpy@1.26", "reason": "bad build"}),
                       ("/v1/assets/clear", {"asset": "lib:numpy@1.26"}),
                       ("/v1/policies", policy)]:
        _refused(api.client.post(path, json=body, headers=api.auth(agent)), 403, "operator-only")
    assert api.store.version_records() == []
    r = api.client.post("/v1/assets/flag", json={"asset": "lib:numpy@1.26", "reason": "bad build"},
                        headers=api.auth(operator))
    assert r.status_code == 200, r.text
    assert r.json()["transitions"][0]["to"] == "suspect"
    audit = api.client.get("/v1/audit", params={"subject": "lib:numpy"}, headers=api.auth(agent)).json()
    assert audit[-1]["actor"].startswith("token:") and audit[-1]["action"] == "flag"
    r = api.client.post("/v1/assets/clear", json={"asset": "lib:numpy@1.26", "reason": "rebuilt"},
                        headers=api.auth(operator))
    assert r.status_code == 200 and r.json()["transitions"][0]["to"] == "trusted"


# ------------------------------------------------------------------ limits and input

def test_oversized_body_is_413_by_header_and_by_stream(api):
    secret = api.token("worker")
    big = b"x" * (300 << 10)
    _refused(api.client.post("/v1/claims", content=big, headers={**api.auth(secret),
                                                                "content-type": "application/json"}),
             413, "too-large")

    def chunks():
        for _ in range(30):
            yield b"x" * (16 << 10)

    _refused(api.client.put("/v1/artifacts/" + "0" * 64, content=chunks(), headers=api.auth(secret)),
             413, "too-large")


def test_artifact_upload_checks_the_digest(api):
    import hashlib

    secret = api.token("worker")
    data = b"some bytes"
    sha = hashlib.sha256(data).hexdigest()
    _refused(api.client.put(f"/v1/artifacts/{'1' * 64}", content=data, headers=api.auth(secret)),
             422, "digest-mismatch")
    assert not api.store.artifacts.exists("1" * 64)
    missing = api.client.post("/v1/artifacts/missing", json={"sha256": [sha]}, headers=api.auth(secret)).json()
    assert missing == {"missing": [sha]}
    assert api.client.put(f"/v1/artifacts/{sha}", content=data, headers=api.auth(secret)).status_code == 200
    operator = api.token(operator=True)
    assert api.client.get(f"/v1/artifacts/{sha}", headers=api.auth(operator)).content == data
    assert api.client.post("/v1/artifacts/missing", json={"sha256": [sha]},
                           headers=api.auth(secret)).json() == {"missing": []}


def _run_remotely(api, tmp_path, workflow: str, scope: str) -> tuple[str, str]:
    """Run a one-task workflow through a remote agent of a token scoped to ``scope``;
    returns the run id and the sha256 of the output its checkpoint records."""
    run_id = api.run(workflow)
    agent = api.remote(api.token("worker", scope=scope), f"w-{workflow}", tmp_path / workflow)
    stats = agent.run()
    assert stats.accepted == 1, stats.errors
    (ck,) = api.store.list_checkpoints(run_id)
    (out,) = ck.outputs
    return run_id, out.sha256


def test_agent_tokens_download_only_artifacts_of_runs_in_their_scope(api, tmp_path):
    _, sha = _run_remotely(api, tmp_path, "wf-in", "workflow:wf-in")
    expected = api.store.artifacts.get_bytes(sha)
    inside = api.token("worker", scope="workflow:wf-in")
    assert api.client.get(f"/v1/artifacts/{sha}", headers=api.auth(inside)).content == expected
    # An unscoped agent token covers every run; an operator token every artifact.
    assert api.client.get(f"/v1/artifacts/{sha}", headers=api.auth(api.token("worker"))).content == expected
    outside = api.token("worker", scope="workflow:wf-out")
    body = _refused(api.client.get(f"/v1/artifacts/{sha}", headers=api.auth(outside)), 403, "out-of-scope")
    assert sha in body["detail"] and "workflow:wf-out" in body["detail"]
    campaign = api.token("worker", scope="campaign:wf-out")
    _refused(api.client.get(f"/v1/artifacts/{sha}", headers=api.auth(campaign)), 403, "out-of-scope")


def test_artifacts_of_no_run_are_refused_to_agents_whether_or_not_they_exist(api, tmp_path):
    import hashlib

    _run_remotely(api, tmp_path, "wf-in", "workflow:wf-in")
    agent, operator = api.token("worker"), api.token(operator=True)
    data = b"uploaded, never part of a checkpoint"
    sha = hashlib.sha256(data).hexdigest()
    assert api.client.put(f"/v1/artifacts/{sha}", content=data, headers=api.auth(agent)).status_code == 200
    _refused(api.client.get(f"/v1/artifacts/{sha}", headers=api.auth(agent)), 403, "out-of-scope")
    assert api.client.get(f"/v1/artifacts/{sha}", headers=api.auth(operator)).content == data
    # An unknown hash reads the same as a forbidden one to an agent: no probing for what the server holds.
    _refused(api.client.get(f"/v1/artifacts/{'0' * 64}", headers=api.auth(agent)), 403, "out-of-scope")
    _refused(api.client.get(f"/v1/artifacts/{'0' * 64}", headers=api.auth(operator)), 404)


def test_a_verifier_downloads_the_outputs_it_judges(api, tmp_path):
    run_id = api.run("wf-v", verify=1)
    worker = api.remote(api.token("worker", scope="workflow:wf-v"), "w-v", tmp_path / "w")
    assert worker.run().accepted == 1
    verifier = api.remote(api.token("verifier", scope="workflow:wf-v"), "v-v", tmp_path / "v")
    stats = verifier.run()
    assert (stats.verified, stats.accepted) == (1, 1), stats.errors
    assert api.queue.scoreboard(run_id)["tasks"]["a"]["state"] == "committed"


def test_malformed_input_is_422_with_the_field_named(api):
    secret = api.token("worker")
    body = _refused(api.client.post("/v1/claims", json={"agent": "w1", "limit": 0}, headers=api.auth(secret)),
                    422, "invalid-request")
    assert "limit" in body["detail"]


def test_metrics_count_requests_claims_and_rejections(api):
    api.run()
    secret = api.token("worker")
    api.agent(secret, "w1")
    _claim(api, secret, "w1")
    api.client.get("/v1/runs")
    text = api.client.get("/metrics", headers=api.auth(secret)).text
    assert 'headwater_claims_total{kind="run"} 1.0' in text
    assert 'headwater_rejections_total{reason="unauthenticated"} 1.0' in text
    assert 'headwater_http_requests_total{method="POST",route="/v1/claims",status="200"} 1.0' in text


def test_one_refused_result_in_a_batch_leaves_the_others_accepted(api, tmp_path):
    from headwater.runtime.shared import WorkContext, execute

    runs = [api.run(), api.run()]
    secret = api.token("worker")
    agent = api.remote(secret, "w1", tmp_path)
    agent.client.register("w1", agent.key.public_hex)
    items = agent.client.claim("w1", ["worker"], 10, 30.0)
    assert len(items) == 2
    contexts = [WorkContext.from_json(i["context"]) for i in items]
    subs = [execute(ctx, agent.workflow_for(ctx), "w1", agent.cache, agent.key) for ctx in contexts]
    subs[1].signature = SigningKey.generate().sign(subs[1].bundle)
    agent.upload_outputs(subs)
    results = agent.client.submit([s.to_json() for s in subs])
    assert [(r["ok"], r["error"]) for r in results] == [(True, None), (False, "forged-bundle")]
    states = {r: api.queue.scoreboard(r)["tasks"]["a"]["state"] for r in runs}
    assert sorted(states.values()) == ["committed", "leased"]
    committed = [r for r, s in states.items() if s == "committed"][0]
    assert [c.id for c in api.store.list_checkpoints(committed)] == [results[0]["checkpoint"]]


def test_submitting_for_a_lease_of_a_role_the_token_lacks_is_403(api):
    run_id = api.run()
    secret = api.token("verifier")
    api.agent(secret, "v1")
    lease = api.queue.claim("v1", ["worker"], api.clock(), 30.0)[0]
    body = {"token": lease.token, "agent": "v1", "kind": "run", "error": "gave up"}
    _refused(api.client.post("/v1/submissions", json={"items": [body]}, headers=api.auth(secret)), 403, "wrong-role")
    assert api.queue.scoreboard(run_id)["tasks"]["a"]["state"] == "leased"


def test_signatures_checked_in_a_worker_process_still_refuse_a_forged_bundle(api, tmp_path):
    from fastapi.testclient import TestClient

    from headwater.runtime.remote import ApiClient
    from headwater.runtime.shared import WorkContext, execute
    from headwater.server import create_app

    runs = [api.run() for _ in range(9)]
    secret = api.token("worker")
    with TestClient(create_app(api.store, clock=api.clock, verify_workers=1)) as client:
        agent = api.remote(secret, "w1", tmp_path)
        agent.client = ApiClient("http://testserver", secret, http=client)
        agent.client.register("w1", agent.key.public_hex)
        items = agent.client.claim("w1", ["worker"], 20, 30.0)
        assert len(items) == 9  # over the batch size checked in the server's own thread
        contexts = [WorkContext.from_json(i["context"]) for i in items]
        subs = [execute(ctx, agent.workflow_for(ctx), "w1", agent.cache, agent.key) for ctx in contexts]
        subs[4].signature = SigningKey.generate().sign(subs[4].bundle)
        agent.upload_outputs(subs)
        results = agent.client.submit([s.to_json() for s in subs])
    assert [r["error"] for r in results] == [None] * 4 + ["forged-bundle"] + [None] * 4
    states = sorted(api.queue.scoreboard(r)["tasks"]["a"]["state"] for r in runs)
    assert states == ["committed"] * 8 + ["leased"]
