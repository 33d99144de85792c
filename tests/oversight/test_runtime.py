"""Oversight in the runtime: dispatch holds, sandboxes, reroutes through ctx.call,
pins, cache validity, library and compute detection, redundancy, canaries."""

import json
import threading
import time

import pytest

from headwater.oversight import AssetStatus, Match, Mode, Policy, Rule, pause, reroute, sandbox
from headwater.runtime import RunOptions, run_workflow
from headwater.runtime.fleet import Fleet

S = AssetStatus

PRODUCER = '''
from headwater import Workflow
wf = Workflow("producer-{key}")
wf.param("value", "float", default=1.0)

@wf.task()
def publish(ctx):
    ctx.claim("{key}", ctx.params["value"], uncertainty=0.01)
'''

MIXED = '''
from headwater import Workflow
wf = Workflow("mixed-{key}", tags=["{tag}"])
wf.param("log", "str", default="")

def mark(ctx):
    if ctx.params["log"]:
        with open(ctx.params["log"], "a") as fh:
            fh.write(ctx.task + "\\n")

@wf.task()
def free(ctx):
    mark(ctx)
    ctx.save("n", 1)

@wf.task()
def uses(ctx):
    mark(ctx)
    ctx.claim("{key}.double", 2 * ctx.use("claim:{key}"))

@wf.task(after="uses")
def after_uses(ctx):
    mark(ctx)

@wf.task(after="free")
def after_free(ctx):
    mark(ctx)
'''

UNRELATED = '''
from headwater import Workflow
wf = Workflow("unrelated-{key}")

@wf.task()
def work(ctx):
    ctx.save("x", 42)
'''


def run(ws, wf, params=None, **opts):
    return run_workflow(ws, wf, params or {}, RunOptions(workers=0, **opts))


def enforce(fleet, *rules, name="p"):
    return fleet.apply_policy(Policy(name, tuple(rules), Mode.ENFORCED, 1.0))


def claim_version(ws, summary, key):
    return next(ck.id[:12] for ck in ws.store.list_checkpoints(summary.run_id) if any(c.key == key for c in ck.claims))


def test_a_paused_dependent_is_not_dispatched_while_unaffected_work_runs(ws_any, write_wf, tmp_path):
    ws = ws_any
    fleet = Fleet(ws.store)
    prod = run(ws, write_wf(PRODUCER.format(key="k1")))
    version = claim_version(ws, prod, "k1")
    fleet.flag(f"claim:k1@{version}", "wrong", trip=True)
    enforce(fleet, Rule(Match(kinds="claim"), (pause(),)))
    log = tmp_path / "ran.txt"
    mixed = run(ws, write_wf(MIXED.format(key="k1", tag="x")), {"log": str(log)})
    assert mixed.status == "interrupted"
    states = {t.name: t.state for t in mixed.tasks}
    assert states == {"free": "committed", "uses": "paused", "after_uses": "pending", "after_free": "committed"}
    assert sorted(log.read_text().split()) == ["after_free", "free"]
    holds = [r for r in ws.store.audit_log(run_id=mixed.run_id) if r.action == "hold"]
    assert holds[0].task == "uses" and holds[0].cause == f"claim:k1@{version}" and "pause" in holds[0].reason
    effect = [r for r in ws.store.audit_log(run_id=mixed.run_id) if r.actor == "policy:p"][0]
    assert (effect.action, effect.policy_version, effect.mode) == ("pause", 1, "enforced")
    # other workflows are not held up
    assert run(ws, write_wf(UNRELATED.format(key="k1"))).ok
    # once the asset is trusted again, the run resumes and finishes what was held
    fleet.change(f"claim:k1@{version}", "override", "checked by hand")
    from headwater.runtime import resume_run

    resumed = resume_run(ws, mixed.run_id, workers=0)
    assert resumed.ok
    assert sorted(log.read_text().split()) == ["after_free", "after_uses", "free", "uses"]


