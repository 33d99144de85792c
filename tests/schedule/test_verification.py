"""Verification quorum, refutation and the flush of work built on refuted attempts."""

from __future__ import annotations

from headwater.schedule import Cancel, Commit, Fail, Requeue, Scheduler, Squash, State

from .helpers import R, audit, kinds, of, take, verify_all


def provisional(s: Scheduler, task: str, agent: str = "p", now: float = 0.0):
    """Claim and finish ``task`` (declared with ``R``) as ``agent``; return its run lease."""
    lease = take(s, task, agent, now)
    s.finished(lease.token, now)
    return lease


def test_quorum_of_two_needs_two_distinct_agents_other_than_the_producer():
    s = Scheduler([R("a", verify=2)])
    provisional(s, "a", "p")
    assert s.state_of("a") is State.PROVISIONAL
    assert verify_all(s, "p") == {}  # never the producer
    v1 = verify_all(s, "v1")["a"]
    assert (v1.kind, v1.attempt) == ("verify", 1)
    assert verify_all(s, "v1") == {}  # never twice to the same agent
    v2 = verify_all(s, "v2")["a"]
    assert verify_all(s, "v3") == {}  # two leases cover the two approvals needed
    assert s.verdict(v1.token, 1.0, True) == []
    board = s.scoreboard()["a"]
    assert (board.approvals, board.verifying, board.required) == (1, 1, 2)
    assert verify_all(s, "v1") == {}  # voted already
    out = s.verdict(v2.token, 2.0, True)
    assert out[0] == Commit("a", 1)
    assert s.state_of("a") is State.COMMITTED
    assert s.counters["approvals"] == 2 and s.counters["verified"] == 1
    audit(s)


def test_two_rejections_refute_one_does_not():
    s = Scheduler([R("a", verify=2, reject=2)])
    provisional(s, "a", "p")
    v1, v2 = verify_all(s, "v1")["a"], verify_all(s, "v2")["a"]
    assert s.verdict(v1.token, 1.0, False, "wrong sign") == []
    assert s.state_of("a") is State.PROVISIONAL
    assert s.scoreboard()["a"].rejections == 1
    v3 = verify_all(s, "v3")["a"]  # a replacement verifier is needed
    out = s.verdict(v2.token, 2.0, False, "off by one")
    assert out == [Cancel("v3", "a", 1, v3.token), Requeue("a", 2, 2.0, "attempt 1 refuted: off by one")]
    assert s.attempt_state("a", 1) is State.REFUTED
    assert (s.state_of("a"), s.attempt_of("a")) == (State.READY, 2)
    assert s.counters["refuted"] == 1 and s.counters["rejections"] == 2
    assert s.verdict(v3.token, 3.0, True) == []  # revoked
    audit(s)


def test_refutation_squashes_every_descendant_built_on_it():
    s = Scheduler([R("a", verify=1), R("b", "a"), R("c", "b", verify=1), R("d", "c"), R("e")], speculate=3)
    provisional(s, "a", "p")
    b = take(s, "b", "p", 1.0)
    assert b.speculative == (("a", 1),)
    s.finished(b.token, 1.0)
    assert s.state_of("b") is State.VERIFIED  # verify=0: verified, waiting for a
    c = provisional(s, "c", "q", 2.0)
    assert c.speculative == (("b", 1),)
    d = take(s, "d", "r", 3.0)
    vs = verify_all(s, "v", 3.0)
    cv, av = vs["c"], vs["a"]
    out = s.verdict(av.token, 4.0, False, "bad")
    flushed = "built on 'a' attempt 1, which was refuted"
    assert out == [
        Requeue("a", 2, 4.0, "attempt 1 refuted: bad"),
        Squash("b", 1, flushed),
        Cancel("v", "c", 1, cv.token),
        Squash("c", 1, flushed),
        Cancel("r", "d", 1, d.token),
        Squash("d", 1, flushed),
        Requeue("b", 2, 4.0, flushed),
        Requeue("c", 2, 4.0, flushed),
        Requeue("d", 2, 4.0, flushed),
    ]
    assert [s.attempt_state(n, 1) for n in "bcd"] == [State.SQUASHED] * 3
    assert [s.state_of(n) for n in "abcd"] == [State.READY, State.PENDING, State.PENDING, State.PENDING]
    assert s.state_of("e") is State.READY
    assert s.finished(d.token, 5.0) == []  # the cancelled agent's late result
    assert s.counters["squashed"] == 3
    audit(s)


