"""Branches: skips, joins, refute-and-switch, and history-based prediction."""

from __future__ import annotations

import pytest

from headwater.errors import RunError
from headwater.schedule import Cancel, Commit, Fail, Requeue, RunFinished, Scheduler, Skip, Squash, State

from .helpers import R, audit, kinds, of, take, verify_all


def workflow(**kw):
    """make -> decide -> {double | triple} -> total, plus a task fed only by triple."""
    return [
        R("make"),
        R("decide", "make", branches=("double", "triple"), **kw),
        R("double", "decide", "make"),
        R("triple", "decide", "make"),
        R("only_triple", "triple"),
        R("total", "double", "triple"),
    ]


def test_the_branch_not_taken_and_what_only_it_feeds_are_skipped():
    s = Scheduler(workflow())
    s.finished(take(s, "make").token, 0.0)
    out = s.finished(take(s, "decide").token, 1.0, branch="double")
    assert out == [
        Commit("decide", 1),
        Skip("triple", "branch not taken: 'decide' chose 'double'"),
        Skip("only_triple", "every input was skipped"),
    ]
    assert s.state_of("double") is State.READY
    assert s.state_of("total") is State.PENDING  # a join runs on its non-skipped inputs
    s.finished(take(s, "double").token, 2.0)
    lease = take(s, "total")
    assert lease.speculative == ()
    assert s.finished(lease.token, 3.0) == [Commit("total", 1), RunFinished("succeeded")]
    assert s.scoreboard()["decide"].branch == "double"
    audit(s)


def test_a_skip_is_provisional_until_the_decider_commits():
    s = Scheduler(workflow(verify=1))
    s.finished(take(s, "make").token, 0.0)
    s.finished(take(s, "decide", "p").token, 1.0, branch="triple")
    assert s.state_of("double") is State.SKIPPED
    assert s.state_of("triple") is State.PENDING  # no speculation: waits for the commit
    assert not s.done
    s.verdict(verify_all(s, "v")["decide"].token, 2.0, True)
    assert s.state_of("triple") is State.READY


def test_refute_and_switch_flushes_the_followed_path_and_loads_the_other():
    s = Scheduler(workflow(verify=1), speculate=2)
    s.finished(take(s, "make").token, 0.0)
    s.finished(take(s, "decide", "p").token, 1.0, branch="double")
    assert s.state_of("triple") is State.SKIPPED
    double = take(s, "double", "p", 2.0)
    assert double.speculative == (("decide", 1),)
    s.finished(double.token, 2.0)
    total = take(s, "total", "q", 3.0)
    assert total.speculative == (("decide", 1), ("double", 1))  # the skip of triple rests on decide#1
    out = s.verdict(verify_all(s, "v", 4.0)["decide"].token, 4.0, False, "miscounted")
    flushed = "built on 'decide' attempt 1, which was refuted"
    unskipped = "no longer skipped: the decision it rested on changed"
    assert out == [
        Requeue("decide", 2, 4.0, "attempt 1 refuted: miscounted"),
        Squash("double", 1, flushed),
        Cancel("q", "total", 1, total.token),
        Squash("total", 1, flushed),
        Requeue("double", 2, 4.0, flushed),
        Requeue("triple", 1, 4.0, unskipped),
        Requeue("only_triple", 1, 4.0, unskipped),
        Requeue("total", 2, 4.0, flushed),
    ]
    assert [s.state_of(n) for n in ("double", "triple", "total")] == [State.PENDING] * 3
    s.finished(take(s, "decide", "p", 5.0).token, 5.0, branch="triple")
    assert s.state_of("double") is State.SKIPPED
    assert s.state_of("triple") is State.READY
    s.verdict(verify_all(s, "v", 6.0)["decide"].token, 6.0, True)
    s.finished(take(s, "triple", "p", 7.0).token, 7.0)
    s.finished(take(s, "only_triple", "p", 7.0).token, 7.0)
    out = s.finished(take(s, "total", "p", 8.0).token, 8.0)
    assert out == [Commit("total", 2), RunFinished("succeeded")]
    assert s.attempt_state("double", 1) is State.SQUASHED
    assert s.state_of("double") is State.SKIPPED
    audit(s)


