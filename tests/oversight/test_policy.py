"""Policies: parsing, matching by status, kind, asset and tags, each action, each mode."""

import pytest
import yaml

from headwater.oversight import (
    Action,
    AssetStatus,
    Dependent,
    Exposure,
    Match,
    Mode,
    OversightError,
    Policy,
    Rule,
    evaluate,
    pause,
    policy_from_doc,
    reroute,
    sandbox,
    stage_fraction,
    throttle,
)
from headwater.oversight import alert as alert_action
from headwater.oversight import pin as pin_action

S = AssetStatus
BAD_G = Exposure("claim", "g", "v2", S.DEGRADED)
GOOD_G = Exposure("claim", "g", "v1", S.TRUSTED)

YAML = """
policy: shared-claims
description: test
mode: enforced
rules:
  - name: production reroutes
    when: {status: [degraded, retracted], kind: claim, tags: {any: [production]}}
    do: [{reroute: last-good}, pause, alert]
  - name: canaries untouched
    when: {status: [degraded], tags: {all: [canary]}}
    do: [alert]
  - name: the rest waits
    when: {status: [degraded, retracted], kind: [claim, lib], asset: [claim:g, "lib:scipy*"]}
    do: [pause, {alert: page the owner}]
  - when: {status: suspect}
    do: [sandbox, {throttle: 2}]
"""


def dep(*tags, workflow="wf", run="r1"):
    return Dependent(run, workflow, "t", frozenset(tags))


def rerouter(to_version="v1"):
    def alt(exp, how):
        return Exposure(exp.kind, exp.name, to_version, S.TRUSTED) if how in ("last-good", "auto") else None
    return alt


def test_yaml_policy_round_trips():
    p = policy_from_doc(yaml.safe_load(YAML))
    assert p.name == "shared-claims" and p.mode is Mode.ENFORCED and len(p.rules) == 4
    assert [str(a) for a in p.rules[0].do] == ["reroute(last-good)", "pause", "alert"]
    assert p.rules[2].do[1].message == "page the owner"
    again = policy_from_doc(p.to_doc())
    assert again.body() == p.body() and again.digest() == p.digest()
    assert p.with_rollout("shadow").digest() == p.digest()  # the rollout is not part of the body


@pytest.mark.parametrize("doc, message", [
    ({"rules": [{"when": {}, "do": ["pause"]}]}, "needs a name"),
    ({"policy": "p", "rules": []}, "has no rules"),
    ({"policy": "p", "rules": [{"when": {"colour": "red"}, "do": ["pause"]}]}, "unknown field"),
    ({"policy": "p", "rules": [{"when": {"kind": "widget"}, "do": ["pause"]}]}, "unknown asset kind"),
    ({"policy": "p", "rules": [{"when": {}, "do": ["explode"]}]}, "unknown action"),
    ({"policy": "p", "rules": [{"when": {}, "do": ["throttle"]}]}, "needs a cap"),
    ({"policy": "p", "rules": [{"when": {}, "do": [{"reroute": "anywhere"}]}]}, "reroute to"),
    ({"policy": "p", "rules": [{"when": {"status": "bad"}, "do": ["pause"]}]}, "unknown asset status"),
    ({"policy": "p", "mode": "loud", "rules": [{"when": {}, "do": ["pause"]}]}, "unknown policy mode"),
    ({"policy": "p", "share": 2, "rules": [{"when": {}, "do": ["pause"]}]}, "share must be"),
])
def test_bad_policies_are_refused_with_the_reason(doc, message):
    with pytest.raises(OversightError, match=message):
        policy_from_doc(doc)


def test_matching_by_status_kind_asset_and_tags():
    m = Match(status=["degraded"], kinds="claim", assets=("claim:g",), tags_any={"a", "b"}, tags_none={"canary"})
    assert m.matches(BAD_G, dep("a"))
    assert not m.matches(GOOD_G, dep("a"))                                  # status
    assert not m.matches(Exposure("lib", "g", "1", S.DEGRADED), dep("a"))  # kind
    assert not m.matches(Exposure("claim", "h", "1", S.DEGRADED), dep("a"))  # asset
    assert not m.matches(BAD_G, dep("c"))                                  # tags any
    assert not m.matches(BAD_G, dep("a", "canary"))                        # tags none
    assert Match(tags_all={"a", "b"}).matches(BAD_G, dep("a", "b", "c"))
    assert not Match(tags_all={"a", "b"}).matches(BAD_G, dep("a"))
    assert Match().status == {S.DEGRADED, S.RETRACTED}


def enforced(*rules, name="p", version=4):
    return Policy(name, rules, Mode.ENFORCED, 1.0, version)


def test_throttle_caps_combine_by_minimum_and_zero_pauses():
    p = enforced(Rule(Match(), (throttle(3),)), name="a")
    q = enforced(Rule(Match(kinds="claim"), (throttle(1),)), name="b")
    d = evaluate([p, q], dep(), [BAD_G])
    assert d.caps == {"claim:g": 1} and not d.pause
    d = evaluate([p, enforced(Rule(Match(), (pause(),)), name="c")], dep(), [BAD_G])
    assert d.caps == {"claim:g": 0} and d.pause


