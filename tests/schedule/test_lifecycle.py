"""Claims, results, retries, leases and fencing on runs without verification."""

from __future__ import annotations

import pytest

from headwater.errors import RunError
from headwater.schedule import (
    Cancel,
    Commit,
    Fail,
    Requeue,
    RunFinished,
    Scheduler,
    Squash,
    State,
)

from .helpers import T, audit, claim_all, kinds, of


def test_chain_runs_in_order_and_finishes_once():
    s = Scheduler([T("a"), T("b", "a"), T("c", "b")])
    assert [s.state_of(n) for n in "abc"] == [State.READY, State.PENDING, State.PENDING]
    (lease,) = s.claim("w", ["worker"], 0.0, limit=5)
    assert (lease.task, lease.attempt, lease.kind, lease.speculative, lease.expires) == ("a", 1, "run", (), 60.0)
    assert s.state_of("a") is State.LEASED
    assert s.claim("w", ["worker"], 0.0) == []
    assert s.finished(lease.token, 1.0) == [Commit("a", 1)]
    assert s.state_of("b") is State.READY
    (lease,) = s.claim("w", ["worker"], 1.0)
    assert s.finished(lease.token, 2.0) == [Commit("b", 1)]
    (lease,) = s.claim("w", ["worker"], 2.0)
    assert s.status == "running" and not s.done
    assert s.finished(lease.token, 3.0) == [Commit("c", 1), RunFinished("succeeded")]
    assert s.done and s.status == "succeeded"
    assert s.expire(100.0) == []
    audit(s)


def test_diamond_join_waits_for_both_sides():
    s = Scheduler([T("a"), T("b", "a"), T("c", "a"), T("d", "b", "c")])
    s.finished(claim_all(s)["a"].token, 0.0)
    leases = claim_all(s)
    assert set(leases) == {"b", "c"}
    s.finished(leases["b"].token, 1.0)
    assert s.state_of("d") is State.PENDING
    s.finished(leases["c"].token, 1.0)
    assert s.state_of("d") is State.READY
    audit(s)


def test_roles_filter_claims():
    s = Scheduler([T("cpu1"), T("gpu1", role="gpu"), T("cpu2")])
    assert [lease.task for lease in s.claim("g", ["gpu"], 0.0, limit=5)] == ["gpu1"]
    assert s.claim("x", ["nobody"], 0.0, limit=5) == []
    assert [lease.task for lease in s.claim("c", ("worker", "gpu"), 0.0, limit=5)] == ["cpu1", "cpu2"]
    assert s.claim("c", ["worker"], 0.0, limit=0) == []


def test_order_is_priority_then_critical_path_then_declaration():
    s = Scheduler([
        T("short"),
        T("long", expected_duration=10.0),
        T("urgent", priority=5),
        T("feeder"),
        T("tail", "feeder", expected_duration=3.0),
        T("also_short"),
    ])
    order = [lease.task for lease in s.claim("w", ["worker"], 0.0, limit=10)]
    assert order == ["urgent", "long", "feeder", "short", "also_short"]


def test_order_across_roles_merges_the_queues():
    s = Scheduler([T("a", role="r1"), T("b", role="r2", priority=1), T("c", role="r1", priority=2)])
    assert [lease.task for lease in s.claim("w", ["r1", "r2"], 0.0, limit=3)] == ["c", "b", "a"]


def test_retries_back_off_exponentially_with_a_cap_then_fail():
    s = Scheduler([T("a", retries=3), T("b", "a"), T("c")], backoff=(1.0, 3.0, 5.0))
    lease = claim_all(s)["a"]
    out = s.failed(lease.token, 10.0, "boom")
    assert out == [Requeue("a", 2, 11.0, "attempt 1 failed: boom")]
    assert s.state_of("a") is State.READY and s.attempt_of("a") == 2
    assert s.attempt_state("a", 1) is State.FAILED
    assert s.next_deadline() == 11.0
    assert [lease.task for lease in s.claim("w", ["worker"], 10.5, limit=5)] == []
    assert [lease.task for lease in s.claim("w", ["worker"], 11.0, limit=5)] == ["a"]
    audit(s)


