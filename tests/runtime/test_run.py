"""The local runtime: dependency order, branches, retries, caching, bundles."""

import json

import pytest

from headwater.runtime import RunOptions, run_workflow
from headwater.runtime.agent import OutputsView
from tests.runtime.workflows import CHAIN

PARTS = ("manifest", "spec_diff", "env", "intent", "artifacts")


@pytest.mark.parametrize("workers", [0, 2])
def test_chain_with_branch_commits_and_writes_one_bundle_per_task(ws, write_wf, workers):
    wf = write_wf(CHAIN)
    summary = run_workflow(ws, wf, {}, RunOptions(workers=workers, seed=3))
    assert summary.ok, summary
    states = {t.name: t.state for t in summary.tasks}
    assert states == {"make": "committed", "decide": "committed", "double": "committed",
                      "triple": "skipped", "total": "committed"}
    cks = ws.store.list_checkpoints(summary.run_id)
    assert [c.task for c in cks] == ["make", "decide", "double", "total"]
    for ck in cks:
        doc = ck.doc
        for part in PARTS:
            assert part in doc, (ck.task, part)
        assert doc["profile"]["kind"] == "simulation"
    total = cks[-1]
    assert total.doc["manifest"]["inputs"] == {"double/scaled": cks[2].outputs[0].sha256}
    assert total.parents == [cks[2].id]
    assert OutputsView("total", total.outputs, ws.store.artifacts).load("total") == {"total": 12}
    assert [c.key for c in total.claims] == ["chain.total"]
    assert cks[1].doc["manifest"]["branch"] == "double"
    # hash chain: each bundle names the previous one written in the run
    assert [c.prev for c in cks] == [None] + [c.id for c in cks[:-1]]
    run = ws.store.get_run(summary.run_id)
    assert run.status == "succeeded" and run.params == {"scale": 2.0, "log": ""}


def test_other_branch_taken_when_param_changes(ws, write_wf):
    wf = write_wf(CHAIN)
    summary = run_workflow(ws, wf, {"scale": "3"}, RunOptions(workers=0))
    states = {t.name: t.state for t in summary.tasks}
    assert states["triple"] == "committed" and states["double"] == "skipped"
    total = ws.store.list_checkpoints(summary.run_id)[-1]
    assert OutputsView("total", total.outputs, ws.store.artifacts).load("total") == {"total": 18}


def test_second_run_hits_cache_and_no_cache_forces(ws, write_wf, tmp_path):
    wf = write_wf(CHAIN)
    log = tmp_path / "log.txt"
    first = run_workflow(ws, wf, {"log": str(log)}, RunOptions(workers=0))
    assert log.read_text().split() == ["make", "decide", "double", "total"]
    log.write_text("")
    second = run_workflow(ws, wf, {"log": str(log)}, RunOptions(workers=0))
    assert second.ok and log.read_text() == ""
    assert all(t.cached for t in second.tasks if t.state == "committed")
    cached = ws.store.list_checkpoints(second.run_id)
    originals = {c.task: c for c in ws.store.list_checkpoints(first.run_id)}
    for ck in cached:
        assert ck.doc["cache"]["hit"] == originals[ck.task].id
        assert [o.sha256 for o in ck.outputs] == [o.sha256 for o in originals[ck.task].outputs]
    third = run_workflow(ws, wf, {"log": str(log)}, RunOptions(workers=0, no_cache=True))
    assert third.ok and log.read_text().split() == ["make", "decide", "double", "total"]


def test_invalidated_cache_entry_is_not_reused(ws, write_wf, tmp_path):
    wf = write_wf(CHAIN)
    log = tmp_path / "log.txt"
    first = run_workflow(ws, wf, {"log": str(log)}, RunOptions(workers=0))
    make = next(c for c in ws.store.list_checkpoints(first.run_id) if c.task == "make")
    assert ws.store.invalidate_cache([make.id], "built on a retracted asset") == 1
    log.write_text("")
    run_workflow(ws, wf, {"log": str(log)}, RunOptions(workers=0))
    assert log.read_text().split() == ["make"]  # make re-ran; its outputs are equal so the rest hit the cache


RETRY = '''
from pathlib import Path
from headwater import Workflow

wf = Workflow("retry")
wf.param("marker", "str")

@wf.task(retries=2)
def flaky(ctx):
    marker = Path(ctx.params["marker"])
    if not marker.exists():
        marker.write_text("failed once")
        print("about to fail")
        raise RuntimeError("transient failure")
    ctx.save("ok", "fine")

@wf.task(after=flaky)
def after(ctx):
    ctx.save("echo", ctx.load("ok") + "!")
'''


def test_retry_after_failure_writes_failed_checkpoint_with_heavy_capture(ws, write_wf, tmp_path):
    wf = write_wf(RETRY)
    summary = run_workflow(ws, wf, {"marker": str(tmp_path / "m")}, RunOptions(workers=0, seed=1))
    assert summary.ok
    cks = ws.store.list_checkpoints(summary.run_id)
    failed = [c for c in cks if c.status == "failed"]
    assert len(failed) == 1 and failed[0].attempt == 1
    doc = failed[0].doc
    assert "failed" in doc["heavy"]["triggers"]
    stdout = ws.store.artifacts.get_bytes(doc["heavy"]["artifacts"]["stdout"]).decode()
    assert "about to fail" in stdout
    assert "transient failure" in doc["error"]
    flaky = [c for c in cks if c.task == "flaky" and c.status == "committed"]
    assert flaky[0].attempt == 2


