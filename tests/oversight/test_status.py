"""The asset status machine: every transition, the no-ops, refusals, and the breaker."""

import pytest

from headwater.oversight import (
    FINAL_STATES,
    TRANSITIONS,
    AssetStatus,
    Breaker,
    Event,
    OversightError,
    Signal,
    transition,
)
from headwater.oversight.status import NOOPS

S, E = AssetStatus, Event


@pytest.mark.parametrize(("old", "event", "new"), sorted(
    ((o, e, n) for (o, e), n in TRANSITIONS.items()), key=lambda x: (x[0] is not None, x[0] or 0, x[1].value)))
def test_every_transition_goes_where_the_table_says_and_is_audited(old, event, new):
    tr = transition("claim:g@abc", old, event, now=12.5, actor="user:ana", reason="why not",
                    cause="claim:h@def", policy="p", policy_version=3, signal={"score": 1})
    assert tr.new is new and tr.old is old and tr.changed == (old is not new)
    rec = tr.record
    assert (rec.ts, rec.actor, rec.subject, rec.reason, rec.cause) == (12.5, "user:ana", "claim:g@abc", "why not", "claim:h@def")
    assert (rec.policy, rec.policy_version, rec.signal) == ("p", 3, {"score": 1})
    assert rec.data == {"from": old.label if old is not None else None, "to": new.label}
    assert rec.action == event.value


def test_the_happy_path_of_the_breaker():
    status = None
    for event, expected in ((E.REGISTER, S.TRUSTED), (E.FLAG, S.SUSPECT), (E.TRIP, S.DEGRADED),
                            (E.REVALIDATE, S.REVALIDATING), (E.PASS, S.TRUSTED)):
        status = transition("lib:x@1", status, event, now=0, actor="t").new
        assert status is expected


@pytest.mark.parametrize(("old", "event"), sorted(NOOPS, key=lambda x: (x[0], x[1].value)))
def test_repeated_signals_are_recorded_without_changing_anything(old, event):
    tr = transition("lib:x@1", old, event, now=0, actor="monitor:m")
    assert tr.new is old and not tr.changed
    assert tr.record.action == f"{event.value} (no change)"


def test_retracted_is_final_and_refusals_name_what_is_allowed():
    assert FINAL_STATES == {S.RETRACTED}
    for event in (E.CLEAR, E.REVALIDATE, E.PASS, E.FAIL, E.OVERRIDE, E.GATE):
        with pytest.raises(OversightError, match="retracted: cannot") as err:
            transition("lib:x@1", S.RETRACTED, event, now=0, actor="u")
        assert err.value.subject == "lib:x@1"
    with pytest.raises(OversightError, match=r"trusted: cannot revalidate it \(allowed: .*flag"):
        transition("lib:x@1", S.TRUSTED, E.REVALIDATE.value, now=0, actor="u")
    with pytest.raises(ValueError):
        transition("lib:x@1", S.TRUSTED, "explode", now=0, actor="u")


def test_every_status_is_reachable_and_every_non_final_one_can_be_left():
    reachable = {n for (_, _), n in TRANSITIONS.items()}
    assert reachable == set(AssetStatus)
    for s in AssetStatus:
        if s not in FINAL_STATES:
            assert any(o is s and n is not s for (o, _), n in TRANSITIONS.items()), s


def test_parse_status():
    assert AssetStatus.parse("Degraded") is S.DEGRADED
    with pytest.raises(OversightError, match="expected one of trusted"):
        AssetStatus.parse("broken")


def test_breaker_flags_then_trips_on_score_sources_or_request():
    b = Breaker(trip_score=0.9, trip_sources=2)
    weak = Signal("claim:g@1", "monitor:a", "odd", score=0.6)
    trs = b.react(S.TRUSTED, weak, now=1)
    assert [t.new for t in trs] == [S.SUSPECT]
    assert trs[0].record.signal["score"] == 0.6
    # a second, independent source trips it
    trs = b.react(S.SUSPECT, Signal("claim:g@1", "monitor:b", "odd too", score=0.6), now=2,
                  earlier_sources={"monitor:a"})
    assert [t.new for t in trs] == [S.SUSPECT, S.DEGRADED]
    assert trs[1].record.actor == "breaker" and "2 independent sources" in trs[1].record.reason
    # one strong signal trips at once, from nothing known
    trs = b.react(None, Signal("lib:x@2", "monitor:a", "very odd", score=0.95), now=3)
    assert [(t.old, t.new) for t in trs] == [(None, S.SUSPECT), (S.SUSPECT, S.DEGRADED)]
    # a user may ask for the trip
    trs = b.react(S.TRUSTED, Signal("lib:x@3", "user:ana", "known bad", score=0.1, trip=True), now=4)
    assert trs[-1].new is S.DEGRADED and "asked to trip" in trs[-1].record.reason
    # the same source again only records the signal
    trs = b.react(S.SUSPECT, weak, now=5, earlier_sources={"monitor:a"})
    assert [t.changed for t in trs] == [False]
