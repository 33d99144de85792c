"""Contract tests of the shared work queue, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from headwater.schedule import TaskDef
from headwater.store import open_store
from headwater.store.queue import Claim, StaleLease, WorkQueue
from tests.store import factories as f

LEASE = 10.0


def enqueue(store, defs, run_id="run-0001", now=0.0, **kw) -> WorkQueue:
    store.create_run(f.run(run_id))
    queue = WorkQueue(store)
    assert queue.enqueue_run(run_id, defs, now, **kw) == len(defs)
    return queue


def states(queue, run_id="run-0001") -> dict[str, str]:
    return {name: row["state"] for name, row in queue.scoreboard(run_id)["tasks"].items()}


def run_through(queue, agent, task, now=1.0, **kw) -> Claim:
    (c,) = queue.claim(agent, ["worker"], now, LEASE)
    assert (c.task, c.kind) == (task, "run")
    queue.complete(c.token, agent, now, **kw)
    return c


def test_roots_ready_and_roles_respected(store):
    queue = enqueue(store, [TaskDef("a", role="sim"), TaskDef("b", role="stats"), TaskDef("c", deps=("a", "b"))])
    assert states(queue) == {"a": "ready", "b": "ready", "c": "pending"}
    assert queue.claim("x", ["other"], 1.0, LEASE) == []
    (c,) = queue.claim("x", ["stats"], 1.0, LEASE, limit=5)
    assert (c.task, c.role, c.kind, c.holder, c.lease_expiry) == ("b", "stats", "run", "x", 1.0 + LEASE)
    assert Claim.from_json(c.to_json()) == c
    assert queue.scoreboard("run-0001")["tasks"]["b"]["executing"] == 1


def test_dependents_wait_for_every_input_and_run_finishes(store):
    queue = enqueue(store, [TaskDef("a"), TaskDef("b"), TaskDef("c", deps=("a", "b"))])
    claims = queue.claim("x", ["worker"], 1.0, LEASE, limit=5)
    assert sorted(c.task for c in claims) == ["a", "b"]
    assert len({c.token for c in claims}) == 2
    queue.complete(claims[0].token, "x", 2.0)
    assert states(queue)["c"] == "pending"
    v = queue.version("run-0001")
    queue.complete(claims[1].token, "x", 2.0)
    assert queue.version("run-0001") > v
    assert not queue.finished("run-0001")
    run_through(queue, "y", "c", 3.0)
    assert queue.finished("run-0001")
    assert store.get_run("run-0001").status == "succeeded"
    assert set(states(queue).values()) == {"committed"}


def test_fencing_rejects_stale_and_foreign_tokens(store):
    queue = enqueue(store, [TaskDef("a")])
    (c,) = queue.claim("x", ["worker"], 1.0, LEASE)
    with pytest.raises(StaleLease):
        queue.complete(c.token, "intruder", 2.0)
    assert queue.renew(c.token, "x", 5.0, LEASE) == 5.0 + LEASE
    # Expired and reaped: the old holder is refused and the new one is not.
    assert [r.token for r in queue.reap(100.0)] == [c.token]
    assert states(queue)["a"] == "ready"
    with pytest.raises(StaleLease, match="reaped"):
        queue.renew(c.token, "x", 101.0, LEASE)
    (c2,) = queue.claim("y", ["worker"], 101.0, LEASE)
    assert c2.token > c.token and c2.attempt == c.attempt
    with pytest.raises(StaleLease, match="run-0001 task 'a'"):
        queue.complete(c.token, "x", 102.0)
    queue.complete(c2.token, "y", 102.0)
    with pytest.raises(StaleLease, match="already completed"):
        queue.complete(c2.token, "y", 103.0)
    with pytest.raises(StaleLease, match="no such lease was ever granted"):
        queue.complete(10_000, "y", 103.0)
    assert queue.finished("run-0001")


def test_reap_leaves_live_leases_alone(store):
    queue = enqueue(store, [TaskDef("a"), TaskDef("b")])
    a, b = queue.claim("x", ["worker"], 1.0, LEASE, limit=2)
    queue.renew(b.token, "x", 8.0, LEASE)
    assert [r.task for r in queue.reap(1.0 + LEASE + 1)] == [a.task]
    queue.complete(b.token, "x", 12.0)


def test_verify_quorum_distinct_verifiers_no_self_verification(store):
    queue = enqueue(store, [TaskDef("a", verify=2), TaskDef("b", deps=("a",))])
    run_through(queue, "p", "a")
    assert states(queue)["a"] == "provisional"
    assert queue.claim("p", ["verifier"], 2.0, LEASE, limit=5) == []  # the producer never judges
    (v1,) = queue.claim("v1", ["verifier"], 2.0, LEASE, limit=5)  # one item per verifier and attempt
    assert (v1.kind, v1.producer, v1.task) == ("verify", "p", "a")
    assert queue.claim("v1", ["verifier"], 2.0, LEASE, limit=5) == []
    queue.complete(v1.token, "v1", 3.0, approve=True)
    assert queue.claim("v1", ["verifier"], 3.0, LEASE) == []  # nor again after judging
    assert queue.scoreboard("run-0001")["tasks"]["a"]["approvals"] == 1
    assert states(queue)["a"] == "provisional" and states(queue)["b"] == "pending"
    (v2,) = queue.claim("v2", ["verifier"], 3.0, LEASE)
    queue.complete(v2.token, "v2", 4.0, approve=True)
    assert states(queue) == {"a": "committed", "b": "ready"}


def test_declining_verifier_is_replaced(store):
    queue = enqueue(store, [TaskDef("a", verify=1)])
    run_through(queue, "p", "a")
    (v,) = queue.claim("v1", ["verifier"], 2.0, LEASE)
    queue.fail(v.token, "v1", 2.5, "cannot judge")
    assert queue.claim("v1", ["verifier"], 3.0, LEASE) == []
    (v2,) = queue.claim("v2", ["verifier"], 3.0, LEASE)
    queue.complete(v2.token, "v2", 4.0, approve=True)
    assert queue.finished("run-0001")


def test_refutation_requeues_a_new_attempt_and_drops_other_verifiers(store):
    queue = enqueue(store, [TaskDef("a", verify=2)])
    run_through(queue, "p", "a")
    v1, = queue.claim("v1", ["verifier"], 2.0, LEASE)
    v2, = queue.claim("v2", ["verifier"], 2.0, LEASE)
    queue.complete(v1.token, "v1", 3.0, approve=False, reason="numbers off")
    with pytest.raises(StaleLease, match="already decided"):
        queue.complete(v2.token, "v2", 3.0, approve=True)
    board = queue.scoreboard("run-0001")["tasks"]["a"]
    assert (board["state"], board["attempt"], board["approvals"]) == ("ready", 2, 0)
    (r,) = queue.claim("p", ["worker"], 4.0, LEASE)
    assert r.attempt == 2
    queue.complete(r.token, "p", 5.0)
    (v,) = queue.claim("v1", ["verifier"], 6.0, LEASE)  # a new attempt may be judged by v1 again
    assert v.attempt == 2


def test_quorum_rule_and_verifier_role_come_from_the_task(store):
    queue = enqueue(store, [TaskDef("a", verify=3, reject=2, verifier_role="referee")])
    run_through(queue, "p", "a")
    assert queue.claim("v1", ["verifier"], 2.0, LEASE) == []
    v1, = queue.claim("v1", ["referee"], 2.0, LEASE)
    v2, = queue.claim("v2", ["referee"], 2.0, LEASE)
    assert queue.scoreboard("run-0001")["tasks"]["a"]["verifying"] == 2
    queue.complete(v1.token, "v1", 3.0, approve=False, reason="off by one")
    assert states(queue)["a"] == "provisional"  # one rejection of the two the rule needs
    queue.complete(v2.token, "v2", 3.0, approve=False, reason="off by one")
    board = queue.scoreboard("run-0001")["tasks"]["a"]
    assert (board["state"], board["attempt"], board["verifying"]) == ("ready", 2, 0)


@pytest.mark.postgres
def test_concurrent_verdicts_commit_once(pg_url, tmp_path):
    first = open_store(pg_url, root=tmp_path / "h")
    second = open_store(pg_url, root=tmp_path / "h")
    queue = enqueue(first, [TaskDef("a", verify=2), TaskDef("b", deps=("a",))])
    run_through(queue, "p", "a")
    v1, = queue.claim("v1", ["verifier"], 2.0, LEASE)
    v2, = queue.claim("v2", ["verifier"], 2.0, LEASE)
    start = threading.Barrier(2)
    queues = [queue, WorkQueue(second)]

    def judge(i, claim):
        start.wait()
        queues[i].complete(claim.token, claim.holder, 3.0, approve=True)

    threads = [threading.Thread(target=judge, args=(i, c)) for i, c in enumerate((v1, v2))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert states(queue) == {"a": "committed", "b": "ready"}
    assert [c.task for c in queue.claim("w", ["worker"], 4.0, LEASE, limit=5)] == ["b"]  # readied once
    second.close()
    first.close()


def test_refutation_budget_fails_the_task(store):
    queue = enqueue(store, [TaskDef("a", verify=1)], max_refutations=0)
    run_through(queue, "p", "a")
    (v,) = queue.claim("v", ["verifier"], 2.0, LEASE)
    queue.complete(v.token, "v", 3.0, approve=False, reason="wrong")
    assert states(queue) == {"a": "failed"}
    assert store.get_run("run-0001").status == "failed"


def test_retries_with_backoff_then_failure_cascades(store):
    queue = enqueue(store, [TaskDef("a", retries=1), TaskDef("b", deps=("a",))], backoff=(5.0, 2.0, 60.0))
    (c,) = queue.claim("x", ["worker"], 1.0, LEASE)
    queue.fail(c.token, "x", 1.0, "boom")
    assert queue.claim("x", ["worker"], 5.9, LEASE) == []  # backoff: 5 s after the first failure
    assert queue.next_ready_at(["worker"]) == 6.0
    (c2,) = queue.claim("x", ["worker"], 6.0, LEASE)
    assert c2.attempt == 2
    with pytest.raises(StaleLease):
        queue.fail(c.token, "x", 6.0, "late")
    queue.fail(c2.token, "x", 7.0, "boom again")
    assert states(queue) == {"a": "failed", "b": "failed"}
    assert queue.finished("run-0001") and store.get_run("run-0001").status == "failed"


def test_a_branching_task_that_names_no_branch_fails_its_attempt(store):
    queue = enqueue(store, [TaskDef("decide", branches=("left", "right")),
                            TaskDef("left", deps=("decide",)), TaskDef("right", deps=("decide",))])
    (c,) = queue.claim("x", ["worker"], 1.0, LEASE)
    queue.complete(c.token, "x", 1.0, branch="middle")
    assert states(queue) == {"decide": "failed", "left": "failed", "right": "failed"}
    with pytest.raises(StaleLease):
        queue.complete(c.token, "x", 1.0, branch="left")


def test_branch_skip(store):
    defs = [
        TaskDef("decide", branches=("left", "right")),
        TaskDef("left", deps=("decide",)),
        TaskDef("right", deps=("decide",)),
        TaskDef("after_right", deps=("right",)),
        TaskDef("join", deps=("left", "right")),
    ]
    queue = enqueue(store, defs)
    run_through(queue, "x", "decide", branch="left")
    assert states(queue) == {"decide": "committed", "left": "ready", "right": "skipped",
                             "after_right": "skipped", "join": "pending"}
    run_through(queue, "x", "left", 2.0)
    run_through(queue, "x", "join", 3.0)
    assert queue.finished("run-0001") and store.get_run("run-0001").status == "succeeded"


def test_wait_returns_on_change_and_on_timeout(store):
    queue = enqueue(store, [TaskDef("a")])
    v = queue.version("run-0001")
    assert queue.wait("run-0001", v, 0.05) == v
    (c,) = queue.claim("x", ["worker"], 1.0, LEASE)
    other = WorkQueue(store)
    got = {}
    waiter = threading.Thread(target=lambda: got.setdefault("v", other.wait("run-0001", v, 30.0)))
    waiter.start()
    queue.complete(c.token, "x", 2.0)
    waiter.join(30.0)
    assert got["v"] > v
    other.close()


def test_unknown_run_is_named(store):
    queue = WorkQueue(store)
    with pytest.raises(Exception, match="no-such-run"):
        queue.enqueue_run("no-such-run", [TaskDef("a")], 0.0)
    with pytest.raises(Exception, match="no-such-run"):
        queue.scoreboard("no-such-run")


@pytest.mark.postgres
def test_skip_locked_claims_never_hand_out_an_item_twice(pg_url, tmp_path):
    n = 60
    first = open_store(pg_url, root=tmp_path / "h")
    queue = enqueue(first, [TaskDef(f"t{i}") for i in range(n)])
    second = open_store(pg_url, root=tmp_path / "h")
    queues = [queue, WorkQueue(second)]
    got: list[list[Claim]] = [[], []]
    start = threading.Barrier(2)

    def claimer(i: int) -> None:
        start.wait()
        while True:
            batch = queues[i].claim(f"agent{i}", ["worker"], 1.0, LEASE, limit=3)
            if not batch:
                return
            got[i].extend(batch)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    tasks = [c.task for c in got[0] + got[1]]
    assert sorted(tasks) == sorted(f"t{i}" for i in range(n))  # every item once, none twice
    assert len({c.token for c in got[0] + got[1]}) == n
    second.close()
    first.close()


def test_a_batched_claim_leases_each_item_once_with_increasing_tokens(store):
    queue = enqueue(store, [TaskDef(f"t{i}") for i in range(5)])
    first = queue.claim("x", ["worker"], 1.0, LEASE, limit=3)
    second = queue.claim("y", ["worker"], 1.0, LEASE, limit=3)
    assert (len(first), len(second)) == (3, 2)
    tokens = [c.token for c in first + second]
    assert tokens == sorted(tokens) and len(set(tokens)) == 5
    assert sorted(c.task for c in first + second) == [f"t{i}" for i in range(5)]
    assert set(states(queue).values()) == {"leased"}
    assert queue.claim("z", ["worker"], 1.0, LEASE, limit=3) == []


def test_lease_lookup_by_fencing_token(store):
    queue = enqueue(store, [TaskDef("a"), TaskDef("b")])
    claims = queue.claim("x", ["worker"], 1.0, LEASE, limit=2)
    assert queue.leases([c.token for c in claims] + [10**9]) == {c.token: c for c in claims}
    assert queue.lease(claims[0].token) == claims[0]
    assert queue.lease(10**9) is None
    queue.complete(claims[0].token, "x", 2.0)
    done = queue.lease(claims[0].token)  # still found: whether it is current is decided on report
    assert (done.task, done.holder, done.lease_expiry) == (claims[0].task, "x", None)


def test_commit_many_readies_a_dependent_once_every_input_in_the_batch_is_in(store):
    queue = enqueue(store, [TaskDef("a"), TaskDef("b"), TaskDef("c", deps=("a", "b")), TaskDef("d", deps=("c",))])
    claims = queue.claim("x", ["worker"], 1.0, LEASE, limit=5)
    v = queue.version("run-0001")
    with store.transaction() as conn:
        items, tasks = queue.lock_items(conn, [(c.token, "x") for c in claims] + [(10**9, "x")])
        assert set(items) == {c.token for c in claims}
        seqs = queue.commit_many_in(conn, [(items[c.token], tasks[("run-0001", c.task)], "x", None, None)
                                           for c in claims], 2.0)
    assert sorted(seqs.values()) == [v + 1, v + 2]  # one version (checkpoint seq) per result
    assert queue.version("run-0001") == v + 2
    assert states(queue) == {"a": "committed", "b": "committed", "c": "ready", "d": "pending"}
    with pytest.raises(StaleLease, match="already completed"):
        queue.complete(claims[0].token, "x", 3.0)
    run_through(queue, "y", "c", 3.0)
    run_through(queue, "y", "d", 4.0)
    assert queue.finished("run-0001") and store.get_run("run-0001").status == "succeeded"


def test_commit_many_refuses_tasks_that_need_verification(store):
    queue = enqueue(store, [TaskDef("a", verify=1)])
    (c,) = queue.claim("x", ["worker"], 1.0, LEASE)
    with store.transaction() as conn:
        items, tasks = queue.lock_items(conn, [(c.token, "x")])
        with pytest.raises(ValueError, match="complete_in"):
            queue.commit_many_in(conn, [(items[c.token], tasks[("run-0001", "a")], "x", None, None)], 2.0)


def test_a_claim_takes_its_share_of_what_is_ready_and_claimable_says_whether_anything_is(store):
    queue = enqueue(store, [TaskDef(f"t{i}") for i in range(5)])
    assert queue.claimable(["worker"], 1.0) and not queue.claimable(["other"], 1.0)
    assert not queue.claimable(["worker"], 1.0, runs=[])
    first = queue.claim("x", ["worker"], 1.0, LEASE, limit=64, share=2)
    assert len(first) == 3  # half of the five ready, rounded up
    second = queue.claim("y", ["worker"], 1.0, LEASE, limit=64, share=1)
    assert len(second) == 2 and not {c.task for c in first} & {c.task for c in second}
    assert not queue.claimable(["worker"], 1.0)


def test_results_and_the_next_claim_share_one_transaction(store):
    queue = enqueue(store, [TaskDef("a"), TaskDef("b", deps=("a",))])
    (a,) = queue.claim("x", ["worker"], 1.0, LEASE)
    with store.transaction() as conn:
        items, tasks = queue.lock_items(conn, [(a.token, "x")])
        queue.commit_many_in(conn, [(items[a.token], tasks[("run-0001", "a")], "x", None, None)], 2.0)
        (b,) = queue.claim_in(conn, "x", ["worker"], 2.0, LEASE, limit=5)
    assert b.task == "b" and b.token > a.token
    assert states(queue) == {"a": "committed", "b": "leased"}
