"""Compute pools place work: agents belong to pools, a task that names pools
runs only on an agent of the first healthy one, and a degraded pool gets no
new tasks (work goes to the next pool, or is held when there is none)."""

import functools
import json
import os

import pytest
from typer.testing import CliRunner

import headwater.runtime.coordinator as coordinator_module
from headwater.cli import app
from headwater.errors import HeadwaterError, RunError
from headwater.runtime import RunOptions, run_workflow
from headwater.runtime.executors import LocalProcessExecutor
from headwater.runtime.fleet import Fleet
from headwater.runtime.guard import DispatchGuard
from headwater.runtime.logs import log_path
from headwater.schedule import Scheduler, State, TaskDef

PLACED = '''
import os, time
from headwater import Workflow
wf = Workflow("placed")

def where(ctx, seconds=0.0):
    time.sleep(seconds)
    ctx.save("pid", os.getpid())

@wf.task(pools="gpu")
def g1(ctx): where(ctx, 0.1)

@wf.task(pools="gpu")
def g2(ctx): where(ctx, 0.1)

@wf.task(pools="gpu")
def g3(ctx): where(ctx, 0.1)

@wf.task(pools="gpu")
def g4(ctx): where(ctx, 0.1)

@wf.task(pools=["cpu"])
def c1(ctx): where(ctx)

@wf.task(pools=["cpu"])
def c2(ctx): where(ctx)

@wf.task()
def free1(ctx): where(ctx)

@wf.task()
def free2(ctx): where(ctx)
'''

CHAIN = '''
from headwater import Workflow
wf = Workflow("pooled-chain")

@wf.task(pools=["gpu-a", "gpu-b"])
def t1(ctx): ctx.save("n", 1)

@wf.task(pools=["gpu-a", "gpu-b"], after="t1")
def t2(ctx): ctx.save("n", 2)

@wf.task(pools=["gpu-a", "gpu-b"], after="t2")
def t3(ctx): ctx.save("n", 3)

@wf.task(pools=["gpu-a", "gpu-b"], after="t3")
def t4(ctx): ctx.save("n", 4)
'''

STRANDED = '''
from headwater import Workflow
wf = Workflow("stranded")

@wf.task()
def prepare(ctx): ctx.save("x", 1)

@wf.task(pools="gpu", after="prepare")
def train(ctx): ctx.save("w", 2)

@wf.task(after="prepare")
def report(ctx): ctx.save("r", 3)
'''

MIXED = '''
from headwater import Workflow
wf = Workflow("unplaced")

@wf.task()
def a(ctx): ctx.save("x", 1)

@wf.task(pools=["gpu-a", "gpu-b"], after="a")
def b(ctx): ctx.save("y", 2)
'''


def compute_of(ws, run_id) -> dict[str, str]:
    """task -> the compute pool its committed checkpoint records."""
    return {ck.task: next(u.name for u in ck.uses if u.kind == "compute")
            for ck in ws.store.list_checkpoints(run_id) if ck.status == "committed"}


def log_events(ws, run_id) -> list[dict]:
    return [json.loads(line) for line in log_path(ws.root, run_id).read_text().splitlines()]


def placements(ws, run_id) -> dict[str, str]:
    """task -> pool of the agent each run message was sent to (from the run log)."""
    events = log_events(ws, run_id)
    members = next(e["pools"] for e in events if e["event"] == "agents")
    pool_of = {agent: pool for pool, agents in members.items() for agent in agents}
    return {e["task"]: pool_of[e["agent"]] for e in events if e["event"] == "dispatched" and e["kind"] == "run"}


