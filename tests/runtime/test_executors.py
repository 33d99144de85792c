"""The executor contract, run against every executor: inline, local processes, Dask.

An executor only places work; so the same workflow must commit the same
tasks with byte-identical outputs wherever it runs, retries must behave the
same, and agents must resolve claims through the same store.
"""

import os
import signal
import time

import pytest

from headwater.runtime import RunOptions, run_workflow
from headwater.runtime.agent import Work
from headwater.runtime.executors import LocalProcessExecutor
from tests.runtime.test_run import RETRY
from tests.runtime.workflows import CHAIN

EXECUTORS = {
    "inline": RunOptions(workers=0, seed=2),
    "local": RunOptions(workers=2, seed=2),
    "dask": RunOptions(workers=2, seed=2, executor="dask"),
}


@pytest.fixture(params=list(EXECUTORS))
def options(request):
    if request.param == "dask":
        pytest.importorskip("distributed")
    return EXECUTORS[request.param]


def test_same_results_wherever_work_runs(ws, write_wf, options):
    wf = write_wf(CHAIN)
    reference = run_workflow(ws, wf, {}, RunOptions(workers=0, seed=2, no_cache=True))
    summary = run_workflow(ws, wf, {"scale": "2.0"}, RunOptions(**{**options.__dict__, "no_cache": True}))
    assert summary.ok, [t.error for t in summary.tasks]
    got = {c.task: [o.sha256 for o in c.outputs] for c in ws.store.list_checkpoints(summary.run_id)}
    want = {c.task: [o.sha256 for o in c.outputs] for c in ws.store.list_checkpoints(reference.run_id)}
    assert got == want


def test_retries_and_claims_behave_the_same(ws, write_wf, options, tmp_path):
    wf = write_wf(RETRY)
    summary = run_workflow(ws, wf, {"marker": str(tmp_path / f"m-{options.executor}-{options.workers}")}, options)
    assert summary.ok
    statuses = [(c.task, c.attempt, c.status) for c in ws.store.list_checkpoints(summary.run_id)]
    assert statuses == [("flaky", 1, "failed"), ("flaky", 2, "committed"), ("after", 1, "committed")]
    consumer = write_wf('''
from headwater import Workflow
wf = Workflow("claim-reader")
@wf.task(uses=["lib:pyyaml"])
def read(ctx):
    ctx.save("n", len(ctx.params))
''')
    assert run_workflow(ws, consumer, {}, options).ok


def test_local_executor_reports_a_killed_agent_and_replaces_it(ws, write_wf):
    wf = write_wf('''
import time
from headwater import Workflow
wf = Workflow("sleeper")
@wf.task()
def nap(ctx):
    time.sleep(30)
''')
    ex = LocalProcessExecutor(wf, ws.store.artifacts.url, frozenset({"worker"}), n_agents=1)
    try:
        (agent,) = list(ex.agents)
        ex.submit(agent, Work(token=1, run_id="r", task="nap", attempt=1, params={}, seed=0, inputs={}))
        os.kill(ex.pid(agent), signal.SIGKILL)
        deadline = time.time() + 10
        lost: list[str] = []
        while not lost and time.time() < deadline:
            _, lost = ex.poll(0.1)
        assert lost == [agent]
        assert agent not in ex.agents and len(ex.agents) == 1
        assert ex.free_slots(next(iter(ex.agents))) == ex.prefetch
    finally:
        ex.close()