@pytest.mark.parametrize(
    ("branch", "error"),
    [
        ("quadruple", "branch 'quadruple' is not one of ['double', 'triple']"),
        (None, "branch None is not one of ['double', 'triple']"),
    ],
)
def test_an_undeclared_branch_fails_the_attempt(branch, error):
    s = Scheduler(workflow())
    s.finished(take(s, "make").token, 0.0)
    out = s.finished(take(s, "decide").token, 1.0, branch=branch)
    assert out[0] == Fail("decide", 1, error)
    assert of(out, Fail)[1:] == [Fail(n, 1, "input 'decide' failed") for n in ("double", "triple")] + [
        Fail("only_triple", 1, "input 'triple' failed"), Fail("total", 1, "input 'double' failed")]
    assert s.status == "failed"


def test_a_branch_from_a_task_without_branches_fails_the_attempt():
    s = Scheduler([R("a", retries=1)])
    out = s.finished(take(s, "a").token, 1.0, branch="x")
    assert out == [Requeue("a", 2, 1.5, "attempt 1 failed: task has no branches but finished with branch 'x'")]


def test_history_prediction_runs_ahead_and_is_confirmed():
    s = Scheduler(workflow(verify=1), speculate=2, predict="history")
    out = s.note_history("decide", "double", 7)
    s.note_history("decide", "triple", 2)
    assert out == [
        Skip("triple", "branch not taken: 'decide' is predicted to choose 'double'"),
        Skip("only_triple", "every input was skipped"),
    ]
    assert s.state_of("decide") is State.PENDING
    assert s.state_of("double") is State.PENDING  # still needs make's output
    s.finished(take(s, "make").token, 0.0)
    double = take(s, "double", "p")  # before decide has even been claimed
    assert double.speculative == (("decide", 1),)
    s.finished(double.token, 1.0)
    s.finished(take(s, "decide", "p", 2.0).token, 2.0, branch="double")
    assert s.counters["predictions_confirmed"] == 1
    assert s.state_of("double") is State.VERIFIED
    out = s.verdict(verify_all(s, "v", 3.0)["decide"].token, 3.0, True)
    assert out == [Commit("decide", 1), Commit("double", 1)]
    audit(s)


def test_history_misprediction_squashes_the_predicted_path_and_loads_the_right_one():
    s = Scheduler(workflow(), speculate=1, predict="history")
    s.note_history("decide", "triple", 3)
    s.finished(take(s, "make").token, 0.0)
    triple = take(s, "triple", "p")
    assert s.state_of("double") is State.SKIPPED
    decide = take(s, "decide", "q")
    out = s.finished(decide.token, 1.0, branch="double")
    assert out == [
        Cancel("p", "triple", 1, triple.token),
        Squash("triple", 1, "'decide' chose 'double', not the predicted 'triple'"),
        Commit("decide", 1),
        Requeue("double", 1, 1.0, "no longer skipped: the decision it rested on changed"),
        Skip("triple", "branch not taken: 'decide' chose 'double'"),
        Skip("only_triple", "every input was skipped"),
    ]
    assert s.counters["mispredictions"] == 1
    assert s.state_of("double") is State.READY
    assert s.finished(triple.token, 2.0) == []
    audit(s)


def test_changing_the_history_moves_the_prediction():
    s = Scheduler(workflow(), speculate=1, predict="history")
    s.note_history("decide", "triple", 3)
    s.finished(take(s, "make").token, 0.0)
    triple = take(s, "triple", "p")
    out = s.note_history("decide", "double", 5)
    assert out[:2] == [Cancel("p", "triple", 1, triple.token),
                       Squash("triple", 1, "prediction for 'decide' changed")]
    assert s.state_of("double") is State.READY and s.state_of("triple") is State.SKIPPED
    assert s.note_history("decide", "double", 6) == []
    audit(s)


def test_no_prediction_without_speculation_or_history_mode():
    for kw in ({"predict": "history"}, {"speculate": 2}):
        s = Scheduler(workflow(), **kw)
        assert s.note_history("decide", "triple", 3) == []
        assert s.state_of("double") is State.PENDING and s.state_of("triple") is State.PENDING


def test_note_history_rejects_bad_input():
    s = Scheduler(workflow(), predict="history", speculate=1)
    with pytest.raises(RunError, match="no branches"):
        s.note_history("make", "x", 1)
    with pytest.raises(RunError, match="not one of"):
        s.note_history("decide", "x", 1)
    with pytest.raises(RunError, match="count"):
        s.note_history("decide", "double", -1)


