"""Speculation depth: fixed limits, the adaptive rule, and failures on speculative inputs."""

from __future__ import annotations

import pytest

from headwater.schedule import Commit, Requeue, Scheduler, State
from headwater.schedule.depth import EVERY, MAX_DEPTH, SpeculationDepth

from .helpers import R, audit, take, verify_all


def chain(n: int, **kw):
    names = [f"t{i}" for i in range(n)]
    return names, [R(name, *names[i - 1:i], verify=1, **kw) for i, name in enumerate(names)]


def run_ahead(s: Scheduler, names, agent="p", now=0.0) -> list[str]:
    """Claim and finish down the chain as far as the depth allows; return what ran."""
    ran = []
    for name in names:
        leases = s.claim(agent, [name], now)
        if not leases:
            break
        s.finished(leases[0].token, now)
        ran.append(name)
    return ran


@pytest.mark.parametrize(("speculate", "expected"), [(0, 1), ("off", 1), (1, 2), (2, 3), (4, 5)])
def test_fixed_depth_bounds_how_far_an_agent_runs_ahead(speculate, expected):
    names, defs = chain(8)
    s = Scheduler(defs, speculate=speculate)
    assert len(run_ahead(s, names)) == expected
    assert s.state_of(names[expected]) is State.PENDING
    assert s.counters["speculative_claims"] == expected - 1
    audit(s)


def test_depth_two_leases_name_their_uncommitted_inputs_and_commits_unblock_more():
    names, defs = chain(5)
    s = Scheduler(defs, speculate=2)
    t0 = take(s, "t0", "p")
    assert t0.speculative == ()
    s.finished(t0.token, 0.0)
    t1 = take(s, "t1", "p")
    assert t1.speculative == (("t0", 1),)
    s.finished(t1.token, 0.0)
    t2 = take(s, "t2", "p")
    assert t2.speculative == (("t1", 1),)
    s.finished(t2.token, 0.0)
    assert s.claim("p", ["t3"], 0.0) == []
    assert s.verdict(verify_all(s, "v", roles=("verifier",))["t0"].token, 1.0, True) == [Commit("t0", 1)]
    assert s.state_of("t3") is State.READY
    assert take(s, "t3", "p").speculative == (("t2", 1),)
    audit(s)


def test_scoreboard_check_reports_pending_committed_and_flushed():
    names, defs = chain(3)
    s = Scheduler(defs, speculate=2)
    run_ahead(s, names[:2])
    lease = take(s, "t2", "p")
    board = s.scoreboard()
    assert board.check(lease.speculative) == "pending"
    vs = verify_all(s, "v")
    s.verdict(vs["t0"].token, 1.0, True)
    s.verdict(vs["t1"].token, 1.0, True)
    assert s.scoreboard().check(lease.speculative) == "committed"
    assert board.check(lease.speculative) == "pending"  # an old snapshot does not change

    names, defs = chain(3)
    s = Scheduler(defs, speculate=2)
    run_ahead(s, names[:2])
    lease = take(s, "t2", "p")
    s.verdict(verify_all(s, "v")["t1"].token, 1.0, False)
    assert s.scoreboard().check(lease.speculative) == "flushed"


def test_a_failure_on_speculative_inputs_is_not_charged_and_reruns_on_committed_inputs():
    s = Scheduler([R("a", verify=1), R("b", "a", retries=0)], speculate=1)
    s.finished(take(s, "a", "p").token, 0.0)
    b = take(s, "b", "p")
    out = s.failed(b.token, 1.0, "bad input?")
    assert out == [Requeue("b", 2, 1.0, "attempt 1 failed on uncommitted inputs (bad input?); "
                                        "running again on committed inputs")]
    assert s.state_of("b") is State.PENDING  # waits for a to commit, whatever the depth
    assert s.counters["speculative_failures"] == 1
    s.verdict(verify_all(s, "v")["a"].token, 2.0, True)
    b2 = take(s, "b", "p", 2.0)
    assert (b2.attempt, b2.speculative) == (2, ())
    assert [type(a).__name__ for a in s.failed(b2.token, 3.0, "really broken")] == ["Fail", "RunFinished"]
    audit(s)


def test_depth_controller_adapts_to_the_refutation_rate():
    d = SpeculationDepth("adaptive")
    assert d.adaptive and d.value == 2
    for _ in range(EVERY - 1):
        assert d.observe(False) is False
    assert d.observe(False) is True and d.value == 4
    for _ in range(EVERY):
        d.observe(False)
    assert d.value == MAX_DEPTH  # doubling: full depth after two clean streaks
    for _ in range(EVERY * 20):
        d.observe(False)
    assert d.value == MAX_DEPTH
    assert d.observe(True) is True and d.value == MAX_DEPTH // 2  # a refutation halves at once
    for _ in range(EVERY - 1):
        d.observe(False)
    assert d.observe(True) and d.value == MAX_DEPTH // 4  # the clean streak starts over
    d.observe(True)
    d.observe(True)
    assert d.value == 0 and d.observe(True) is False
    assert d.refutation_rate() == 5 / 20
    for _ in range(EVERY):
        d.observe(False)
    assert d.value == 1  # grows back after a clean streak
    for _ in range(EVERY):
        d.observe(False)
    assert d.value == 2


def test_fixed_depth_does_not_adapt():
    d = SpeculationDepth(3)
    assert not d.adaptive and not d.observe(True) and d.value == 3


def test_adaptive_scheduler_parks_and_releases_work_as_the_depth_moves():
    names, defs = chain(4)
    fillers = [R(f"f{i}", verify=1) for i in range(3 * EVERY)]
    s = Scheduler(defs + fillers, speculate="adaptive")
    assert s.speculation_depth() == 2
    assert run_ahead(s, names) == ["t0", "t1", "t2"]
    assert s.state_of("t3") is State.PENDING

    def verify_fillers(start, approve):
        for i in range(start, start + EVERY):
            s.finished(take(s, f"f{i}", "p").token, 0.0)
            s.verdict(verify_all(s, "v", roles=("verifier",)).get(f"f{i}").token, 0.0, approve)

    verify_fillers(0, True)
    assert s.speculation_depth() == 4 and s.counters["depth_changes"] == 1
    assert s.state_of("t3") is State.READY
    verify_fillers(EVERY, False)
    assert s.speculation_depth() == 0  # every refutation halves: 4, 2, 1, 0
    assert s.state_of("t3") is State.PENDING
    assert s.scoreboard().speculation_depth == 0
    audit(s)
