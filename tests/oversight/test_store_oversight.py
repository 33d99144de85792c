"""The oversight part of the store contract, on each backend, and Fleet operations on it."""

import pytest

from headwater.errors import StoreError
from headwater.oversight import (
    AssetStatus,
    AuditRecord,
    Match,
    Mode,
    OversightError,
    Pin,
    Policy,
    Rule,
    pause,
    sandbox,
    transition,
)
from headwater.runtime.fleet import Fleet
from tests.oversight.graphs import G0, G1, IDS, fill_store

S = AssetStatus


def test_transitions_are_written_with_their_audit_and_compare_and_set(store):
    t1 = transition("lib:x@1.0", None, "flag", now=1.0, actor="user:ana", reason="odd")
    store.apply_transitions([t1])
    assert store.version_status("lib:x@1.0") is S.SUSPECT
    with pytest.raises(StoreError, match="changed meanwhile"):
        store.apply_transitions([transition("lib:x@1.0", None, "flag", now=2.0, actor="user:bo")])
    store.apply_transitions([transition("lib:x@1.0", S.SUSPECT, "trip", now=3.0, actor="breaker")])
    rec = store.version_records("lib", "x")[0]
    assert (rec.status, rec.reason, rec.created_at, rec.updated_at) == (S.DEGRADED, "", 1.0, 3.0)
    assert [a.action for a in store.audit_log(subject="lib:x")] == ["flag", "trip"]
    assert store.statuses_of(["lib:x@1.0", "lib:x@2.0"]) == {"lib:x@1.0": S.DEGRADED, "lib:x@2.0": None}
    assert store.signal_sources("lib:x@1.0") == {"user:ana"}


def test_policies_are_versioned_by_their_rules(store):
    p = Policy("p", (Rule(Match(), (pause(),)),), Mode.SHADOW)
    v1 = store.put_policy(p)
    assert v1.version == 1
    again = store.put_policy(p.with_rollout(Mode.STAGED, 0.3))
    assert again.version == 1
    (active,) = store.policies()
    assert (active.mode, active.share, active.version) == (Mode.STAGED, 0.3, 1)
    changed = store.put_policy(Policy("p", (Rule(Match(), (sandbox(),)),), Mode.ENFORCED, 1.0))
    assert changed.version == 2
    assert [(x.version, x.mode) for x in store.policies(active=False)] == [(1, Mode.STAGED), (2, Mode.ENFORCED)]
    assert [x.version for x in store.policies()] == [2]
    assert store.retire_policy("p") and store.policies() == [] and not store.retire_policy("p")


def test_pins_marks_canaries_and_the_snapshot(store):
    store.set_pin(Pin("lib", "fft", "1.0", "*", "freeze"))
    store.set_pin(Pin("lib", "fft", "1.1", "*", "moved"))
    store.set_pin(Pin("lib", "fft", "2.0", "canary"))
    assert [(p.version, p.scope) for p in store.pins()] == [("1.1", "*"), ("2.0", "canary")]
    assert store.remove_pin("lib", "fft", "canary") and not store.remove_pin("lib", "fft", "canary")
    store.mark_checkpoints(["a" * 64, "b" * 64], "untrusted", "sandboxed")
    store.mark_checkpoints(["a" * 64], "untrusted", "again")
    assert store.marks(["a" * 64, "c" * 64]) == {"a" * 64: ("untrusted", "sandboxed")}
    cid = store.add_canary("claim", "g", "v2", "v1", ["h:tolerance"])
    store.decide_canary(cid, "passed", {"outcome": "pass"})
    (c,) = store.canaries(subject="claim:g@v2")
    assert (c.status, c.baseline, c.metrics, c.verdict) == ("passed", "v1", ["h:tolerance"], {"outcome": "pass"})
    store.register_asset("lib", "fft", gated=True)
    store.apply_transitions([transition("lib:np@range:>=1.2,<1.4", None, "trip", now=1, actor="u")])
    snap = store.oversight_snapshot()
    assert snap.gated == {"lib:fft"} and snap.pins == (Pin("lib", "fft", "1.1", "*", "moved"),)
    assert snap.status("lib", "np", "1.3") is S.DEGRADED and snap.status("lib", "np", "1.4") is S.TRUSTED
    assert snap.open_breaker("lib", "np")


