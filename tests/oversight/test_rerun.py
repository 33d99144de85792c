"""``rerun --affected-by``: exactly the affected checkpoints of every dependent run, nothing else."""

from headwater.runtime import RunOptions, run_workflow
from headwater.runtime.fleet import Fleet
from headwater.runtime.rerun import rerun_affected

PRODUCER = '''
from headwater import Workflow
wf = Workflow("constant")
wf.param("value", "float", default=1.0)

@wf.task()
def publish(ctx):
    ctx.claim("kr", ctx.params["value"], uncertainty=0.001)
'''

DEPENDENT = '''
from headwater import Workflow
wf = Workflow("dependent")
wf.param("log", "str")

def mark(ctx):
    with open(ctx.params["log"], "a") as fh:
        fh.write(ctx.task + "\\n")

@wf.task()
def load(ctx):
    mark(ctx)
    ctx.save("x", [1, 2, 3])

@wf.task(after="load")
def scale(ctx):
    mark(ctx)
    ctx.save("y", [v * ctx.use("claim:kr") for v in ctx.load("x")])

@wf.task(after="scale")
def total(ctx):
    mark(ctx)
    ctx.claim("kr.total", float(sum(ctx.load("y"))))

@wf.task(after="load")
def count(ctx):
    mark(ctx)
    ctx.claim("kr.count", len(ctx.load("x")))

second = Workflow("second-hop")
second.param("log", "str")

@second.task()
def reuse(ctx):
    mark(ctx)
    ctx.claim("kr.half", ctx.use("claim:kr.total") / 2)
'''

UNRELATED = '''
from headwater import Workflow
wf = Workflow("bystander")

@wf.task()
def idle(ctx):
    ctx.save("z", 0)
'''


def run(ws, wf, params=None):
    return run_workflow(ws, wf, params or {}, RunOptions(workers=0))


def test_rerun_recomputes_only_the_affected_checkpoints_and_reports_changes(ws, write_wf, tmp_path):
    from headwater.spec import load_workflow

    producer = write_wf(PRODUCER)
    bad = run(ws, producer, {"value": 10.0})
    bad_version = f"claim:kr@{ws.store.list_checkpoints(bad.run_id)[0].id[:12]}"
    path = tmp_path / "dependent.py"
    path.write_text(DEPENDENT)
    dependent, second = load_workflow(path, "dependent"), load_workflow(path, "second-hop")
    log = tmp_path / "log.txt"
    dep = run(ws, dependent, {"log": str(log)})
    hop = run(ws, second, {"log": str(log)})
    bystander = run(ws, write_wf(UNRELATED))
    before = {ck.task: ck for ck in ws.store.list_checkpoints(dep.run_id)}
    assert before["total"].claims[0].value == 60.0

    fleet = Fleet(ws.store)
    fleet.flag(bad_version, "a decimal point slipped", trip=True)
    fixed = run(ws, producer, {"value": 1.0})
    new_version = f"claim:kr@{ws.store.list_checkpoints(fixed.run_id)[0].id[:12]}"
    fleet.change(new_version, "override", "checked by hand")  # gated (breaker open); trusted now
    log.write_text("")
    plan = rerun_affected(ws, bad_version, dry_run=True)
    assert [(r.workflow, r.recomputed, r.kept) for r in plan.runs] == [
        ("dependent", ["scale", "total"], ["load", "count"]), ("second-hop", ["reuse"], [])]
    assert log.read_text() == ""

    report = rerun_affected(ws, bad_version)
    assert [r.status for r in report.runs] == ["succeeded", "succeeded"]
    assert log.read_text().split() == ["scale", "total", "reuse"]  # nothing else ran
    after = {ck.task: ck for ck in ws.store.list_checkpoints(dep.run_id, status="committed")}
    assert after["load"].id == before["load"].id and after["count"].id == before["count"].id
    assert after["total"].claims[0].value == 6.0
    squashed = ws.store.list_checkpoints(dep.run_id, status="squashed")
    assert {c.task for c in squashed} == {"scale", "total"}
    assert all("rerun --affected-by" in c.status_reason for c in squashed)
    dep_report = report.runs[0]
    assert dep_report.first_tainted == "scale"
    changes = {c.task: c for c in dep_report.changes}
    assert changes["scale"].outputs_changed == ["y"]
    assert changes["total"].claims == {"kr.total": [60.0, 6.0]}
    assert report.runs[1].changes[0].claims == {"kr.half": [30.0, 3.0]}
    assert ws.store.list_checkpoints(bystander.run_id)[0].status == "committed"
    assert len(ws.store.list_checkpoints(bystander.run_id)) == 1
    assert [r.action for r in ws.store.audit_log(subject=bad_version) if r.action == "rerun"] == ["rerun", "rerun"]
    assert hop.run_id == report.runs[1].run_id
