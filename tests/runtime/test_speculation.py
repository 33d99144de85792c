"""Speculation, verification, work stealing and stragglers in the local runtime, end to end."""

import json

import pytest

from headwater.checkpoint.bundle import load_bundle
from headwater.forensics import verify_store
from headwater.runtime import RunOptions, run_workflow

REFUTED_ONCE = '''
import time
from pathlib import Path
from headwater import Workflow

wf = Workflow("spec-chain")
wf.param("marker", "str")

@wf.task(verify=1)
def a(ctx):
    ctx.save("x", 1)

@wf.verifier(a)
def check_a(ctx, outputs):
    time.sleep(0.6)  # the chain below runs ahead meanwhile
    marker = Path(ctx.params["marker"])
    if not marker.exists():
        marker.write_text("looked once")
        return "first look: not convinced"
    return outputs.load("x") == 1

@wf.task(after=a)
def b(ctx):
    ctx.save("y", ctx.load("x") + 1)

@wf.task(after=b)
def c(ctx):
    ctx.save("z", ctx.load("y") + 1)
'''


def _by_task(cks):
    out = {}
    for ck in cks:
        out.setdefault(ck.task, []).append(ck)
    return out


def test_refuted_verification_squashes_the_run_ahead_and_everything_commits(ws, write_wf, tmp_path):
    wf = write_wf(REFUTED_ONCE)
    summary = run_workflow(ws, wf, {"marker": str(tmp_path / "seen")},
                           RunOptions(workers=3, speculate=2, no_cache=True))
    assert summary.ok, [t.error for t in summary.tasks]
    assert summary.counters["refuted"] == 1 and summary.counters["rejections"] == 1
    assert summary.counters["speculative_claims"] >= 2
    cks = _by_task(ws.store.list_checkpoints(summary.run_id))
    # the refuted attempt of a, and the work built on it, stay in the store, marked with the reason
    assert [(c.attempt, c.status) for c in cks["a"]] == [(1, "refuted"), (2, "committed")]
    assert "first look: not convinced" in cks["a"][0].status_reason
    for task in ("b", "c"):
        first = cks[task][0]
        assert (first.attempt, first.status) == (1, "squashed")
        assert "refuted" in first.status_reason
        assert [c.status for c in cks[task]].count("committed") == 1
    # run-ahead is recorded in the bundles: which provisional inputs each one assumed
    assert cks["b"][0].doc["manifest"]["speculative"] == [["a", 1]]
    assert cks["c"][0].doc["manifest"]["speculative"] == [["b", 1]]
    committed = [c for cs in cks.values() for c in cs if c.status == "committed"]
    assert sorted(c.task for c in committed) == ["a", "b", "c"]
    # the verifier ran on an agent other than a's producer, twice
    verdicts = ws.store.list_events(run_id=summary.run_id, kind="verdict")
    assert [e.data["approve"] for e in verdicts] == [False, True]
    assert verify_store(ws.store, ws.key.public_hex, summary.run_id).ok
    for ck in committed:
        load_bundle(ck.bundle, expected_id=ck.id)


QUORUM = '''
from headwater import Workflow, quorum

wf = Workflow("quorum")

@wf.task(verify=quorum(2, reject=2))
def fit(ctx):
    ctx.invariant("finite", True)
    ctx.save("p", [1.0, 2.0])

@wf.task(after=fit)
def report(ctx):
    ctx.save("r", sum(ctx.load("p")))
'''


def test_quorum_needs_distinct_verifiers_and_never_the_producer(ws, write_wf):
    wf = write_wf(QUORUM)
    summary = run_workflow(ws, wf, {}, RunOptions(workers=3, speculate="adaptive", no_cache=True))
    assert summary.ok
    assert summary.counters["approvals"] == 2
    verdicts = ws.store.list_events(run_id=summary.run_id, kind="verdict")
    log = [json.loads(line) for line in (ws.root / "logs" / f"{summary.run_id}.jsonl").read_text().splitlines()]
    producer = next(x["agent"] for x in log if x["event"] == "dispatched" and x["task"] == "fit" and x["kind"] == "run")
    assert len({e.agent for e in verdicts}) == 2 and producer not in {e.agent for e in verdicts}
    fit = next(c for c in ws.store.list_checkpoints(summary.run_id) if c.task == "fit" and c.status == "committed")
    rows = {t.task: t for t in ws.store.get_tasks(summary.run_id)}
    assert rows["fit"].state == "committed" and rows["fit"].checkpoint_id == fit.id
    assert all({"ts", "run", "task", "attempt", "agent", "event"} <= set(x) for x in log)


def test_a_quorum_larger_than_the_agents_is_refused_up_front(ws, write_wf):
    from headwater.errors import RunError

    wf = write_wf(QUORUM)
    with pytest.raises(RunError, match="--workers 3"):
        run_workflow(ws, wf, {}, RunOptions(workers=2))


STEAL = '''
import time
from headwater import Workflow

wf = Workflow("steal")

def make(i, seconds):
    def work(ctx):
        time.sleep(seconds)
        ctx.save("i", i)
    return work

wf.task(make(0, 1.5), name="long", priority=10)
for i in range(1, 16):
    wf.task(make(i, 0.02), name=f"short{i}")
'''


def test_idle_agents_steal_queued_work_from_a_busy_one(ws, write_wf):
    wf = write_wf(STEAL)
    summary = run_workflow(ws, wf, {}, RunOptions(workers=2, prefetch=8, no_cache=True))
    assert summary.ok
    assert summary.counters["stolen"] >= 1
    stolen = ws.store.list_events(run_id=summary.run_id, kind="stolen")
    assert stolen and all(e.agent != e.data["from"] for e in stolen)
    committed = [c.task for c in ws.store.list_checkpoints(summary.run_id) if c.status == "committed"]
    assert sorted(committed) == sorted(wf.tasks)


