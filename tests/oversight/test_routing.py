"""Routing: which version a dependent gets (retracted, canaries, pins, reroutes)."""

from headwater.oversight import AssetStatus, Candidate, Dependent, Pin, Snapshot, choose, decide, resolve
from headwater.oversight import Match, Mode, Policy, Rule, pause, reroute

S = AssetStatus


def c(name, version, status=S.TRUSTED, order=0, rank=0):
    return Candidate(name, version, status, order, rank)


CLAIM = [c("g", "a", order=1), c("g", "b", order=2), c("g", "c", order=3)]


def test_newest_is_served_but_never_a_retracted_one():
    assert choose("claim", CLAIM).version == "c"
    assert choose("claim", CLAIM[:2] + [c("g", "c", S.RETRACTED, 3)]).version == "b"
    assert choose("claim", [c("g", "a", S.RETRACTED, 1)]) is None
    # suspect and degraded versions are still served: policies decide what happens
    assert choose("claim", CLAIM[:2] + [c("g", "c", S.DEGRADED, 3)]).status is S.DEGRADED


def test_a_candidate_under_test_goes_to_canaries_only():
    cands = CLAIM[:2] + [c("g", "c", S.REVALIDATING, 3)]
    assert choose("claim", cands).version == "b"
    got = choose("claim", cands, tags={"canary"})
    assert (got.version, got.reason) == ("c", "canary candidate")


def test_pins_freeze_dependents_in_scope():
    pins = [Pin("claim", "g", "a", "!canary")]
    assert choose("claim", CLAIM, pins=pins).version == "a"
    assert choose("claim", CLAIM, pins=pins, tags={"canary"}).version == "c"
    assert choose("claim", CLAIM, pins=[Pin("claim", "g", "b", "production")], tags={"production"}).version == "b"
    assert choose("claim", CLAIM, pins=[Pin("claim", "g", "zzz")]).version == "c"  # unknown version: no effect


def test_reroutes_to_another_implementation_or_the_last_good_version():
    impls = [c("fft/numpy", "1.0", order=0), c("fft/numpy", "1.1", S.DEGRADED, order=1),
             c("fft/scipy", "2.0", rank=1)]
    assert choose("lib", impls).name == "fft/numpy"
    alt = choose("lib", impls, how="implementation")
    assert (alt.name, alt.version) == ("fft/scipy", "2.0")
    alt = choose("lib", impls, how="last-good")
    assert (alt.name, alt.version) == ("fft/numpy", "1.0")
    assert choose("lib", impls, how="auto").name == "fft/scipy"
    assert choose("lib", impls, how="pin:1.0").version == "1.0"
    assert choose("lib", impls[1:2], how="auto") is None


def test_resolve_and_decide_apply_policies_to_the_exposure():
    snap = Snapshot(statuses={"claim:g@c": S.DEGRADED},
                    policies=(Policy("p", (Rule(Match(), (reroute("last-good"), pause())),), Mode.ENFORCED, 1.0, 1),))
    dep = Dependent("r", "wf", "t", frozenset())
    res = resolve(snap, dep, "claim", CLAIM)
    assert res.exposure.version == "c" and res.choice.version == "b" and res.rerouted
    # nothing to fall back to: paused
    only = [c("g", "c", order=3)]
    decision = decide(snap, dep, {"claim:g": ("claim", only)})
    assert decision.pause and not decision.sandbox
    assert Snapshot().quiet and not snap.quiet
    assert snap.open_breaker("claim", "g") and not snap.open_breaker("claim", "h")