def test_verified_descendants_commit_in_a_cascade_when_the_root_is_approved():
    s = Scheduler([R("a", verify=1), R("b", "a", verify=1), R("c", "b")], speculate=2)
    provisional(s, "a", "p")
    provisional(s, "b", "p", 1.0)
    provisional(s, "c", "p", 2.0)
    vs = verify_all(s, "v", 3.0)
    assert s.verdict(vs["b"].token, 3.0, True) == []
    assert [s.state_of(n) for n in "abc"] == [State.PROVISIONAL, State.VERIFIED, State.VERIFIED]
    out = s.verdict(vs["a"].token, 4.0, True)
    assert kinds(out) == ["Commit", "Commit", "Commit", "RunFinished"]
    assert [a.task for a in of(out, Commit)] == ["a", "b", "c"]
    audit(s)


def test_quorum_reached_cancels_the_other_verify_leases():
    s = Scheduler([R("a", verify=1, reject=1)])
    provisional(s, "a", "p")
    v1 = verify_all(s, "v1")["a"]
    assert verify_all(s, "v2") == {}
    assert s.expire(60.0) == [Cancel("v1", "a", 1, v1.token)]
    v2 = verify_all(s, "v2", 60.0)["a"]
    v1b = verify_all(s, "v1", 60.0)  # an expired verifier has not voted and may come back
    assert v1b == {}  # ... but only while the attempt still needs a verifier
    assert s.verdict(v2.token, 61.0, True)[0] == Commit("a", 1)
    assert s.verdict(v1.token, 61.0, True) == []


def test_a_declining_verifier_is_not_asked_again():
    s = Scheduler([R("a", verify=1)])
    provisional(s, "a", "p")
    v = verify_all(s, "v")["a"]
    assert s.failed(v.token, 1.0, "cannot verify here") == []
    assert s.state_of("a") is State.PROVISIONAL
    assert verify_all(s, "v") == {}
    assert "a" in verify_all(s, "w")
    audit(s)


def test_verifier_roles_filter_verification_claims():
    s = Scheduler([R("a", verify=1, verifier_role="referee"), R("b", verify=1)])
    provisional(s, "a", "p")
    provisional(s, "b", "p")
    assert set(verify_all(s, "v", roles=("referee",))) == {"a"}
    assert set(verify_all(s, "v", roles=("verifier", "referee"))) == {"b"}


def test_verification_is_offered_best_first_and_skips_own_work_cheaply():
    s = Scheduler([R("low", verify=1), R("high", verify=1, priority=3), R("other", verify=1)])
    provisional(s, "low", "p")
    provisional(s, "high", "p")
    provisional(s, "other", "q")
    assert [v.task for v in s.claim_verification("q", ["verifier"], 0.0, limit=3)] == ["high", "low"]
    assert [v.task for v in s.claim_verification("p", ["verifier"], 0.0, limit=3)] == ["other"]


def test_refutations_have_their_own_budget():
    s = Scheduler([R("a", verify=1), R("b", "a")], max_refutations=1)
    provisional(s, "a", "p")
    out = s.verdict(verify_all(s, "v")["a"].token, 1.0, False, "no")
    assert out == [Requeue("a", 2, 1.0, "attempt 1 refuted: no")]
    provisional(s, "a", "p", 2.0)
    out = s.verdict(verify_all(s, "v", 2.0)["a"].token, 3.0, False, "still no")
    assert out[:2] == [Fail("a", 2, "refuted 2 times; last attempt 2 refuted: still no"),
                       Fail("b", 1, "input 'a' failed")]
    assert s.status == "failed"
    audit(s)
