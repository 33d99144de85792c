"""Recheck policies: when an agent that ran ahead looks at the scoreboard again."""

from __future__ import annotations

import pytest

from headwater.schedule import Adaptive, Backoff, Eager, RecheckInfo, Scheduler, TaskBoard, recheck_policy
from headwater.schedule import State

from .helpers import R, take, verify_all


def test_eager_rechecks_at_once():
    assert Eager().next_check(12.5, RecheckInfo(since=0.0, checks=9)) == 12.5


def test_backoff_grows_exponentially_to_its_cap():
    policy = Backoff(base=1.0, factor=2.0, cap=10.0)
    waits = [policy.next_check(100.0, RecheckInfo(since=0.0, checks=k)) - 100.0 for k in range(6)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert policy.next_check(0.0, RecheckInfo(since=0.0, checks=10**6)) == 10.0


def test_adaptive_waits_for_the_expected_remaining_latency():
    policy = Adaptive(initial=10.0, idle_factor=4.0, min_wait=0.1, max_wait=1000.0)
    covered = RecheckInfo(since=100.0, verifiers=1, needed=1)
    assert policy.next_check(103.0, covered) == pytest.approx(110.0)
    policy.observe(2.0)  # the first observation replaces the prior
    assert policy.expected == 2.0
    policy.observe(12.0)  # then an EWMA with alpha 0.2
    assert policy.expected == pytest.approx(4.0)
    assert policy.next_check(101.0, covered) == pytest.approx(104.0)


def test_adaptive_waits_longer_without_enough_verifiers():
    policy = Adaptive(initial=8.0, idle_factor=4.0, max_wait=1000.0)
    since = 0.0
    none = policy.next_check(0.0, RecheckInfo(since, verifiers=0, needed=2))
    half = policy.next_check(0.0, RecheckInfo(since, verifiers=1, needed=2))
    full = policy.next_check(0.0, RecheckInfo(since, verifiers=2, needed=2))
    extra = policy.next_check(0.0, RecheckInfo(since, verifiers=5, needed=2))
    assert (none, half, full, extra) == (32.0, 16.0, 8.0, 8.0)
    assert policy.next_check(0.0, RecheckInfo(since, verifiers=0, needed=0)) == 8.0


def test_adaptive_overdue_and_clamps():
    policy = Adaptive(initial=8.0, overdue_fraction=0.25, min_wait=1.0, max_wait=20.0)
    assert policy.next_check(50.0, RecheckInfo(since=0.0, verifiers=1)) == 52.0  # overdue: 8 * 0.25
    assert policy.next_check(0.0, RecheckInfo(since=0.0, verifiers=0)) == 20.0  # 32 clamped
    policy.observe(0.0)
    assert policy.next_check(0.0, RecheckInfo(since=0.0, verifiers=1)) == 1.0


def test_recheck_info_from_the_scoreboard():
    s = Scheduler([R("a", verify=2)])
    s.finished(take(s, "a", "p").token, 3.0)
    verify_all(s, "v")
    info = RecheckInfo.from_board(s.scoreboard()["a"], now=7.0, checks=2)
    assert info == RecheckInfo(since=3.0, checks=2, verifiers=1, needed=2)
    board = TaskBoard(State.LEASED, 1, 1, 0, 0, 0, 1, None, None)
    assert RecheckInfo.from_board(board, now=7.0).since == 7.0


def test_policy_factory_and_validation():
    assert isinstance(recheck_policy("eager"), Eager)
    assert recheck_policy("Backoff", base=2.0).base == 2.0
    assert isinstance(recheck_policy("adaptive", initial=1.0), Adaptive)
    with pytest.raises(ValueError, match="unknown recheck policy"):
        recheck_policy("psychic")
    with pytest.raises(ValueError):
        Backoff(factor=0.5)
    with pytest.raises(ValueError):
        Adaptive(alpha=0.0)
    with pytest.raises(ValueError):
        Adaptive(min_wait=5.0, max_wait=1.0)
    with pytest.raises(ValueError):
        Adaptive().observe(-1.0)