def test_retry_is_not_claimable_before_not_before():
    s = Scheduler([T("a", retries=3)], backoff=(1.0, 3.0, 5.0))
    times = []
    now = 0.0
    for _ in range(3):
        (lease,) = s.claim("w", ["worker"], now)
        (req,) = s.failed(lease.token, now, "boom")
        times.append(req.not_before - now)
        assert s.claim("w", ["worker"], req.not_before - 0.01) == []
        assert s.next_deadline() == req.not_before
        now = req.not_before
    assert times == [1.0, 3.0, 5.0]
    (lease,) = s.claim("w", ["worker"], now)
    assert lease.attempt == 4
    out = s.failed(lease.token, now, "still broken")
    assert out == [Fail("a", 4, "still broken"), RunFinished("failed")]
    assert s.state_of("a") is State.FAILED and s.status == "failed"
    assert s.counters["failures"] == 4 and s.counters["requeued"] == 3
    audit(s)


def test_failure_propagates_to_dependents_and_other_work_goes_on():
    s = Scheduler([T("a"), T("b", "a"), T("c", "b"), T("x"), T("y", "x", "c")])
    leases = claim_all(s)
    out = s.failed(leases["a"].token, 1.0, "boom")
    assert out == [
        Fail("a", 1, "boom"),
        Fail("b", 1, "input 'a' failed"),
        Fail("c", 1, "input 'b' failed"),
        Fail("y", 1, "input 'c' failed"),
    ]
    assert s.state_of("x") is State.LEASED
    out = s.finished(leases["x"].token, 2.0)
    assert out == [Commit("x", 1), RunFinished("failed")]
    assert s.status == "failed"
    audit(s)


def test_expired_lease_is_requeued_and_the_late_result_is_fenced_off():
    s = Scheduler([T("a"), T("b", "a")], lease_ttl=10.0)
    (old,) = s.claim("slow", ["worker"], 0.0)
    assert s.next_deadline() == 10.0
    assert s.expire(9.99) == []
    out = s.expire(10.0)
    assert out == [
        Cancel("slow", "a", 1, old.token),
        Squash("a", 1, "its lease expired"),
        Requeue("a", 2, 10.0, "attempt 1: its lease expired"),
    ]
    assert s.attempt_state("a", 1) is State.SQUASHED
    (new,) = s.claim("fast", ["worker"], 11.0)
    assert (new.attempt, new.token > old.token) == (2, True)
    assert s.finished(old.token, 12.0) == []
    assert s.counters["stale_results"] == 1
    assert s.renew(old.token, 12.0) is False
    assert s.finished(new.token, 12.0) == [Commit("a", 2)]
    assert s.finished(new.token, 12.0) == []
    assert s.counters["stale_results"] == 2 and s.counters["committed"] == 1
    audit(s)


def test_renew_moves_the_expiry():
    s = Scheduler([T("a")], lease_ttl=10.0)
    (lease,) = s.claim("w", ["worker"], 0.0)
    assert s.renew(lease.token, 8.0) is True
    assert s.next_deadline() == 18.0
    assert s.expire(10.0) == []
    assert s.state_of("a") is State.LEASED
    assert kinds(s.expire(18.0)) == ["Cancel", "Squash", "Requeue"]


def test_a_late_report_before_expire_runs_is_still_accepted():
    s = Scheduler([T("a")], lease_ttl=10.0)
    (lease,) = s.claim("w", ["worker"], 0.0)
    assert s.finished(lease.token, 25.0) == [Commit("a", 1), RunFinished("succeeded")]


def test_agent_lost_frees_its_leases_at_once():
    s = Scheduler([T("a"), T("b"), T("c", role="r", verify=1)])
    leases = claim_all(s, "dead")
    assert claim_all(s, "alive") == {}
    (produce,) = s.claim("alive", ["r"], 0.0)
    s.finished(produce.token, 0.0)
    (vlease,) = s.claim_verification("dead", ["verifier"], 0.0)
    out = s.agent_lost("dead", 1.0)
    assert of(out, Cancel) == [
        Cancel("dead", "a", 1, leases["a"].token),
        Cancel("dead", "b", 1, leases["b"].token),
        Cancel("dead", "c", 1, vlease.token),
    ]
    assert of(out, Requeue) == [Requeue("a", 2, 1.0, "attempt 1: its agent 'dead' was lost"),
                                Requeue("b", 2, 1.0, "attempt 1: its agent 'dead' was lost")]
    assert s.counters["lost"] == 3
    assert set(claim_all(s, "alive", 1.0)) == {"a", "b"}
    assert s.state_of("c") is State.PROVISIONAL
    assert s.scoreboard()["c"].verifying == 0
    assert s.agent_lost("nobody", 1.0) == []
    audit(s)