def test_other_workflows_run_while_a_dependent_waits_and_it_resumes_when_cleared(ws, write_wf, tmp_path):
    fleet = Fleet(ws.store)
    prod = run(ws, write_wf(PRODUCER.format(key="k2")))
    subject = f"claim:k2@{claim_version(ws, prod, 'k2')}"
    fleet.flag(subject, "odd", trip=True)
    enforce(fleet, Rule(Match(kinds="claim"), (pause(),)))
    log = tmp_path / "ran.txt"
    mixed = write_wf(MIXED.format(key="k2", tag="x"))
    outcome: dict = {}
    waiting = threading.Thread(target=lambda: outcome.update(
        summary=run(ws, mixed, {"log": str(log)}, hold=30.0)))
    waiting.start()
    try:
        deadline = time.time() + 20
        while not any(r.action == "hold" for r in ws.store.audit_log(actor="runtime")) and time.time() < deadline:
            time.sleep(0.05)
        assert run(ws, write_wf(UNRELATED.format(key="k2"))).ok  # runs while the dependent waits
        assert "uses" not in log.read_text().split()
    finally:
        fleet.change(subject, "override", "fine after all")
        waiting.join(timeout=30)
    assert outcome["summary"].ok
    assert sorted(log.read_text().split()) == ["after_free", "after_uses", "free", "uses"]


def test_sandboxed_results_are_marked_and_never_served(ws, write_wf):
    fleet = Fleet(ws.store)
    prod = run(ws, write_wf(PRODUCER.format(key="k3")))
    fleet.flag(f"claim:k3@{claim_version(ws, prod, 'k3')}", "maybe wrong")  # suspect, not degraded
    enforce(fleet, Rule(Match(status="suspect"), (sandbox(),)))
    mixed = run(ws, write_wf(MIXED.format(key="k3", tag="x")))
    assert mixed.ok  # sandboxed work keeps running
    cks = {ck.task: ck for ck in ws.store.list_checkpoints(mixed.run_id)}
    marks = ws.store.marks([ck.id for ck in cks.values()])
    assert set(marks) == {cks["uses"].id, cks["after_uses"].id}  # and what was built on it in the run
    assert [v.untrusted for v in ws.store.claim_versions("k3.double")] == [True]
    consumer = write_wf('''
from headwater import Workflow
wf = Workflow("consumer-k3")
@wf.task()
def read(ctx):
    ctx.use("claim:k3.double")
''')
    refused = run(ws, consumer)
    assert not refused.ok and "no committed claim 'k3.double'" in refused.tasks[0].error
    again = run(ws, write_wf(MIXED.format(key="k3", tag="x")))
    assert not {t.name: t.cached for t in again.tasks}["uses"]  # a sandboxed result is never a cache hit


IMPLS = '''
from headwater import Workflow
from headwater.oversight import implementation, implementations

@implementation("{asset}", "fast", version="2.0", default=True)
def fast(x):
    return 2 * x + 1

@implementation("{asset}", "reference", version="1.0")
def reference(x):
    return 2 * x

@implementation("{asset}", "fast", version="1.9")
def fast_old(x):
    return 2 * x

implementations.redundancy("{asset}", {share})

wf = Workflow("caller-{asset}", tags=["production"])

@wf.task()
def compute(ctx):
    ctx.claim("{asset}.out", float(ctx.call("lib:{asset}", 2)))
'''


def outcome_of(ws, summary, key):
    ck = ws.store.list_checkpoints(summary.run_id)[-1]
    return [c.value for c in ck.claims if c.key == key][0], [(u.name, u.version) for u in ck.uses if u.kind == "lib"]


def test_reroute_through_ctx_call_to_another_implementation(ws, write_wf):
    fleet = Fleet(ws.store)
    wf = write_wf(IMPLS.format(asset="solver_a", share=0.0))
    first = run(ws, wf)
    assert outcome_of(ws, first, "solver_a.out") == (5.0, [("solver_a/fast", "2.0")])
    fleet.flag("lib:solver_a/fast@2.0", "off by one", trip=True)
    enforce(fleet, Rule(Match(kinds="lib"), (reroute("implementation"), pause())))
    second = run(ws, wf)
    assert second.ok and outcome_of(ws, second, "solver_a.out") == (4.0, [("solver_a/reference", "1.0")])
    rec = [r for r in ws.store.audit_log(run_id=second.run_id) if r.actor == "policy:p"][0]
    assert rec.action == "reroute(implementation) -> lib:solver_a/reference@1.0"
    # last known-good version of the same implementation instead
    enforce(fleet, Rule(Match(kinds="lib"), (reroute("last-good"), pause())))
    third = run(ws, wf, no_cache=True)
    assert outcome_of(ws, third, "solver_a.out") == (4.0, [("solver_a/fast", "1.9")])


