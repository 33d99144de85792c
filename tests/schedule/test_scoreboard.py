"""The scoreboard: versions, cached snapshots, per-task counts."""

from __future__ import annotations

import pytest

from headwater.schedule import Scheduler, State

from .helpers import R, take, verify_all


def test_snapshot_is_cached_until_something_changes_and_reads_are_counted():
    s = Scheduler([R("a", verify=2), R("b", "a")])
    first = s.scoreboard()
    assert s.scoreboard() is first
    assert s.counters["scoreboard_reads"] == 2
    assert len(first) == 2 and list(first) == ["a", "b"]
    assert first["a"].state is State.READY and first["b"].state is State.PENDING
    assert first.status == "running" and first.speculation_depth == 0
    lease = take(s, "a", "p")
    second = s.scoreboard()
    assert second.version > first.version
    assert first["a"].state is State.READY  # an old snapshot never changes
    assert (second["a"].state, second["a"].executing, second["a"].attempt) == (State.LEASED, 1, 1)
    with pytest.raises(TypeError):
        second.tasks["a"] = second.tasks["b"]  # read-only


def test_entries_count_executors_verifiers_and_votes():
    s = Scheduler([R("a", verify=2, reject=2)])
    s.finished(take(s, "a", "p").token, 5.0)
    v1, v2 = verify_all(s, "v1")["a"], verify_all(s, "v2")["a"]
    board = s.scoreboard()["a"]
    assert (board.state, board.executing, board.verifying, board.approvals, board.rejections) == (
        State.PROVISIONAL, 0, 2, 0, 0)
    assert (board.required, board.provisional_since, board.branch) == (2, 5.0, None)
    version = s.scoreboard().version
    s.verdict(v1.token, 6.0, True)
    s.verdict(v2.token, 6.0, False)
    board = s.scoreboard()["a"]
    assert (board.verifying, board.approvals, board.rejections) == (0, 1, 1)
    assert s.scoreboard().version > version
    assert s.scoreboard().counts() == {State.PROVISIONAL: 1}


def test_version_moves_on_every_change_and_never_on_reads_or_no_ops():
    s = Scheduler([R("a"), R("b")])
    v0 = s.scoreboard().version
    assert s.claim("w", ["nothing"], 0.0) == []
    assert s.expire(0.0) == []
    assert s.scoreboard().version == v0
    take(s, "a")
    v1 = s.scoreboard().version
    assert v1 > v0
    take(s, "b")
    assert s.scoreboard().version > v1
