"""Admissions under a fleet-wide cap are atomic: runs (and coordinators, each
with its own store connection) racing for a cap's last slot never both take it,
on SQLite and on PostgreSQL, and a slot freed by a finished or expired task
admits the next."""

import threading
import time

import pytest

from headwater.oversight import AssetStatus, Dependent, Exposure, Match, Mode, Policy, Rule, evaluate, throttle
from headwater.runtime import RunOptions, run_workflow
from headwater.runtime.fleet import Fleet
from headwater.store import open_store
from headwater.store.records import RunRecord, TaskRecord

S = AssetStatus
EVERY = (S.TRUSTED, S.SUSPECT, S.DEGRADED, S.REVALIDATING, S.RETRACTED)
ONE_AT_A_TIME = Policy("one-at-a-time", (
    Rule(Match(status=EVERY, kinds="compute", assets="compute:local"), (throttle(1),), "one task at a time"),
), Mode.ENFORCED, 1.0)
GPU = Exposure("compute", "local", "local", S.TRUSTED)
ROUNDS = 25


def directive_for(run_id):
    directive = evaluate([ONE_AT_A_TIME], Dependent(run_id, "wf", "t"), [GPU])
    assert directive.caps == {"compute:local": 1}
    return directive


def start_run(store, run_id, now):
    store.create_run(RunRecord(run_id, "wf", "spec", "default", {}, 0, "running", None, None, now, tags=[]))


def lease_task(store, run_id, fencing, now, expiry=None):
    """The task row its coordinator writes after the admission: it holds the lease."""
    store.save_tasks([TaskRecord(run_id, "t", 1, "leased", "agent", fencing,
                                 now + 600 if expiry is None else expiry, now + 0.001)])


def admit(store, run_id, fencing, now, read_then_wait=0.0):
    """One admission of run ``run_id``'s task ``t`` under the cap; None when admitted.

    ``read_then_wait`` widens the window between reading the running tasks
    and recording the admission, where a racing admission could slip in."""
    directive = directive_for(run_id)

    def refuse(running):
        over = directive.over_cap(running)
        time.sleep(read_then_wait)
        return over

    over, _ = store.admit_exposure(run_id, "t", 1, fencing, ["compute:local"], now, refuse)
    return over


def race(stores, run_ids, now):
    """Every run admits its task at the same instant, each through its own store."""
    barrier = threading.Barrier(len(stores))
    results: dict[str, object] = {}
    errors: list[BaseException] = []

    def go(store, run_id, fencing):
        try:
            barrier.wait(timeout=30)
            results[run_id] = admit(store, run_id, fencing, now, read_then_wait=0.01)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(s, r, k)) for k, (s, r) in enumerate(zip(stores, run_ids), 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors, errors
    return results


@pytest.fixture
def racers(store_url, tmp_path):
    """Three stores on one database, as three coordinators would open it."""
    opened = [open_store(store_url, root=tmp_path / f".headwater-{k}") for k in range(3)]
    yield opened
    for s in opened:
        s.close()


def test_exactly_one_of_racing_admissions_takes_the_last_slot(racers):
    store = racers[0]
    for k in range(ROUNDS):
        now = time.time()
        runs = [f"r{k}-{j}" for j in range(len(racers))]
        for run_id in runs:
            start_run(store, run_id, now)
        results = race(racers, runs, now)
        winners = [r for r, over in results.items() if over is None]
        assert len(winners) == 1, (k, results)
        for loser in set(runs) - set(winners):
            assert results[loser] == ("compute:local", 1, 1)
        running = store.running_exposures(now)
        assert [r.dependent.run_id for r in running] == winners
        for run_id in runs:  # the round is over: its runs no longer count
            store.update_run(run_id, status="succeeded")


def test_a_slot_freed_by_a_finished_or_expired_task_admits_the_next(store):
    now = time.time()
    for run_id in ("holder", "waiter", "other"):
        start_run(store, run_id, now)
    assert admit(store, "holder", 1, now) is None
    lease_task(store, "holder", 1, now)
    assert admit(store, "waiter", 2, now) == ("compute:local", 1, 1)
    # the refused admission recorded nothing: the holder is still the only one running
    assert [r.dependent.run_id for r in store.running_exposures(now)] == ["holder"]
    # the holder's task finishes: its row leaves the lease, the slot is free
    store.save_tasks([TaskRecord("holder", "t", 1, "provisional", None, None, None, now + 1)])
    assert admit(store, "waiter", 2, now + 1) is None
    lease_task(store, "waiter", 2, now + 1, expiry=now + 5)
    assert admit(store, "other", 3, now + 2) == ("compute:local", 1, 1)
    # the waiter's lease expires (its coordinator died): the slot is free again
    assert admit(store, "other", 3, now + 6) is None


def test_the_decision_sees_every_other_run_and_not_its_own(store):
    now = time.time()
    for run_id in ("a", "b"):
        start_run(store, run_id, now)
    assert admit(store, "a", 1, now) is None
    seen: list = []
    store.admit_exposure("b", "t", 1, 2, ["compute:local"], now, lambda running: seen.append(running))
    assert [r.dependent.run_id for r in seen[0]] == ["a"]
    seen.clear()
    store.admit_exposure("a", "u", 1, 3, ["compute:local"], now, lambda running: seen.append(running))
    assert [r.dependent.run_id for r in seen[0]] == ["b"]


BUSY = '''
import json, pathlib, time
from headwater import Workflow
wf = Workflow("busy-{name}")
wf.param("log", "str")

@wf.task()
def work(ctx):
    log = pathlib.Path(ctx.params["log"])
    start = time.time()
    time.sleep(0.3)
    with log.open("a") as f:
        f.write(json.dumps([start, time.time()]) + "\\n")
    ctx.save("x", 1)
'''


def test_runs_started_together_under_a_cap_of_one_run_one_after_the_other(ws_any, write_wf, tmp_path):
    ws = ws_any
    import json

    Fleet(ws.store).apply_policy(ONE_AT_A_TIME)
    log = tmp_path / "intervals.jsonl"
    flows = [write_wf(BUSY.format(name=n)) for n in "abc"]
    barrier = threading.Barrier(len(flows))
    summaries: list = []

    def go(wf):
        barrier.wait(timeout=30)
        summaries.append(run_workflow(ws, wf, {"log": str(log)}, RunOptions(workers=0, hold=30)))

    threads = [threading.Thread(target=go, args=(wf,)) for wf in flows]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert [s.ok for s in summaries] == [True] * len(flows)
    intervals = sorted(json.loads(line) for line in log.read_text().splitlines())
    assert len(intervals) == len(flows)
    for (_, end), (start, _) in zip(intervals, intervals[1:]):
        assert end <= start, intervals
