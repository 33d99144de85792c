"""The Dask executor beyond the shared contract: batches, chains, lost workers.

The shared contract (same results, retries and claims as every executor) is
in test_executors.py; these tests run against one LocalCluster per module,
reached by its address as ``--scheduler-address`` would.
"""

import time

import pytest

from headwater.runtime import RunOptions, run_workflow
from headwater.runtime.agent import Work
from tests.runtime.test_speculation import SHORT_CHAIN

distributed = pytest.importorskip("distributed")

from headwater.runtime.dask_executor import DaskExecutor  # noqa: E402

NOOPS = '''
import os
from headwater import Workflow
wf = Workflow("noops")
@wf.task()
def noop(ctx):
    ctx.save("pid", os.getpid())
@wf.task()
def die(ctx):
    os._exit(3)
'''


@pytest.fixture(scope="module")
def address():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster:
        yield cluster.scheduler_address


def _work(token: int, task: str = "noop") -> Work:
    return Work(token=token, run_id="r", task=task, attempt=1, params={}, seed=0, inputs={})


def _drain(ex: DaskExecutor, tokens: set[int]) -> list:
    got: list = []
    deadline = time.monotonic() + 60
    while {r.token for r in got} != tokens and time.monotonic() < deadline:
        results, lost = ex.poll(0.5)
        assert not lost
        got += results
    return got


def test_short_work_travels_in_batches_and_the_agent_takes_more(ws, write_wf, address):
    wf = write_wf(NOOPS)
    ex = DaskExecutor(wf, ws.store.artifacts.url, frozenset({"worker"}), 1, scheduler_address=address)
    submitted = []
    real_submit = ex.client.submit
    ex.client.submit = lambda fn, *args, **kw: submitted.append(args[3]) or real_submit(fn, *args, **kw)
    try:
        (agent,) = ex.agents
        assert ex.free_slots(agent) == ex.prefetch
        ex.submit_many(agent, [_work(1), _work(2)])
        assert ex.free_slots(agent) == 0 and ex.queued(agent) == 2
        _drain(ex, {1, 2})
        # no-op work is short: the agent now holds far more than its prefetch
        room = ex.free_slots(agent)
        assert room > ex.prefetch and ex.queued(agent) == 0
        tokens = set(range(10, 10 + room))
        ex.submit_many(agent, [_work(t) for t in sorted(tokens)])
        results = _drain(ex, tokens)
        assert sorted(r.token for r in results) == sorted(tokens)
        assert all(r.agent == agent and r.outcome.ok for r in results)
        assert 1 < len(submitted[2:]) < len(tokens)  # several messages per Dask task, in more than one
        assert sorted(m.token for batch in submitted for m in batch) == [1, 2, *sorted(tokens)]
    finally:
        ex.close()


def test_a_chain_of_short_tasks_runs_back_to_back_on_dask(ws, write_wf, monkeypatch, address):
    from headwater.runtime import coordinator

    monkeypatch.setattr(coordinator, "FOLLOW_BELOW", float("inf"))
    wf = write_wf(SHORT_CHAIN)
    summary = run_workflow(ws, wf, {}, RunOptions(workers=2, no_cache=True, executor="dask",
                                                  scheduler_address=address))
    assert summary.ok
    assert summary.counters["ran_ahead"] > 0
    cks = ws.store.list_checkpoints(summary.run_id)
    assert [c.task for c in cks] == sorted(wf.tasks) and {c.status for c in cks} == {"committed"}
    for before, after in zip(cks, cks[1:]):
        assert after.doc["manifest"]["inputs"] == {f"{before.task}/n": before.outputs[0].sha256}


def test_a_batch_whose_worker_dies_is_a_lost_agent_replaced_by_a_fresh_one(ws, write_wf):
    import dask

    wf = write_wf(NOOPS)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                     dashboard_address=None, silence_logs=50) as cluster:
        ex = DaskExecutor(wf, ws.store.artifacts.url, frozenset({"worker"}), 1,
                          scheduler_address=cluster.scheduler_address)
        try:
            (agent,) = ex.agents
            ex.submit_many(agent, [_work(1, "die"), _work(2)])
            deadline = time.monotonic() + 60
            lost: list[str] = []
            while not lost and time.monotonic() < deadline:
                _, lost = ex.poll(0.5)
            assert lost == [agent]
            assert agent not in ex.agents and len(ex.agents) == 1
            fresh = next(iter(ex.agents))
            assert ex.free_slots(fresh) == ex.prefetch and ex.queued(fresh) == 0
            ex.submit(fresh, _work(3))
            assert [r.token for r in _drain(ex, {3})] == [3]
        finally:
            ex.close()