def test_audit_log_filters(store):
    store.append_audit([AuditRecord(1.0, "policy:p", "pause", "claim:g@1", run_id="r1", task="t"),
                        AuditRecord(2.0, "user:ana", "flag", "claim:g@2"),
                        AuditRecord(3.0, "monitor:m", "flag", "claim:gg@1")])
    assert [r.ts for r in store.audit_log(subject="claim:g")] == [1.0, 2.0]
    assert [r.ts for r in store.audit_log(subject="claim:g@2")] == [2.0]
    assert [r.ts for r in store.audit_log(run_id="r1")] == [1.0]
    assert [r.ts for r in store.audit_log(actor="user:")] == [2.0]
    assert [r.ts for r in store.audit_log(limit=2)] == [2.0, 3.0]


def test_tripping_a_version_taints_its_radius_and_voids_its_cache(store):
    fill_store(store)
    fleet = Fleet(store, clock=lambda: 100.0)
    out = fleet.flag(f"claim:g@{G1}", "wrong constant", trip=True)
    assert [(t.subject, t.new) for t in out.transitions] == [(f"claim:g@{G1}", S.SUSPECT), (f"claim:g@{G1}", S.DEGRADED)]
    x, y = f"claim:x@{IDS['c2'][:12]}", f"claim:y@{IDS['c3'][:12]}"
    assert {t.subject for t in out.tainted} == {x, y}
    assert store.version_status(y) is S.SUSPECT
    assert out.invalidated == 4 and store.find_cached("key-c4") is None and store.find_cached("key-c7") is not None
    contain = [r for r in store.audit_log(subject=f"claim:g@{G1}") if r.action == "contain"]
    assert contain and contain[0].data["radius"]["checkpoints"] == 4
    # a second trip changes nothing and taints nothing again
    again = fleet.flag(f"claim:g@{G1}", "still wrong", trip=True)
    assert not again.tainted and again.notes


def test_flagging_a_range_covers_known_and_future_versions(store):
    fill_store(store)
    fleet = Fleet(store)
    out = fleet.flag("lib:numpy", "bad build", introduced="1.9", fixed="2.1")
    assert {t.subject for t in out.transitions} == {"lib:numpy@2.0", "lib:numpy@range:>=1.9,<2.1"}
    snap = store.oversight_snapshot()
    assert snap.status("lib", "numpy", "2.0.1") is S.SUSPECT  # never seen, but in the range
    assert snap.status("lib", "numpy", "2.1") is S.TRUSTED
    cleared = fleet.change("lib:numpy", "clear", "false alarm")
    assert {t.new for t in cleared.transitions} == {S.TRUSTED}
    assert store.oversight_snapshot().status("lib", "numpy", "2.0.1") is S.TRUSTED
    ahead = fleet.flag("lib:scipy", "advisory published before anyone used it", introduced="1.11", fixed="1.11.2")
    assert "seen yet" in ahead.notes[0]
    assert store.oversight_snapshot().status("lib", "scipy", "1.11.1") is S.SUSPECT
    with pytest.raises(OversightError, match="nothing to clear"):
        fleet.change("lib:nothing", "clear", "x")


def test_canaries_promote_or_retract(store):
    fill_store(store)
    fleet = Fleet(store)
    rec = fleet.canary_start(f"claim:g@{G1}", ["x:tolerance"])
    assert rec.baseline == G0 and store.version_status(f"claim:g@{G1}") is S.REVALIDATING
    with pytest.raises(OversightError, match="needs a version"):
        fleet.canary_start("claim:g")
    (c, v), = fleet.evaluate_canaries()
    assert v.outcome == "inconclusive"  # no canary-tagged run published x yet
    assert store.version_status(f"claim:g@{G1}") is S.REVALIDATING


def test_pins_and_policies_through_fleet(store):
    fleet = Fleet(store)
    fleet.pin("lib:fft/numpy@1.0", scope="!canary", reason="freeze")
    assert store.pins()[0].scope == "!canary"
    with pytest.raises(OversightError, match="pin needs a version"):
        fleet.pin("lib:fft")
    assert fleet.unpin("lib:fft/numpy", scope="!canary")
    p = fleet.apply_policy(Policy("q", (Rule(Match(), (pause(),)),)), mode="staged", share=0.5)
    assert (p.version, p.mode, p.share) == (1, Mode.STAGED, 0.5)
    rec = store.audit_log(subject="policy:q")[-1]
    assert (rec.policy, rec.policy_version, rec.mode) == ("q", 1, "staged")