STRAGGLER = '''
import time
from pathlib import Path
from headwater import Workflow

wf = Workflow("straggler")
wf.param("marker", "str")

def quick(ctx):
    time.sleep(0.05)

for i in range(4):
    wf.task(quick, name=f"warm{i}")

@wf.task(after=["warm0", "warm1", "warm2", "warm3"])
def slow_once(ctx):
    marker = Path(ctx.params["marker"])
    if not marker.exists():
        marker.write_text("first copy")
        time.sleep(30)  # stuck: a backup copy on another agent finishes first
    ctx.save("done", True)
'''


def test_a_straggler_gets_a_backup_copy_and_the_first_result_wins(ws, write_wf, tmp_path):
    wf = write_wf(STRAGGLER)
    summary = run_workflow(ws, wf, {"marker": str(tmp_path / "m")},
                           RunOptions(workers=2, backup_stragglers=True, no_cache=True))
    assert summary.ok
    assert summary.counters["backups"] == 1 and summary.counters["backup_wins"] == 1
    cks = [c for c in ws.store.list_checkpoints(summary.run_id) if c.task == "slow_once"]
    assert [c.status for c in cks] == ["committed"]
    assert cks[0].doc["time"]["secs"] < 10  # the backup's result, not the stuck copy's
    backup = ws.store.list_events(run_id=summary.run_id, kind="backup")[0]
    assert backup.agent != backup.data["running_on"]


BRANCHY = '''
import time
from headwater import Workflow

wf = Workflow("branchy")

@wf.task()
def make(ctx):
    ctx.save("n", 2)

@wf.task(after=make, branches=("double", "triple"))
def decide(ctx):
    time.sleep(0.5)
    return "double"

@wf.task(after=["decide", "make"])
def double(ctx):
    ctx.save("out", 2 * ctx.load("n"))

@wf.task(after=["decide", "make"])
def triple(ctx):
    ctx.save("out", 3 * ctx.load("n"))
'''


def test_history_prediction_starts_the_likely_branch_before_the_decider_finishes(ws, write_wf):
    wf = write_wf(BRANCHY)
    first = run_workflow(ws, wf, {}, RunOptions(workers=2, no_cache=True))
    assert first.ok
    second = run_workflow(ws, wf, {}, RunOptions(workers=2, no_cache=True, speculate=2, predict="history"))
    assert second.ok
    assert second.counters["predictions_confirmed"] == 1 and second.counters["mispredictions"] == 0
    double = next(c for c in ws.store.list_checkpoints(second.run_id) if c.task == "double")
    assert double.status == "committed"
    assert double.doc["manifest"]["speculative"] == [["decide", 1]]
    states = {t.name: t.state for t in second.tasks}
    assert states["triple"] == "skipped"


@pytest.mark.parametrize("recheck", ["eager", "backoff", "adaptive"])
def test_agents_that_ran_ahead_recheck_with_their_policy_and_reads_are_counted(ws, write_wf, tmp_path, recheck):
    wf = write_wf(REFUTED_ONCE)
    summary = run_workflow(ws, wf, {"marker": str(tmp_path / "seen")},
                           RunOptions(workers=3, speculate=2, no_cache=True, recheck=recheck))
    assert summary.ok
    # no notifications: the agents of b and c learn of the flush only when they look
    assert summary.counters["notifications"] == 0
    assert summary.counters["scoreboard_reads"] >= summary.counters["rechecks"]
    if recheck == "eager":
        assert summary.counters["rechecks"] >= 1
    assert summary.latency["verification_count"] >= 1
    committed = [c.task for c in ws.store.list_checkpoints(summary.run_id) if c.status == "committed"]
    assert sorted(committed) == ["a", "b", "c"]


def test_an_unknown_recheck_policy_is_refused(ws, write_wf, tmp_path):
    from headwater.errors import RunError

    wf = write_wf(REFUTED_ONCE)
    with pytest.raises(RunError, match="recheck"):
        run_workflow(ws, wf, {"marker": str(tmp_path / "m")}, RunOptions(workers=3, recheck="sometimes"))


SHORT_CHAIN = '''
from headwater import Workflow

wf = Workflow("short-chain")

def step(ctx):
    prev = [ref for ref in ctx.inputs]
    ctx.save("n", (ctx.load(prev[0]) + 1) if prev else 0)

for i in range(300):
    wf.task(step, name=f"s{i:03d}", after=[f"s{i - 1:03d}"] if i else [])
'''


def test_a_chain_of_short_tasks_runs_back_to_back_in_one_agent(ws, write_wf, monkeypatch):
    from headwater.runtime import coordinator
    from headwater.runtime.agent import OutputsView

    # every task counts as short, however loaded the machine running the test is
    monkeypatch.setattr(coordinator, "FOLLOW_BELOW", float("inf"))
    wf = write_wf(SHORT_CHAIN)
    summary = run_workflow(ws, wf, {}, RunOptions(workers=2, no_cache=True))
    assert summary.ok
    assert summary.counters["ran_ahead"] > 0  # leased only once the step before was in
    assert summary.counters["claims"] == 300
    cks = ws.store.list_checkpoints(summary.run_id)
    assert [c.task for c in cks] == sorted(wf.tasks) and {c.status for c in cks} == {"committed"}
    for before, after in zip(cks, cks[1:]):
        assert after.parents == [before.id]
        assert after.doc["manifest"]["inputs"] == {f"{before.task}/n": before.outputs[0].sha256}
    assert OutputsView("s299", cks[-1].outputs, ws.store.artifacts).load("n") == 299
