"""Structured log lines and the collector settings a run works under."""

import gc
import json

import pytest

from headwater.runtime.coordinator import GC_YOUNG, quiet_gc
from headwater.runtime.logs import RunLog


@pytest.mark.parametrize("fields", [
    (1.7e9 + 0.1234567, "dispatched", "r1", "t1", 1, "local-1", {"kind": "run", "token": 5}),
    (1.7e9, "committed", "r1", 'tä"x\n', 2, None, {"checkpoint": None}),
    (1.7e9, "run_started", "r1", None, None, None, {"tasks": 3, "speculate": "adaptive"}),
    (1.7e9, "resumed", "r1", None, None, None, None),
    (1.7e9, "odd", "r1", "t", True, None, {"task": "not the task", "set": {1}}),
    (float("nan"), "odd", "r1", "t", 1, None, {"f": float("inf")}),
])
def test_log_lines_are_the_event_record_as_json(tmp_path, fields):
    ts, event, run, task, attempt, agent, data = fields
    log = RunLog(tmp_path / "run.jsonl")
    log.write(ts, event, run, task, attempt, agent, data)
    log.close()
    line = (tmp_path / "run.jsonl").read_text()
    record = {"ts": round(ts, 6), "run": run, "task": task, "attempt": attempt, "agent": agent, "event": event}
    for key, value in (data or {}).items():
        record.setdefault(key, value)
    assert line == json.dumps(record, default=str, separators=(",", ":")) + "\n"


def test_quiet_gc_restores_the_collector():
    before = gc.get_threshold()
    with quiet_gc() as settle:
        assert gc.get_threshold()[0] == max(before[0], GC_YOUNG)
        assert gc.get_freeze_count() > 0
        settle()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_quiet_gc_leaves_a_callers_freeze_and_thresholds_alone():
    gc.freeze()
    try:
        frozen, before = gc.get_freeze_count(), gc.get_threshold()
        with quiet_gc() as settle:  # e.g. a second run in the same process
            settle()
            assert (gc.get_freeze_count(), gc.get_threshold()) == (frozen, before)
        assert (gc.get_freeze_count(), gc.get_threshold()) == (frozen, before)
    finally:
        gc.unfreeze()
