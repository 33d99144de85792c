"""SIGKILL agents at random moments: every task is still committed exactly once."""

import os
import random
import signal
import threading
import time
from collections import Counter

import pytest

from headwater.runtime import RunOptions, run_workflow
from headwater.runtime.executors import LocalProcessExecutor

THOUSAND = '''
import time
from headwater import Workflow

wf = Workflow("thousand")

def small(ctx):
    time.sleep(0.002)
    ctx.save("t", ctx.task)

for i in range(1000):
    wf.task(small, name=f"t{i:04d}", after=[f"t{i - 100:04d}"] if i >= 100 else [])
'''


@pytest.mark.slow
def test_three_agents_killed_at_random_moments_lose_nothing(ws, write_wf):
    wf = write_wf(THOUSAND)
    ex = LocalProcessExecutor(wf, ws.store.artifacts.url, frozenset({"worker"}), n_agents=3)
    rng = random.Random(20240607)
    killed: list[str] = []
    stop = threading.Event()
    # Random moments inside the run: after a random number of committed
    # tasks, with enough left that the coordinator sees each death before the end.
    marks = sorted(rng.sample(range(50, 800), 3))
    reached = [threading.Event() for _ in marks]
    committed_so_far = [0]

    def progress(kind: str, data: dict) -> None:
        if kind == "task" and data.get("state") == "committed":
            committed_so_far[0] += 1
            for mark, event in zip(marks, reached):
                if committed_so_far[0] >= mark:
                    event.set()

    def killer() -> None:
        for event in reached:
            while not event.wait(0.01):
                if stop.is_set():
                    return
            for _ in range(50):  # the executor may be replacing an agent right now
                try:
                    agent = rng.choice(sorted(ex.agents))
                    pid = ex.pid(agent)
                except (RuntimeError, IndexError):
                    time.sleep(0.01)
                    continue
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(agent)
                    break

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        summary = run_workflow(ws, wf, {}, RunOptions(workers=3, no_cache=True), progress=progress, executor=ex)
    finally:
        stop.set()
        thread.join()
    assert summary.ok, [t.error for t in summary.tasks if t.error]
    assert len(killed) == 3
    lost = {e.agent for e in ws.store.list_events(run_id=summary.run_id, kind="agent_lost")}
    assert lost == set(killed)
    committed = Counter(c.task for c in ws.store.list_checkpoints(summary.run_id) if c.status == "committed")
    assert set(committed) == set(wf.tasks) and set(committed.values()) == {1}
    rows = ws.store.get_tasks(summary.run_id)
    assert len(rows) == 1000 and {r.state for r in rows} == {"committed"}
