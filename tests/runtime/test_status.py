"""``headwater status`` and the structured log, in-process."""

import json

from typer.testing import CliRunner

from headwater.cli import app
from headwater.runtime import RunOptions, run_workflow
from tests.runtime.test_speculation import REFUTED_ONCE


def test_status_json_reports_states_speculation_and_latency(ws, write_wf, tmp_path, monkeypatch):
    wf = write_wf(REFUTED_ONCE)
    summary = run_workflow(ws, wf, {"marker": str(tmp_path / "seen")}, RunOptions(workers=3, speculate=2))
    monkeypatch.setenv("HEADWATER_HOME", str(ws.root))
    result = CliRunner().invoke(app, ["status", summary.run_id[:8], "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["status"] == "succeeded" and data["tasks"] == 3
    assert data["tasks_by_state"]["committed"] == 3
    assert data["checkpoints_by_status"] == {"committed": 3, "refuted": 1, "squashed": 2}
    assert data["squashed"] == 2 and data["speculative"] >= 2
    assert data["counters"]["refuted"] == 1 and data["latency"]["verification_count"] >= 1
    table = CliRunner().invoke(app, ["status", summary.run_id, "--once"])
    assert table.exit_code == 0 and "tasks by state" in table.output and summary.run_id in table.output


def test_json_lines_log_carries_run_task_attempt_agent_event(ws, write_wf, tmp_path):
    wf = write_wf(REFUTED_ONCE)
    summary = run_workflow(ws, wf, {"marker": str(tmp_path / "seen")}, RunOptions(workers=3, speculate=2))
    lines = [json.loads(x) for x in (ws.root / "logs" / f"{summary.run_id}.jsonl").read_text().splitlines()]
    assert all(x["run"] == summary.run_id and {"task", "attempt", "agent", "event", "ts"} <= set(x) for x in lines)
    events = [x["event"] for x in lines]
    assert events[0] == "run_started" and events[-1] == "run_finished"
    squashed = [x for x in lines if x["event"] == "squashed"]
    assert {x["task"] for x in squashed} == {"b", "c"} and all("refuted" in x["reason"] for x in squashed)
    assert any(x["event"] == "dispatched" and x["agent"] for x in lines)


def test_run_command_takes_the_scheduling_flags(ws, write_wf, tmp_path, monkeypatch):
    wf = write_wf(REFUTED_ONCE)
    monkeypatch.setenv("HEADWATER_HOME", str(ws.root))
    result = CliRunner().invoke(app, [
        "run", wf.source_file, "--param", f"marker={tmp_path / 'seen'}", "--workers", "3", "--speculate", "adaptive",
        "--recheck", "backoff", "--roles", "worker,verifier", "--backup-stragglers", "--predict", "history", "--json",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["status"] == "succeeded" and summary["counters"]["refuted"] == 1
    run = ws.store.get_run(summary["run_id"])
    assert run.options["recheck"] == "backoff" and run.options["roles"] == [["worker", "verifier"]]
    assert run.options["backup_stragglers"] is True and run.options["speculate"] == "adaptive"
