"""The monitors a run's end runs: all the cheap ones, through the breaker, time-boxed."""

import logging

from headwater.oversight import AssetStatus
from headwater.runtime import RunOptions, run_workflow
from headwater.runtime.fleet import Fleet
from tests.oversight.test_runtime import IMPLS

S = AssetStatus

SHIFTED = '''
from headwater import Workflow
wf = Workflow("shift-{n}")
wf.param("value", "float", default=1.0)

@wf.task(uses=["dataset:survey@{version}"])
def measure(ctx):
    ctx.claim("shift.h", ctx.params["value"], uncertainty=0.001)
'''


def run(ws, path, params=None):
    return run_workflow(ws, path, params or {}, RunOptions(workers=0))


def test_a_run_end_flags_redundancy_disagreement_without_a_monitor_pass(ws, write_wf):
    assert run(ws, write_wf(IMPLS.format(asset="solver_e", share=1.0))).ok
    assert ws.store.version_status("lib:solver_e/fast@2.0") is S.SUSPECT
    assert ws.store.version_status("lib:solver_e/reference@1.0") is S.SUSPECT
    flags = [r for r in ws.store.audit_log(subject="lib:solver_e/fast") if r.actor == "monitor:redundancy"]
    assert flags and flags[0].action.startswith("flag")
    # the concentration and coverage reports were taken too
    (report,) = ws.store.events_of_kind("monitor-report")
    assert report.data["concentration"][0]["workflows"] == 1 and isinstance(report.data["unwatched"], list)
    assert report.run_id is None and report.data["run"] == ws.store.list_runs()[0].id


def test_a_run_end_flags_an_output_shift_on_its_own_claim_keys(ws, write_wf):
    for i in range(6):
        assert run(ws, write_wf(SHIFTED.format(n=f"a{i}", version="1")), {"value": 1.0 + i * 1e-4}).ok
    assert ws.store.version_status("dataset:survey@2") is None
    for i in range(6):
        assert run(ws, write_wf(SHIFTED.format(n=f"b{i}", version="2")), {"value": 5.0 + i * 1e-4}).ok
    assert ws.store.version_status("dataset:survey@2") is not None
    assert any(r.actor == "monitor:output-shift" for r in ws.store.audit_log(subject="dataset:survey@2"))


def test_fleet_wide_monitors_are_skipped_with_a_log_line_when_the_fleet_is_large(ws, write_wf, caplog):
    assert run(ws, write_wf(IMPLS.format(asset="solver_f", share=1.0))).ok
    fleet = Fleet(ws.store)
    with caplog.at_level(logging.INFO, logger="headwater.runtime.fleet"):
        report = fleet.run_end(["solver_f.out"], run_id="r-big", limit=0)
    assert report.skipped == ["redundancy", "verification", "concentration+coverage"]
    assert report.findings.disagreements == [] and report.reports is None
    assert "r-big" in caplog.text and "> 0" in caplog.text and "headwater monitors run" in caplog.text
    # within the limit but with no time left, the same, for the other reason
    with caplog.at_level(logging.INFO, logger="headwater.runtime.fleet"):
        report = fleet.run_end([], run_id="r-late", budget=-1.0)
    assert report.skipped == ["redundancy", "verification", "concentration+coverage"]
    assert "budget" in caplog.text
    # with room and time, each runs
    report = fleet.run_end([], run_id="r-ok")
    assert report.skipped == [] and [d.asset for d in report.findings.disagreements] == ["lib:solver_f"]
    assert report.reports is not None and "unwatched" in report.to_json()["reports"]