def test_tasks_run_only_on_agents_of_their_pool(ws, write_wf):
    wf = write_wf(PLACED)
    roles = frozenset(t.role for t in wf.tasks.values())
    # gpu work is declared first: claimed best first, it would land on every
    # agent in the first round if pools were not respected; with a prefetch of
    # 4 the gpu agent's queue is what idle cpu agents would steal from.
    ex = LocalProcessExecutor(wf, ws.store.artifacts.url, roles, 3, prefetch=4, agent_pools=["gpu", "cpu", "cpu"])
    pool_of_pid = {ex.pid(agent): info.pool for agent, info in ex.agents.items()}
    summary = run_workflow(ws, wf, {}, RunOptions(pools={"gpu": 1, "cpu": 2}, prefetch=4), executor=ex)
    assert summary.ok, summary
    ran_in = {}
    for ck in ws.store.list_checkpoints(summary.run_id):
        pid = json.loads(ws.store.artifacts.get_bytes(ck.outputs[0].sha256))
        ran_in[ck.task] = pool_of_pid[pid]
    expected = {"g1": "gpu", "g2": "gpu", "g3": "gpu", "g4": "gpu", "c1": "cpu", "c2": "cpu"}
    assert {t: ran_in[t] for t in expected} == expected
    assert {ran_in["free1"], ran_in["free2"]} <= {"gpu", "cpu"}
    # what the checkpoint records is where the task ran, and so is the log
    assert compute_of(ws, summary.run_id) == ran_in
    assert placements(ws, summary.run_id) == ran_in


def test_a_pool_flagged_mid_run_gets_no_new_tasks(ws, write_wf, monkeypatch):
    # the guard rereads oversight state at every decision, so the flag below
    # takes effect at the next dispatch instead of within half a second
    monkeypatch.setattr(coordinator_module, "DispatchGuard", functools.partial(DispatchGuard, refresh=0.0))
    wf = write_wf(CHAIN)
    fleet = Fleet(ws.store)

    def progress(kind, data):
        if kind == "task" and data == {"task": "t2", "state": "committed"}:
            fleet.flag("compute:gpu-a", "ECC errors", trip=True)

    summary = run_workflow(ws, wf, {}, RunOptions(workers=0, pools={"gpu-a": 1, "gpu-b": 1}), progress)
    assert summary.ok, summary
    expected = {"t1": "gpu-a", "t2": "gpu-a", "t3": "gpu-b", "t4": "gpu-b"}
    assert compute_of(ws, summary.run_id) == expected
    assert placements(ws, summary.run_id) == expected


def test_a_task_whose_pools_have_no_agents_is_held_and_the_run_stops(ws, write_wf):
    wf = write_wf(STRANDED)
    summary = run_workflow(ws, wf, {}, RunOptions(workers=0, pools={"cpu": 2}))
    assert summary.status == "interrupted"
    states = {t.name: t.state for t in summary.tasks}
    assert states == {"prepare": "committed", "train": "paused", "report": "committed"}
    # the summary says why, next to the paused task
    notes = {t.name: t.error for t in summary.tasks}
    assert notes == {"prepare": None, "train": "no healthy compute pool for task 'train': gpu (no agents in this run)",
                     "report": None}
    # work that names no pool runs on the pools the run has
    assert compute_of(ws, summary.run_id) == {"prepare": "cpu", "report": "cpu"}
    audit = ws.store.audit_log(run_id=summary.run_id)
    hold = next(r for r in audit if r.action == "hold")
    assert hold.task == "train"
    assert hold.reason == "no healthy compute pool for task 'train': gpu (no agents in this run)"
    stop = next(r for r in audit if r.action == "stop")
    assert "train: no healthy compute pool" in stop.reason and "gpu (no agents" in stop.reason
    assert ws.store.get_run(summary.run_id).options["pools"] == {"cpu": 2}


def test_a_task_held_for_its_pool_names_the_pool_status(ws, write_wf):
    wf = write_wf(STRANDED)
    Fleet(ws.store).flag("compute:gpu", "thermal throttling", trip=True)
    summary = run_workflow(ws, wf, {}, RunOptions(workers=0, pools={"cpu": 1, "gpu": 1}))
    assert summary.status == "interrupted"
    assert {t.name: t.state for t in summary.tasks}["train"] == "paused"
    # the degraded pool takes no work at all, not even work that names no pool
    assert compute_of(ws, summary.run_id) == {"prepare": "cpu", "report": "cpu"}
    hold = next(r for r in ws.store.audit_log(run_id=summary.run_id) if r.action == "hold")
    assert hold.reason == "no healthy compute pool for task 'train': gpu (degraded)"