def test_too_many_lost_leases_fail_the_task():
    s = Scheduler([T("a")], max_lost=1, lease_ttl=1.0)
    s.claim("w", ["worker"], 0.0)
    assert kinds(s.expire(1.0)) == ["Cancel", "Squash", "Requeue"]
    s.claim("w", ["worker"], 1.0)
    out = s.expire(2.0)
    assert kinds(out) == ["Cancel", "Squash", "Fail", "RunFinished"]
    assert out[2].attempt == 2 and "2 lost leases" in out[2].error
    assert s.state_of("a") is State.FAILED


def test_next_deadline_tracks_leases_and_retries():
    s = Scheduler([T("a", retries=1), T("b")], lease_ttl=30.0, backoff=(5.0, 2.0, 60.0))
    assert s.next_deadline() is None
    leases = claim_all(s)
    assert s.next_deadline() == 30.0
    s.failed(leases["a"].token, 2.0, "x")
    assert s.next_deadline() == 7.0
    s.finished(leases["b"].token, 3.0)
    assert s.next_deadline() == 7.0
    (lease,) = s.claim("w", ["worker"], 7.0)
    assert s.next_deadline() == 37.0
    s.finished(lease.token, 8.0)
    assert s.next_deadline() is None


def test_stragglers_are_leases_running_past_their_expected_duration():
    s = Scheduler([T("quick", expected_duration=1.0), T("slow", expected_duration=100.0)])
    leases = claim_all(s)
    s.renew(leases["quick"].token, 2.0)
    assert [(lease.task, lease.expires) for lease in s.stragglers(5.0)] == [("quick", 62.0)]
    assert s.stragglers(2.0) == []


def test_tokens_start_where_told():
    s = Scheduler([T("a")], first_token=1000)
    assert s.claim("w", ["worker"], 0.0)[0].token == 1000


def test_unknown_task_queries_raise():
    s = Scheduler([T("a")])
    with pytest.raises(RunError) as err:
        s.state_of("zzz")
    assert err.value.task == "zzz"
    with pytest.raises(RunError):
        s.attempt_state("a", 7)


def test_reports_with_the_wrong_kind_of_token_are_stale():
    s = Scheduler([T("a", verify=1)])
    (run,) = s.claim("p", ["worker"], 0.0)
    assert s.verdict(run.token, 0.0, True) == []
    s.finished(run.token, 0.0)
    (ver,) = s.claim_verification("v", ["verifier"], 0.0)
    assert s.finished(ver.token, 0.0) == []
    assert s.counters["stale_results"] == 2
    assert s.state_of("a") is State.PROVISIONAL


def test_a_lone_role_string_is_one_role():
    s = Scheduler([T("a", role="worker")])
    assert [lease.task for lease in s.claim("w", "worker", 0.0)] == ["a"]


def test_same_calls_give_the_same_answers():
    def script():
        s = Scheduler([T("a", verify=1), T("b", "a", retries=1), T("c", "a"), T("d", "b", "c", verify=1)],
                      speculate=2, lease_ttl=5.0)
        log = []
        now = 0.0
        for step in range(40):
            now += 1.0
            for agent in ("x", "y", "z"):
                for lease in s.claim(agent, ["worker"], now):
                    log.append(lease)
                    log.extend(s.failed(lease.token, now, "e") if step % 7 == 3 else s.finished(lease.token, now))
                for lease in s.claim_verification(agent, ["verifier"], now):
                    log.append(lease)
                    log.extend(s.verdict(lease.token, now, step % 5 != 2))
            log.extend(s.expire(now))
            log.append(s.scoreboard().version)
        return log

    assert script() == script()


def test_claim_task_leases_that_task_only_when_it_is_ready_and_of_the_role():
    from headwater.schedule import Scheduler, State

    s = Scheduler([T("a"), T("b", "a"), T("c", role="gpu")])
    assert s.claim_task("x", ["worker"], "b", 0.0) is None  # not ready yet
    assert s.claim_task("x", ["worker"], "c", 0.0) is None  # not this agent's role
    lease = s.claim_task("x", ["worker"], "a", 0.0)
    assert lease.task == "a" and s.state_of("a") is State.LEASED
    assert s.claim_task("y", ["worker"], "a", 0.0) is None  # already leased
    s.finished(lease.token, 1.0)
    assert s.claim("x", ["worker"], 1.0)[0].task == "b"