def test_a_skipped_decider_skips_all_its_alternatives():
    s = Scheduler([
        R("top", branches=("inner", "plain")),
        R("inner", "top", branches=("x", "y")),
        R("plain", "top"),
        R("x", "inner"),
        R("y", "inner"),
        R("after", "x", "y", "plain"),
    ])
    out = s.finished(take(s, "top").token, 0.0, branch="plain")
    assert [a.task for a in of(out, Skip)] == ["inner", "x", "y"]
    assert s.state_of("after") is State.PENDING
    s.finished(take(s, "plain").token, 1.0)
    assert kinds(s.finished(take(s, "after").token, 2.0)) == ["Commit", "RunFinished"]


def test_a_failed_decider_fails_its_alternatives():
    s = Scheduler([R("d", branches=("x", "y")), R("x", "d"), R("y", "d")])
    out = s.failed(take(s, "d").token, 0.0, "crash")
    assert out == [Fail("d", 1, "crash"), Fail("x", 1, "input 'd' failed"), Fail("y", 1, "input 'd' failed"),
                   RunFinished("failed")]


def test_restore_resumes_after_committed_work_and_decisions():
    s = Scheduler(workflow())
    s.restore({"make": (1, None), "decide": (2, "triple")}, attempts={"triple": 3})
    assert s.state_of("double") is State.SKIPPED and s.state_of("triple") is State.READY
    assert s.attempt_of("decide") == 2
    lease = take(s, "triple")
    assert (lease.attempt, lease.speculative) == (4, ())
    s.finished(lease.token, 0.0)
    s.finished(take(s, "only_triple").token, 0.0)
    assert s.finished(take(s, "total").token, 0.0)[-1] == RunFinished("succeeded")
    audit(s)


def test_restore_with_explicit_skips_and_errors():
    s = Scheduler([R("a"), R("b"), R("c", "a", "b")])
    s.restore({"a": (1, None)}, skipped=["b"])
    assert s.state_of("b") is State.SKIPPED and s.state_of("c") is State.READY
    with pytest.raises(RunError, match="once"):
        s.restore({})
    s = Scheduler([R("a"), R("b", "a")])
    with pytest.raises(RunError, match="inputs are not all committed"):
        s.restore({"b": (1, None)})
    s = Scheduler(workflow())
    with pytest.raises(RunError, match="committed branch"):
        s.restore({"make": (1, None), "decide": (1, "sideways")})
    with pytest.raises(RunError, match="no such task"):
        Scheduler([R("a")]).restore({"zz": (1, None)})
    s = Scheduler([R("a")])
    s.claim("w", ["a"], 0.0)
    with pytest.raises(RunError, match="before any claim"):
        s.restore({})


def test_a_predicted_path_is_flushed_when_the_deciders_attempt_closes_early():
    s = Scheduler(workflow(), speculate=1, predict="history", lease_ttl=5.0)
    s.note_history("decide", "double", 1)
    s.finished(take(s, "make").token, 0.0)
    decide = take(s, "decide", "q", 1.0)
    double = take(s, "double", "p", 1.0)
    assert double.speculative == (("decide", 1),)
    out = s.expire(6.0)
    assert out[:3] == [Cancel("q", "decide", 1, decide.token), Squash("decide", 1, "its lease expired"),
                       Requeue("decide", 2, 6.0, "attempt 1: its lease expired")]
    assert Cancel("p", "double", 1, double.token) in out
    again = take(s, "double", "p", 7.0)
    assert (again.attempt, again.speculative) == (2, (("decide", 2),))
    audit(s)


def test_a_task_failed_by_its_input_is_skipped_once_its_branch_is_not_taken():
    s = Scheduler([R("broken"), R("d", branches=("x", "y")), R("x", "d", "broken"), R("y", "d")])
    out = s.failed(take(s, "broken").token, 0.0, "boom")
    assert out == [Fail("broken", 1, "boom"), Fail("x", 1, "input 'broken' failed")]
    out = s.finished(take(s, "d").token, 1.0, branch="y")
    assert out == [Commit("d", 1), Skip("x", "branch not taken: 'd' chose 'y'")]
    s.finished(take(s, "y").token, 2.0)
    assert s.status == "failed" and s.state_of("x") is State.SKIPPED