@pytest.mark.parametrize("workers", [0, 2])
def test_runs_without_pools_do_not_place_work(ws, write_wf, workers):
    wf = write_wf(MIXED)
    summary = run_workflow(ws, wf, {}, RunOptions(workers=workers))
    assert summary.ok, summary
    # every agent serves every pool: the guard's choice is recorded, as before
    assert compute_of(ws, summary.run_id) == {"a": "local", "b": "gpu-a"}
    events = log_events(ws, summary.run_id)
    assert not [e for e in events if e["event"] == "agents"]
    assert all("pool" not in e for e in events if e["event"] == "dispatched")


def test_pool_options_are_checked(ws, write_wf):
    wf = write_wf(MIXED)
    with pytest.raises(RunError, match="pool 'gpu' has 0 agents"):
        run_workflow(ws, wf, {}, RunOptions(workers=0, pools={"gpu": 0}))
    verified = write_wf('''
from headwater import Workflow
wf = Workflow("verified")

@wf.task(verify=2)
def a(ctx): ctx.save("x", 1)
''')
    with pytest.raises(RunError, match="give the pools 3 agents or more"):
        run_workflow(ws, verified, {}, RunOptions(workers=0, pools={"gpu": 1, "cpu": 1}))


def test_the_core_passes_over_tasks_the_shell_refuses():
    tasks = [TaskDef("a", priority=2), TaskDef("b", priority=1), TaskDef("c")]
    sched = Scheduler(tasks)
    refused: list[str] = []

    def not_a(task: str) -> bool:
        refused.append(task)
        return task != "a"

    leases = sched.claim("cpu-1", ["worker"], 0.0, limit=1, accept=not_a)
    assert [lease.task for lease in leases] == ["b"] and refused == ["a", "b"]
    assert sched.state_of("a") is State.READY
    # refused work stays queued, best first, for the next agent
    assert [lease.task for lease in sched.claim("gpu-1", ["worker"], 0.0, limit=2)] == ["a", "c"]


def test_cli_takes_pools(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWATER_HOME", str(tmp_path / ".headwater"))
    monkeypatch.delenv("HEADWATER_STORE", raising=False)
    path = tmp_path / "stranded.py"
    path.write_text(STRANDED)
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(path), "--workers", "0", "--pool", "cpu=1", "--pool", "gpu=1",
                                 "--json"], catch_exceptions=False)
    out = json.loads(result.output)
    assert result.exit_code == 0, result.output
    assert out["status"] == "succeeded"
    with pytest.raises(HeadwaterError, match="--pool 'gpu': expected NAME=N"):
        runner.invoke(app, ["run", str(path), "--pool", "gpu"], catch_exceptions=False)
    with pytest.raises(HeadwaterError, match="--workers 3 disagrees with --pool, which gives 2 agent"):
        runner.invoke(app, ["run", str(path), "--workers", "3", "--pool", "gpu=2"], catch_exceptions=False)


def test_dask_agents_of_a_pool_run_on_workers_offering_it(ws, write_wf):
    pytest.importorskip("distributed")
    from headwater.runtime.dask_executor import DaskExecutor

    wf = write_wf(PLACED)
    roles = frozenset(t.role for t in wf.tasks.values())
    ex = DaskExecutor(wf, ws.store.artifacts.url, roles, 3, agent_pools=["gpu", "cpu", "cpu"])
    try:
        ex.client.wait_for_workers(3, timeout=60)
        workers = ex.client.scheduler_info()["workers"]
        pool_of_pid = {pid: next(iter(workers[addr]["resources"]))[len("pool-"):]
                       for addr, pid in ex.client.run(os.getpid).items()}
        summary = run_workflow(ws, wf, {}, RunOptions(executor="dask", pools={"gpu": 1, "cpu": 2}), executor=ex)
    finally:
        ex.close()
    assert summary.ok, summary
    ran_in = {ck.task: pool_of_pid[json.loads(ws.store.artifacts.get_bytes(ck.outputs[0].sha256))]
              for ck in ws.store.list_checkpoints(summary.run_id)}
    assert {t: p for t, p in ran_in.items() if t[0] in "gc"} == \
        {"g1": "gpu", "g2": "gpu", "g3": "gpu", "g4": "gpu", "c1": "cpu", "c2": "cpu"}
    assert compute_of(ws, summary.run_id) == ran_in