ALWAYS_FAILS = '''
from headwater import Workflow

wf = Workflow("fails")

@wf.task(retries=1)
def broken(ctx):
    raise ValueError("bad input")

@wf.task(after=broken)
def never(ctx):
    ctx.save("x", 1)

@wf.task()
def independent(ctx):
    ctx.save("y", 2)
'''


def test_exhausted_retries_fail_the_run_but_independent_work_commits(ws, write_wf):
    wf = write_wf(ALWAYS_FAILS)
    summary = run_workflow(ws, wf, {}, RunOptions(workers=0))
    assert summary.status == "failed" and not summary.ok
    states = {t.name: t.state for t in summary.tasks}
    assert states["broken"] == "failed" and states["independent"] == "committed"
    assert states["never"] != "committed"
    assert "bad input" in next(t.error for t in summary.tasks if t.name == "broken")
    assert ws.store.get_run(summary.run_id).status == "failed"
    assert len([c for c in ws.store.list_checkpoints(summary.run_id) if c.task == "broken"]) == 2


INVARIANT = '''
from headwater import Workflow

wf = Workflow("inv", profile="simulation")

@wf.task()
def sim(ctx):
    ctx.numerics(solver="euler", dt=0.1)
    ctx.invariant("mass", 0.9, expected=1.0, tol=0.01)
    ctx.save("state", [0.9])
'''


def test_violated_invariant_fails_task_and_keeps_heavy_capture(ws, write_wf):
    wf = write_wf(INVARIANT)
    summary = run_workflow(ws, wf, {}, RunOptions(workers=0))
    assert summary.status == "failed"
    ck = ws.store.list_checkpoints(summary.run_id)[0]
    assert ck.status == "failed"
    doc = ck.doc
    assert "invariant_violated" in doc["heavy"]["triggers"]
    assert doc["profile"]["invariants"][0]["ok"] is False
    assert "env_export" in doc["heavy"]["artifacts"]


def test_first_checkpoint_of_campaign_gets_heavy_capture_only_once(ws, write_wf):
    wf = write_wf(CHAIN)
    first = run_workflow(ws, wf, {}, RunOptions(workers=0))
    cks = ws.store.list_checkpoints(first.run_id)
    assert cks[0].doc["heavy"]["triggers"] == ["first_in_campaign"]
    assert all("heavy" not in c.doc for c in cks[1:])
    second = run_workflow(ws, wf, {"scale": "2.1"}, RunOptions(workers=0, why="try 2.1"))
    later = ws.store.list_checkpoints(second.run_id)
    assert all("heavy" not in c.doc for c in later)
    diff = later[0].doc["spec_diff"]
    assert diff["against"] == cks[0].id and "params.scale" in diff["changed"] and diff["why"] == "try 2.1"


def test_bad_params_are_refused_before_anything_runs(ws, write_wf):
    from headwater.errors import SpecError

    wf = write_wf(CHAIN)
    with pytest.raises(SpecError) as info:
        run_workflow(ws, wf, {"scale": "lots"}, RunOptions(workers=0))
    assert info.value.field == "params.scale"
    assert ws.store.list_runs() == []


def test_median_bundle_is_small(ws, write_wf):
    wf = write_wf(CHAIN)
    summary = run_workflow(ws, wf, {}, RunOptions(workers=0))
    sizes = sorted(len(c.bundle) for c in ws.store.list_checkpoints(summary.run_id))
    assert sizes[len(sizes) // 2] < 4096
    json.loads(ws.store.list_checkpoints(summary.run_id)[0].bundle)


def test_declared_uses_are_resolved_and_recorded(ws, write_wf):
    producer = write_wf('''
from headwater import Workflow
wf = Workflow("producer")
@wf.task()
def make(ctx):
    ctx.claim("g", 9.81, uncertainty=0.01, units="m/s^2")
''')
    first = run_workflow(ws, producer, {}, RunOptions(workers=0))
    claim_ck = ws.store.list_checkpoints(first.run_id)[0]
    consumer = write_wf('''
from headwater import Workflow
wf = Workflow("consumer")
@wf.task(uses=["claim:g", "lib:pyyaml", "dataset:survey@2024-01"])
def use(ctx):
    ctx.save("ok", True)
''')
    second = run_workflow(ws, consumer, {}, RunOptions(workers=0))
    ck = ws.store.list_checkpoints(second.run_id)[0]
    versions = ck.doc["manifest"]["versions"]
    assert versions["claim:g"] == claim_ck.id[:12]
    assert versions["dataset:survey"] == "2024-01"
    import yaml

    assert versions["lib:pyyaml"] == yaml.__version__


def test_a_declared_claim_that_does_not_exist_fails_the_task(ws, write_wf):
    consumer = write_wf('''
from headwater import Workflow
wf = Workflow("needs")
@wf.task(uses=["claim:missing.constant"])
def use(ctx):
    ctx.save("ok", True)
''')
    summary = run_workflow(ws, consumer, {}, RunOptions(workers=0))
    assert summary.status == "failed"
    assert "missing.constant" in summary.tasks[0].error