def test_pins_hold_dependents_on_a_version(ws, write_wf):
    fleet = Fleet(ws.store)
    wf = write_wf(IMPLS.format(asset="solver_b", share=0.0))
    fleet.pin("lib:solver_b/fast@1.9", scope="!canary", reason="freeze")
    assert outcome_of(ws, run(ws, wf), "solver_b.out") == (4.0, [("solver_b/fast", "1.9")])
    fleet.unpin("lib:solver_b/fast", scope="!canary")
    assert outcome_of(ws, run(ws, wf), "solver_b.out") == (5.0, [("solver_b/fast", "2.0")])


def test_redundant_calls_are_recorded_and_disagreement_is_flagged(ws, write_wf):
    wf = write_wf(IMPLS.format(asset="solver_c", share=1.0))
    assert run(ws, wf).ok
    (obs,) = ws.store.redundancy_observations()
    assert (obs.asset, obs.primary, obs.secondary, obs.agree) == (
        "lib:solver_c", "solver_c/fast@2.0", "solver_c/reference@1.0", False)
    report = Fleet(ws.store).run_monitors()
    assert [d.asset for d in report.findings.disagreements] == ["lib:solver_c"]
    assert ws.store.version_status("lib:solver_c/fast@2.0") is S.SUSPECT
    assert ws.store.version_status("lib:solver_c/reference@1.0") is S.SUSPECT


CACHED = '''
from headwater import Workflow
import json
wf = Workflow("cached-{key}")

@wf.task()
def read(ctx):
    ctx.save("seen", json.dumps(ctx.use("claim:{key}")))
'''


def test_cache_entries_built_on_bad_or_outdated_versions_are_not_reused(ws, write_wf):
    fleet = Fleet(ws.store)
    producer = write_wf(PRODUCER.format(key="k4"))
    prod = run(ws, producer)
    consumer = write_wf(CACHED.format(key="k4"))
    assert not run(ws, consumer).tasks[0].cached
    assert run(ws, consumer).tasks[0].cached
    fleet.flag(f"claim:k4@{claim_version(ws, prod, 'k4')}", "wrong", trip=True)
    assert not run(ws, consumer).tasks[0].cached  # built on a degraded version: voided
    run(ws, producer, {"value": 2.0})  # a newer value: gated behind a canary (the breaker is open)
    statuses = [r.status for r in ws.store.version_records("claim", "k4")]
    assert statuses == [S.DEGRADED, S.REVALIDATING]
    # a cache hit must have used the version the task would use now
    newest = ws.store.version_records("claim", "k4")[-1].ref
    fleet.change(newest, "override", "checked")
    fresh = run(ws, consumer)
    assert not fresh.tasks[0].cached
    seen = ws.store.list_checkpoints(fresh.run_id)[0]
    assert float(json.loads(ws.store.artifacts.get_bytes(seen.outputs[0].sha256))) == 2.0
    assert run(ws, consumer).tasks[0].cached


def test_libraries_and_compute_are_recorded_without_being_declared(ws, write_wf):
    np = pytest.importorskip("numpy")
    wf = write_wf('''
import numpy as np
from headwater import Workflow
wf = Workflow("detect")

@wf.task()
def calc(ctx):
    "Uses numpy, never says so."
    ctx.save("s", float(np.sum(np.arange(4))))
''')
    summary = run(ws, wf)
    ck = ws.store.list_checkpoints(summary.run_id)[0]
    uses = {(u.kind, u.name): u.version for u in ck.uses}
    assert uses[("lib", "numpy")] == np.__version__
    assert ("compute", "local") in uses
    assert ck.doc["manifest"]["versions"]["lib:numpy"] == np.__version__