def test_sandbox_and_alert():
    d = evaluate([enforced(Rule(Match(status="suspect"), (sandbox(), alert_action("look"))))], dep(),
                 [Exposure("claim", "h", "x", S.SUSPECT)])
    assert d.sandbox and not d.pause
    assert [e.action.message for e in d.alerts] == ["look"]
    record = d.effects[0].audit(5.0, dep())
    assert (record.actor, record.policy, record.policy_version, record.mode) == ("policy:p", "p", 4, "enforced")
    assert record.signal["status"] == "suspect" and record.subject == "claim:h@x"


def test_reroute_makes_the_rest_of_the_rule_a_fallback():
    p = enforced(Rule(Match(), (reroute("last-good"), pause(), alert_action())))
    d = evaluate([p], dep(), [BAD_G], rerouter("v1"))
    assert d.routes == {"claim:g": "last-good"} and not d.pause
    assert [str(e.action) for e in d.effects] == ["reroute(last-good)", "alert"]
    assert d.effects[0].rerouted_to == "claim:g@v1"
    # nowhere healthy to go: the fallback applies
    d = evaluate([p], dep(), [BAD_G], lambda e, how: None)
    assert d.pause and not d.routes
    assert [str(e.action) for e in d.effects] == ["pause", "alert"]


def test_pin_action_routes_to_a_version():
    seen = []

    def alt(exp, how):
        seen.append(how)
        return Exposure(exp.kind, exp.name, "v0", S.TRUSTED)

    d = evaluate([enforced(Rule(Match(), (pin_action("v0"), pause())))], dep(), [BAD_G], alt)
    assert seen == ["pin:v0"] and d.routes == {"claim:g": "pin:v0"} and not d.pause


def test_first_matching_rule_of_each_policy_decides():
    p = policy_from_doc(yaml.safe_load(YAML))
    prod = evaluate([p], dep("production"), [BAD_G], rerouter())
    assert prod.routes == {"claim:g": "last-good"}
    other = evaluate([p], dep("exploratory"), [BAD_G], rerouter())
    assert other.pause and not other.routes
    canary = evaluate([p], dep("canary"), [BAD_G], rerouter())
    assert not canary.pause and [str(e.action) for e in canary.effects] == ["alert"]
    suspect = evaluate([p], dep(), [Exposure("lib", "scipy", "1.11", S.SUSPECT)])
    assert suspect.sandbox and suspect.caps == {"lib:scipy": 2}
    unknown = evaluate([p], dep(), [Exposure("lib", "numpy", "2", S.DEGRADED)])
    assert not unknown.effects


def test_shadow_records_what_it_would_do_and_applies_nothing():
    p = Policy("p", (Rule(Match(), (pause(), sandbox())),), Mode.SHADOW, version=2)
    d = evaluate([p], dep(), [BAD_G])
    assert not d.pause and not d.sandbox and d.caps == {}
    assert [(str(e.action), e.enforced) for e in d.effects] == [("pause", False), ("sandbox", False)]
    assert d.effects[0].audit(0, dep()).action == "pause (shadow)"
    assert d.effects[0].audit(0, dep()).mode == "shadow"


def test_staged_applies_to_a_stable_share_of_workflows_and_grows_monotonically():
    workflows = [f"wf{i}" for i in range(400)]

    def chosen(share):
        p = Policy("rollout", (Rule(Match(), (pause(),)),), Mode.STAGED, share)
        return {w for w in workflows if evaluate([p], dep(workflow=w), [BAD_G]).pause}

    quarter, half = chosen(0.25), chosen(0.5)
    assert 70 <= len(quarter) <= 130 and 160 <= len(half) <= 240
    assert quarter <= half
    assert chosen(0.25) == quarter  # deterministic
    assert chosen(0.0) == set() and chosen(1.0) == set(workflows)
    # the choice is per workflow: every run of a chosen workflow is in
    w = sorted(quarter)[0]
    p = Policy("rollout", (Rule(Match(), (pause(),)),), Mode.STAGED, 0.25)
    assert all(evaluate([p], dep(workflow=w, run=f"r{i}"), [BAD_G]).pause for i in range(5))
    assert 0 <= stage_fraction("rollout", w) < 0.25
    # those left out are recorded as shadow
    out = sorted(set(workflows) - quarter)[0]
    eff = evaluate([p], dep(workflow=out), [BAD_G]).effects[0]
    assert not eff.enforced and eff.audit(0, dep(workflow=out)).mode == "staged-out"


def test_actions_validate_their_arguments():
    with pytest.raises(OversightError):
        Action("throttle", cap=-1)
    assert str(Action("pin")) == "pin(last-good)" and str(reroute()) == "reroute(auto)"
    assert throttle(0).pauses and str(throttle(2)) == "throttle(2)"
