"""Fleet-wide throttles and quotas: a cap counts the tasks running in every run
that shares the store, within the scope (tags, campaign) of the rule that set it."""

import threading
import time

from headwater.oversight import (
    AssetStatus,
    Dependent,
    Exposure,
    Match,
    Mode,
    Policy,
    Rule,
    Running,
    evaluate,
    policy_from_doc,
    throttle,
)
from headwater.runtime import RunOptions, resume_run, run_workflow
from headwater.runtime.fleet import Fleet
from headwater.store.records import RunRecord, TaskRecord

S = AssetStatus
EVERY = (S.TRUSTED, S.SUSPECT, S.DEGRADED, S.REVALIDATING, S.RETRACTED)

QUOTA = Policy("gpu-quota", (
    Rule(Match(status=EVERY, kinds="compute", assets="compute:local", campaigns="survey"), (throttle(1),),
         "survey gets one slot"),
), Mode.ENFORCED, 1.0)

WORK = '''
from headwater import Workflow
wf = Workflow("work-{name}")

@wf.task()
def work(ctx):
    ctx.save("x", 42)
'''

BLOCKING = '''
import pathlib, time
from headwater import Workflow
wf = Workflow("blocking")
wf.param("gate", "str")

@wf.task()
def wait(ctx):
    gate = pathlib.Path(ctx.params["gate"])
    deadline = time.time() + 60
    while not gate.exists() and time.time() < deadline:
        time.sleep(0.02)
    ctx.save("x", 1)
'''


def dep(run, campaign=None, tags=()):
    return Dependent(run, "wf", "t", frozenset(tags), campaign)


def test_a_cap_counts_running_tasks_of_every_run_in_its_scope():
    gpu = Exposure("compute", "local", "local", S.TRUSTED)
    directive = evaluate([QUOTA], dep("mine", "survey"), [gpu])
    assert directive.caps == {"compute:local": 1}
    survey = Running(dep("r1", "survey"), frozenset({"compute:local"}))
    other_campaign = Running(dep("r2", "climate"), frozenset({"compute:local"}))
    other_asset = Running(dep("r3", "survey"), frozenset({"compute:gpu-b"}))
    assert directive.over_cap([other_campaign, other_asset]) is None
    assert directive.over_cap([other_campaign, survey]) == ("compute:local", 1, 1)
    # a rule without a scope counts every run's tasks; the smaller cap wins, with its scope
    everyone = Policy("all", (Rule(Match(status=EVERY, kinds="compute"), (throttle(3),)),), Mode.ENFORCED, 1.0)
    both = evaluate([QUOTA, everyone], dep("mine", "survey"), [gpu])
    assert both.caps == {"compute:local": 1} and both.scopes["compute:local"].campaigns == {"survey"}
    wide = evaluate([everyone], dep("mine", "survey"), [gpu])
    assert wide.over_cap([other_campaign, survey]) is None
    assert wide.over_cap([other_campaign, survey, other_asset, other_campaign]) == ("compute:local", 3, 3)
    # out of the rule's scope, no cap at all
    assert evaluate([QUOTA], dep("mine", "climate"), [gpu]).caps == {}


def test_campaign_scopes_round_trip_through_yaml_form():
    doc = {"policy": "q", "mode": "enforced", "rules": [
        {"when": {"status": ["trusted"], "kind": "compute", "campaign": "survey", "tags": {"any": ["gpu"]}},
         "do": [{"throttle": 2}]}]}
    policy = policy_from_doc(doc)
    assert policy.rules[0].when.campaigns == {"survey"}
    assert policy_from_doc({**policy.to_doc(), "mode": "enforced"}) == policy
    assert not policy.rules[0].when.in_scope(Dependent("r", "w", tags=frozenset({"gpu"}), campaign="other"))
    assert policy.rules[0].when.in_scope(Dependent("r", "w", tags=frozenset({"gpu"}), campaign="survey"))