POOLS = '''
from headwater import Workflow
wf = Workflow("pooled")

@wf.task(pools=["gpu-a", "gpu-b"])
def train(ctx):
    ctx.save("w", [1, 2])
'''


def test_a_degraded_pool_gets_no_new_tasks(ws, write_wf):
    fleet = Fleet(ws.store)
    wf = write_wf(POOLS)
    first = run(ws, wf)
    assert [u.name for u in ws.store.list_checkpoints(first.run_id)[0].uses if u.kind == "compute"] == ["gpu-a"]
    fleet.flag("compute:gpu-a", "ECC errors", trip=True)
    second = run(ws, wf, no_cache=True)
    assert [u.name for u in ws.store.list_checkpoints(second.run_id)[0].uses if u.kind == "compute"] == ["gpu-b"]
    fleet.flag("compute:gpu-b", "ECC errors too", trip=True)
    third = run(ws, wf, no_cache=True)
    assert third.status == "interrupted" and third.tasks[0].state == "paused"
    hold = [r for r in ws.store.audit_log(run_id=third.run_id) if r.action == "hold"][0]
    assert "no healthy compute pool" in hold.reason


CANARY = '''
from headwater import Workflow

def double(ctx):
    ctx.claim("{key}.twice", 2 * ctx.use("claim:{key}"), uncertainty=0.01)

wf = Workflow("dependent-{key}")
wf.task(double, name="double")
canary = Workflow("canary-{key}", tags=["canary"])
canary.task(double, name="double")
'''


def test_a_gated_version_passes_or_fails_its_canary(ws, write_wf, tmp_path):
    fleet = Fleet(ws.store)
    producer = write_wf(PRODUCER.format(key="k5"))
    run(ws, producer, {"value": 1.0})
    path = tmp_path / "canary_k5.py"
    path.write_text(CANARY.format(key="k5"))
    from headwater.spec import load_workflow

    dependent, canary = load_workflow(path, "dependent-k5"), load_workflow(path, "canary-k5")
    run(ws, dependent)
    fleet.gate("claim:k5", metrics=["k5.twice:tolerance:rtol=0.01"])
    good = run(ws, producer, {"value": 1.001})
    v2 = f"claim:k5@{claim_version(ws, good, 'k5')}"
    assert ws.store.version_status(v2) is S.REVALIDATING
    before = run(ws, dependent)  # not a canary: stays on the old version
    assert [c.value for c in ws.store.list_checkpoints(before.run_id)[0].claims] == [2.0]
    run(ws, canary)  # runs on the candidate; its verdict is taken when it ends
    assert ws.store.version_status(v2) is S.TRUSTED
    assert ws.store.canaries(subject=v2)[0].status == "passed"
    bad = run(ws, producer, {"value": 1.5})
    v3 = f"claim:k5@{claim_version(ws, bad, 'k5')}"
    assert ws.store.version_status(v3) is S.REVALIDATING
    run(ws, canary)
    assert ws.store.version_status(v3) is S.RETRACTED
    verdict = ws.store.canaries(subject=v3)[0]
    assert verdict.status == "failed" and "critical metric failed" in verdict.verdict["reason"]
    after = run(ws, dependent)
    assert [c.value for c in ws.store.list_checkpoints(after.run_id)[0].claims] == [2.002]


def test_shadow_and_staged_policies_at_dispatch(ws, write_wf):
    fleet = Fleet(ws.store)
    prod = run(ws, write_wf(PRODUCER.format(key="k6")))
    fleet.flag(f"claim:k6@{claim_version(ws, prod, 'k6')}", "wrong", trip=True)
    rules = (Rule(Match(kinds="claim"), (pause(),)),)
    fleet.apply_policy(Policy("roll", rules), mode="shadow")
    shadow = run(ws, write_wf(MIXED.format(key="k6", tag="x")))
    assert shadow.ok
    rec = [r for r in ws.store.audit_log(run_id=shadow.run_id) if r.actor == "policy:roll"][0]
    assert (rec.action, rec.mode) == ("pause (shadow)", "shadow")
    from headwater.oversight import stage_fraction

    fleet.apply_policy(Policy("roll", rules), mode="staged", share=0.5)
    name = "mixed-k6"
    staged = run(ws, write_wf(MIXED.format(key="k6", tag="x")))
    assert (staged.status == "interrupted") == (stage_fraction("roll", name) < 0.5)


