"""Coordinator processes on the shared queue: the kill test and the duty-lock takeover."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import sqlalchemy as sa

from headwater.runtime import open_workspace
from headwater.runtime.coordinators import DutyLock, SharedCoordinator
from headwater.runtime.shared import submit_run
from headwater.spec import load_workflow
from headwater.store import open_store
from headwater.store import schema as t
from headwater.store.queue import WorkQueue

FLEET = '''
from headwater import Workflow

wf = Workflow("fleet")
CHAINS, LENGTH = {chains}, {length}


def _step(ctx):
    chain, _, i = ctx.task.partition("_")
    prev = int(i) - 1
    ctx.save("v", (ctx.load(f"{{chain}}_{{prev}}/v") if prev >= 0 else 0) + 1)


for c in range(CHAINS):
    for i in range(LENGTH):
        wf.task(_step, name=f"c{{c}}_{{i}}", after=[f"c{{c}}_{{i - 1}}"] if i else [], verify={verify})
'''


def fleet(tmp_path, chains, length, verify=0):
    path = tmp_path / "fleet.py"
    path.write_text(FLEET.format(chains=chains, length=length, verify=verify))
    return load_workflow(path)


def committed_per_task(store, run_id) -> dict[str, int]:
    c = t.checkpoint
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(c.c.task, sa.func.count()).where(c.c.run_id == run_id, c.c.status == "committed")
                            .group_by(c.c.task)).all()
    return dict(rows)


def until(predicate, what: str, limit: float = 120.0):
    """Poll ``predicate`` until it holds; the limit only stops a hung test from hanging the suite."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_coordinator_runs_verified_work_on_sqlite(tmp_path):
    ws = open_workspace(tmp_path / ".headwater")
    wf = fleet(tmp_path, 2, 3, verify=1)
    run_id = submit_run(ws.store, wf)
    stats = SharedCoordinator(ws, workers=2, runs=[run_id], lease_s=10.0).serve(until_done=True, max_seconds=120)
    assert WorkQueue(ws.store).finished(run_id)
    assert (stats.accepted, stats.verdicts, stats.stale, stats.rejected) == (6, 6, 0, 0)
    assert committed_per_task(ws.store, run_id) == {name: 1 for name in wf.tasks}
    assert ws.store.get_run(run_id).status == "succeeded"
    assert stats.monitored == [run_id]  # the end-of-run monitors ran once, as a duty
    assert len(ws.store.list_events(run_id=run_id, kind="queue-monitors")) == 1
    ws.close()


CRASHING = '''
import os
from pathlib import Path
from headwater import Workflow

wf = Workflow("crashing")

@wf.task
def first(ctx):
    marker = Path(__file__).with_name("crashed-once")
    if not marker.exists():
        marker.write_text("")
        os._exit(1)  # the agent process dies mid-task
    ctx.save("v", 1)

@wf.task(after="first")
def second(ctx):
    ctx.save("v", ctx.load("first/v") + 1)
'''


def test_work_of_an_agent_that_died_is_reaped_and_run_again(tmp_path):
    ws = open_workspace(tmp_path / ".headwater")
    path = tmp_path / "crashing.py"
    path.write_text(CRASHING)
    run_id = submit_run(ws.store, load_workflow(path))
    stats = SharedCoordinator(ws, workers=2, runs=[run_id], lease_s=1.0).serve(until_done=True, max_seconds=120)
    assert (stats.agents_lost, stats.reaped, stats.accepted) == (1, 1, 2)
    assert WorkQueue(ws.store).finished(run_id) and ws.store.get_run(run_id).status == "succeeded"
    ws.close()


def test_submit_coordinator_and_queue_status_commands(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from headwater.cli import app

    monkeypatch.setenv("HEADWATER_HOME", str(tmp_path / ".headwater"))
    monkeypatch.delenv("HEADWATER_STORE", raising=False)
    path = tmp_path / "fleet.py"
    path.write_text(FLEET.format(chains=2, length=2, verify=0))
    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    submitted = invoke("submit", path, "--json")
    assert submitted["tasks"] == 4
    run_id = submitted["run"]
    before = invoke("queue", "status", run_id, "--json")
    assert (before["status"], before["tasks_by_state"]) == ("running", {"ready": 2, "pending": 2})
    stats = invoke("coordinator", "--workers", "1", "--run", run_id, "--until-done", "--lease", "10", "--json")
    assert (stats["accepted"], stats["stale"], stats["held_duties"]) == (4, 0, True)
    after = invoke("queue", "status", run_id, "--json")
    assert (after["status"], after["tasks_by_state"]) == ("succeeded", {"committed": 4})


def _coordinator(root, url, run_id, name):
    cmd = [sys.executable, "-m", "headwater", "--home", str(root), "coordinator", "--store", url,
           "--workers", "2", "--run", run_id, "--until-done", "--lease", "2", "--name", name, "--json"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(root.parent))


@pytest.mark.slow
@pytest.mark.postgres
def test_two_coordinators_one_killed_halfway_every_task_committed_once(pg_url, tmp_path):
    root = tmp_path / ".headwater"
    ws = open_workspace(root, pg_url)
    wf = fleet(tmp_path, 20, 50)
    run_id = submit_run(ws.store, wf)
    queue = WorkQueue(ws.store)
    victim = _coordinator(root, pg_url, run_id, "victim")
    survivor = _coordinator(root, pg_url, run_id, "survivor")
    try:
        until(lambda: queue.counts(run_id).get("committed", 0) >= 500, "half the run to commit")
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        qi = t.queue_item
        with ws.store.engine.connect() as conn:
            orphaned = conn.scalar(sa.select(sa.func.count()).where(qi.c.state == "leased",
                                                                    qi.c.holder.like("victim-%")))
        out, errors = survivor.communicate(timeout=120)
    finally:
        for p in (victim, survivor):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert survivor.returncode == 0, errors
    stats = json.loads(out)
    assert stats["held_duties"]
    assert stats["reaped"] >= orphaned  # the victim's leases were reaped by the survivor
    assert queue.finished(run_id)
    assert committed_per_task(ws.store, run_id) == {name: 1 for name in wf.tasks}
    with ws.store.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(t.checkpoint)
                           .where(t.checkpoint.c.run_id == run_id)) == len(wf.tasks)
    assert ws.store.get_run(run_id).status == "succeeded"
    assert len(ws.store.list_events(run_id=run_id, kind="queue-monitors")) == 1
    ws.close()


HOLDER = textwrap.dedent('''
    import sys, time
    from headwater.store import open_store
    from headwater.runtime.coordinators import DutyLock
    lock = DutyLock(open_store(sys.argv[1], root=sys.argv[2]))
    assert lock.try_acquire()
    print("held", flush=True)
    time.sleep(600)
''')


@pytest.mark.postgres
def test_duty_lock_passes_to_another_coordinator_when_the_holder_dies(pg_url, tmp_path):
    store = open_store(pg_url, root=tmp_path / "h")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, pg_url, str(tmp_path / "h")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        mine = DutyLock(store)
        assert not mine.try_acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
        until(mine.try_acquire, "the lock to pass on")
        other = DutyLock(open_store(pg_url, root=tmp_path / "h"))
        assert not other.try_acquire()
        mine.release()
        assert other.try_acquire()
        other.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    store.close()