STRAGGLER = '''
import os, time
from headwater import Workflow
wf = Workflow("straggler")

@wf.task(pools="gpu")
def q1(ctx): ctx.save("pid", os.getpid())

@wf.task(pools="gpu")
def q2(ctx): ctx.save("pid", os.getpid())

@wf.task(pools="gpu")
def q3(ctx): ctx.save("pid", os.getpid())

@wf.task(pools="gpu", after=["q1", "q2", "q3"])
def slow(ctx):
    time.sleep(1.0)
    ctx.save("pid", os.getpid())
'''


def test_a_straggler_is_backed_up_only_within_its_pool(ws, write_wf):
    wf = write_wf(STRAGGLER)
    roles = frozenset(t.role for t in wf.tasks.values())
    # the idle cpu agent comes first: it would be the backup if pools were not respected
    ex = LocalProcessExecutor(wf, ws.store.artifacts.url, roles, 3, agent_pools=["cpu", "gpu", "gpu"])
    pool_of = {agent: info.pool for agent, info in ex.agents.items()}
    pool_of_pid = {ex.pid(agent): info.pool for agent, info in ex.agents.items()}
    summary = run_workflow(ws, wf, {}, RunOptions(pools={"cpu": 1, "gpu": 2}, backup_stragglers=True,
                                                  straggler_factor=2.0), executor=ex)
    assert summary.ok, summary
    backups = [e for e in log_events(ws, summary.run_id) if e["event"] == "backup"]
    assert [e["task"] for e in backups] == ["slow"]
    assert pool_of[backups[0]["agent"]] == "gpu" and backups[0]["agent"] != backups[0]["running_on"]
    for ck in ws.store.list_checkpoints(summary.run_id):
        assert pool_of_pid[json.loads(ws.store.artifacts.get_bytes(ck.outputs[0].sha256))] == "gpu", ck.task


def test_work_held_for_its_pool_moves_to_that_pool_once_it_is_cleared(ws, write_wf):
    wf = write_wf(STRANDED)
    fleet = Fleet(ws.store)
    fleet.flag("compute:gpu", "thermal throttling", trip=True)

    def progress(kind, data):
        if kind == "task" and data == {"task": "prepare", "state": "committed"}:
            fleet.change("compute:gpu", "override", "fans replaced")

    # the first agent (cpu) takes the task it cannot place, and the guard holds it
    summary = run_workflow(ws, wf, {}, RunOptions(workers=0, pools={"cpu": 1, "gpu": 1}, hold=10.0), progress)
    assert summary.ok, summary
    hold = next(r for r in ws.store.audit_log(run_id=summary.run_id) if r.action == "hold")
    assert (hold.task, hold.reason) == ("train", "no healthy compute pool for task 'train': gpu (degraded)")
    assert compute_of(ws, summary.run_id) == {"prepare": "cpu", "train": "gpu", "report": "cpu"}
    assert placements(ws, summary.run_id)["train"] == "gpu"


SPLIT_CHAIN = '''
import os
from headwater import Workflow
wf = Workflow("split-chain")

def step(ctx):
    ctx.save("pid", os.getpid())

for i in range(120):
    wf.task(step, name=f"s{i:03d}", after=[f"s{i - 1:03d}"] if i else [], pools="a" if i < 60 else "b")
'''


def test_chains_run_back_to_back_only_within_a_pool(ws, write_wf, monkeypatch):
    # every task counts as short, however loaded the machine running the test is
    monkeypatch.setattr(coordinator_module, "FOLLOW_BELOW", float("inf"))
    wf = write_wf(SPLIT_CHAIN)
    roles = frozenset(t.role for t in wf.tasks.values())
    ex = LocalProcessExecutor(wf, ws.store.artifacts.url, roles, 2, agent_pools=["a", "b"])
    pool_of_pid = {ex.pid(agent): info.pool for agent, info in ex.agents.items()}
    summary = run_workflow(ws, wf, {}, RunOptions(pools={"a": 1, "b": 1}, no_cache=True), executor=ex)
    assert summary.ok, summary
    assert summary.counters["ran_ahead"] > 0  # the chain did run ahead in its agent
    for ck in ws.store.list_checkpoints(summary.run_id):
        expected = "a" if ck.task < "s060" else "b"
        assert pool_of_pid[json.loads(ws.store.artifacts.get_bytes(ck.outputs[0].sha256))] == expected, ck.task
        assert [u.name for u in ck.uses if u.kind == "compute"] == [expected]