def test_a_use_dispatch_could_not_foresee_is_sandboxed_after_the_fact(ws, write_wf):
    fleet = Fleet(ws.store)
    prod = run(ws, write_wf(PRODUCER.format(key="k7")))
    fleet.flag(f"claim:k7@{claim_version(ws, prod, 'k7')}", "wrong", trip=True)
    enforce(fleet, Rule(Match(kinds="claim"), (pause(),)))
    hidden = write_wf('''
from headwater import Workflow
wf = Workflow("hidden-k7")
wf.param("key", "str", default="k7")

@wf.task()
def read(ctx):
    ctx.claim("hidden.out", 3 * ctx.use("claim:" + ctx.params["key"]))
''')
    summary = run(ws, hidden)
    assert summary.ok  # nothing told dispatch it would use the claim
    ck = ws.store.list_checkpoints(summary.run_id)[0]
    assert ws.store.marks([ck.id])[ck.id][0] == "untrusted"
    rec = [r for r in ws.store.audit_log(run_id=summary.run_id) if r.action == "sandbox"][0]
    assert rec.reason.startswith("used after dispatch")
    assert [v.untrusted for v in ws.store.claim_versions("hidden.out")] == [True]
    assert ws.store.version_status(f"claim:hidden.out@{ck.id[:12]}") is S.SUSPECT  # tainted at birth


GATED = '''
from headwater import Workflow
from headwater.oversight import implementation

@implementation("solver_g", "fast", version="2.0", default=True)
def fast(x):
    return 2 * x
{newer}
def compute(ctx):
    ctx.claim("solver_g.out", float(ctx.call("lib:solver_g", 2)), uncertainty=0.001)

wf = Workflow("gated-caller")
wf.task(compute, name="compute")
canary = Workflow("gated-canary", tags=["canary"])
canary.task(compute, name="compute")
'''

NEWER = '''
@implementation("solver_g", "fast", version="{version}")
def fast_{tag}(x):
    return {body}
'''


def test_a_new_implementation_version_of_a_gated_asset_waits_for_its_canary(ws, tmp_path):
    from headwater.spec import load_workflow

    def load(newer: str, name: str):
        path = tmp_path / f"gated_{abs(hash(newer))}.py"
        path.write_text(GATED.format(newer=newer))
        return load_workflow(path, name)

    fleet = Fleet(ws.store)
    first = run(ws, load("", "gated-caller"))
    assert outcome_of(ws, first, "solver_g.out") == (4.0, [("solver_g/fast", "2.0")])
    fleet.gate("lib:solver_g", metrics=["solver_g.out:tolerance:rtol=0.01"])
    good = NEWER.format(version="2.1", tag="good", body="2 * x")
    caller = run(ws, load(good, "gated-caller"), no_cache=True)
    assert outcome_of(ws, caller, "solver_g.out")[1] == [("solver_g/fast", "2.0")]  # not yet
    run(ws, load(good, "gated-canary"))  # the canary runs 2.1; its verdict promotes it
    assert ws.store.version_status("lib:solver_g/fast@2.1") is S.TRUSTED
    moved = run(ws, load(good, "gated-caller"), no_cache=True)
    assert outcome_of(ws, moved, "solver_g.out") == (4.0, [("solver_g/fast", "2.1")])
    bad = good + NEWER.format(version="2.2", tag="bad", body="2 * x + 1")
    run(ws, load(bad, "gated-canary"))
    assert ws.store.version_status("lib:solver_g/fast@2.2") is S.RETRACTED
    stays = run(ws, load(bad, "gated-caller"), no_cache=True)
    assert outcome_of(ws, stays, "solver_g.out") == (4.0, [("solver_g/fast", "2.1")])