def other_run(store, run_id, campaign, *, state="leased", fencing=7, expiry=None):
    """A run of another coordinator, running one task that was admitted using compute:local."""
    now = time.time()
    store.create_run(RunRecord(run_id, "elsewhere", "spec", campaign, {}, 0, "running", None, None, now, tags=[]))
    store.admit_exposure(run_id, "t", 1, fencing, ["compute:local"], now, refuse=lambda running: None)
    store.save_tasks([TaskRecord(run_id, "t", 1, state, "agent-x", fencing,
                                 now + 600 if expiry is None else expiry, now + 0.001)])


def test_running_exposures_follow_the_task_rows(store):
    other_run(store, "busy", "survey")
    other_run(store, "expired", "survey", expiry=time.time() - 1)
    other_run(store, "moved-on", "survey", state="provisional")
    other_run(store, "refenced", "survey", fencing=8)
    store.save_tasks([TaskRecord("refenced", "t", 1, "leased", "agent-y", 9, time.time() + 600, time.time() + 1)])
    running = store.running_exposures(time.time())
    assert [r.dependent.run_id for r in running] == ["busy"]
    assert running[0].dependent.campaign == "survey" and running[0].assets == {"compute:local"}
    assert store.running_exposures(time.time(), exclude_run="busy") == []
    store.update_run("busy", status="succeeded")
    assert store.running_exposures(time.time()) == []
    # an admission whose task row never followed counts for a while, not for ever
    store.create_run(RunRecord("crashed", "wf", "spec", "survey", {}, 0, "running", None, None, 1.0, tags=[]))
    t0 = time.time()
    store.admit_exposure("crashed", "t", 1, 3, ["compute:local"], t0 - 10, refuse=lambda running: None)
    assert [r.dependent.run_id for r in store.running_exposures(t0)] == ["crashed"]
    assert store.running_exposures(t0 + 25) == []


def run(ws, path, **opts):
    return run_workflow(ws, path, {}, RunOptions(workers=0, **opts))


def test_a_campaign_quota_holds_work_while_another_run_fills_it(ws_any, write_wf):
    ws = ws_any
    Fleet(ws.store).apply_policy(QUOTA)
    other_run(ws.store, "elsewhere-1", "survey")
    held = run(ws, write_wf(WORK.format(name="a")), campaign="survey")
    assert held.status == "interrupted"
    hold = next(r for r in ws.store.audit_log(run_id=held.run_id) if r.action == "hold")
    assert "compute:local is throttled to 1" in hold.reason and "1 running across the fleet" in hold.reason
    # another campaign is not in the quota's scope
    assert run(ws, write_wf(WORK.format(name="b")), campaign="climate").ok
    # once the other run's task is done, the held run goes on
    ws.store.save_tasks([TaskRecord("elsewhere-1", "t", 1, "provisional", None, None, None, time.time())])
    assert resume_run(ws, held.run_id, workers=0).ok


def test_two_runs_sharing_a_store_share_the_cap(ws, write_wf, tmp_path):
    Fleet(ws.store).apply_policy(QUOTA)
    gate = tmp_path / "gate"
    outcome: dict = {}
    first = threading.Thread(target=lambda: outcome.update(
        summary=run_workflow(ws, write_wf(BLOCKING), {"gate": str(gate)},
                             RunOptions(workers=0, campaign="survey"))))
    first.start()
    try:
        deadline = time.time() + 30
        while not ws.store.running_exposures(time.time()) and time.time() < deadline:
            time.sleep(0.02)
        assert [r.dependent.workflow for r in ws.store.running_exposures(time.time())] == ["blocking"]
        second = run(ws, write_wf(WORK.format(name="c")), campaign="survey")
        assert second.status == "interrupted"
    finally:
        gate.write_text("go")
        first.join(timeout=60)
    assert outcome["summary"].ok
    assert ws.store.running_exposures(time.time()) == []
    assert resume_run(ws, second.run_id, workers=0).ok
