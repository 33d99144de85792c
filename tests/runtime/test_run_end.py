"""What a run does once its last task is done: the last batch, durability, the guard's history."""

from __future__ import annotations

import pytest

from headwater.runtime import RunOptions, run_workflow
from headwater.runtime import coordinator as C
from headwater.runtime.executors import InlineExecutor
from headwater.runtime.recorder import StoreWriter
from tests.runtime.workflows import CHAIN


def test_the_last_checkpoints_reach_the_writer_before_the_agents_stop(ws, write_wf, monkeypatch):
    """The final batch is handed over as soon as the work is done, so its
    commit overlaps with stopping the agents; the run is still marked
    succeeded only once every checkpoint is durable."""
    marked: list[list[str]] = []
    real_status = ws.store.set_run_status

    def set_run_status(run_id, status, *args, **kw):
        if status == "succeeded":  # what is durable when the run says it succeeded
            marked.append([ck.task for ck in ws.store.list_checkpoints(run_id) if ck.status == "committed"])
        return real_status(run_id, status, *args, **kw)

    submitted: list[str] = []
    seen_at_close: list[list[str]] = []
    real_submit, real_close = StoreWriter.submit, InlineExecutor.close

    def submit(self, ckpts, tasks, events, status):
        submitted.extend(ck.task for ck in ckpts)
        return real_submit(self, ckpts, tasks, events, status)

    def close(self):
        seen_at_close.append(list(submitted))
        return real_close(self)

    monkeypatch.setattr(ws.store, "set_run_status", set_run_status)
    monkeypatch.setattr(StoreWriter, "submit", submit)
    monkeypatch.setattr(InlineExecutor, "close", close)
    summary = run_workflow(ws, write_wf(CHAIN), {}, RunOptions(workers=0, seed=3))
    assert summary.ok
    assert seen_at_close == [["make", "decide", "double", "total"]]
    assert marked == [["make", "decide", "double", "total"]]
    assert ws.store.get_run(summary.run_id).status == "succeeded"


def test_the_guard_reuses_the_history_the_coordinator_loaded(ws, write_wf, monkeypatch):
    wf = write_wf(CHAIN)
    first = run_workflow(ws, wf, {}, RunOptions(workers=0, seed=3, no_cache=True))
    calls: list[str] = []
    real = ws.store.latest_checkpoints
    monkeypatch.setattr(ws.store, "latest_checkpoints",
                        lambda workflow, **kw: calls.append(workflow) or real(workflow, **kw))
    guards: list = []
    real_init = C.DispatchGuard.__init__

    def init(self, *args, **kw):
        real_init(self, *args, **kw)
        guards.append(self)

    monkeypatch.setattr(C.DispatchGuard, "__init__", init)
    second = run_workflow(ws, wf, {}, RunOptions(workers=0, seed=3, no_cache=True))
    assert second.ok and calls == ["chain"]  # once per run, not once more for the guard
    old = {ck.task: ck.id for ck in ws.store.list_checkpoints(first.run_id)}
    assert {t: ck.id for t, ck in guards[0]._previous.items()} == old


def test_an_error_stopping_the_agents_is_raised_after_the_run_is_durable(ws, write_wf, monkeypatch):
    def close(self):
        raise RuntimeError("agent inbox broken")

    monkeypatch.setattr(InlineExecutor, "close", close)
    wf = write_wf(CHAIN)
    with pytest.raises(RuntimeError, match="agent inbox broken"):
        run_workflow(ws, wf, {}, RunOptions(workers=0, seed=3))
    (run,) = ws.store.list_runs()
    assert run.status == "succeeded"
    assert [ck.task for ck in ws.store.list_checkpoints(run.id)] == ["make", "decide", "double", "total"]
