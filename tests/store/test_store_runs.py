"""Store contract, part 1: specs, runs, task states, environments, events.

Every test takes the ``store`` fixture and so runs on SQLite and, when
HEADWATER_TEST_POSTGRES is set, on PostgreSQL.
"""

from __future__ import annotations

import dataclasses

import pytest

from headwater.errors import NotFound, StoreError
from tests.store import factories as f

# ---------------------------------------------------------------- specs


def test_spec_round_trip_and_listing(store):
    store.put_spec("wf", "h1", {"tasks": {"a": {"cmd": "x"}}, "n": 1.5})
    store.put_spec("wf", "h2", {"tasks": {}})
    store.put_spec("other", "h3", {})
    assert store.get_spec("h1") == {"tasks": {"a": {"cmd": "x"}}, "n": 1.5}
    listed = store.list_specs("wf")
    assert [h for h, _ in listed] == ["h1", "h2"]
    assert listed[0][1] <= listed[1][1]
    assert store.list_specs("nope") == []


def test_put_spec_is_idempotent_and_keeps_the_first(store):
    store.put_spec("wf", "h1", {"v": 1})
    store.put_spec("wf", "h1", {"v": 1})
    store.put_spec("wf", "h1", {"v": 2})
    assert store.get_spec("h1") == {"v": 1}
    assert len(store.list_specs("wf")) == 1


def test_get_spec_unknown_is_not_found(store):
    with pytest.raises(NotFound) as info:
        store.get_spec("missing")
    assert info.value.kind == "spec" and info.value.ident == "missing"


# ----------------------------------------------------------------- runs


def test_run_round_trip(store):
    record = f.run(
        "run-abcdef", options={"workers": 4, "no_cache": True}, tags=["nightly", "ocean"],
        finished_at=None, why=None, source=None, seed=2**62 + 7,
    )
    store.create_run(record)
    assert store.get_run("run-abcdef") == record


def test_create_run_twice_is_an_error(store):
    store.create_run(f.run("run-dup1"))
    with pytest.raises(StoreError, match="already exists"):
        store.create_run(f.run("run-dup1"))


def test_create_run_rejects_an_unknown_status(store):
    with pytest.raises(StoreError, match="run status"):
        store.create_run(f.run("run-bad1", status="exploded"))
    with pytest.raises(NotFound):
        store.get_run("run-bad1")


def test_get_run_by_unique_prefix(store):
    store.create_run(f.run("7f3a9c01"))
    store.create_run(f.run("7f3b0000"))
    assert store.get_run("7f3a").id == "7f3a9c01"
    assert store.get_run("7f3a9c01").id == "7f3a9c01"


def test_get_run_ambiguous_prefix_lists_candidates(store):
    store.create_run(f.run("7f3a9c01"))
    store.create_run(f.run("7f3a9c02"))
    with pytest.raises(StoreError, match="ambiguous") as info:
        store.get_run("7f3a9")
    assert not isinstance(info.value, NotFound)
    assert "7f3a9c01" in str(info.value) and "7f3a9c02" in str(info.value)


def test_get_run_short_or_unknown_prefix_is_not_found(store):
    store.create_run(f.run("7f3a9c01"))
    with pytest.raises(NotFound, match="at least 4"):
        store.get_run("7f3")
    with pytest.raises(NotFound):
        store.get_run("8888")


def test_prefix_match_is_exact_case_and_wildcards(store):
    store.create_run(f.run("AbCd1234"))
    store.create_run(f.run("ab%d_x99"))
    with pytest.raises(NotFound):
        store.get_run("abcd")
    assert store.get_run("AbCd").id == "AbCd1234"
    assert store.get_run("ab%d").id == "ab%d_x99"
    with pytest.raises(NotFound):
        store.get_run("ab_d")


def test_list_runs_newest_first_with_filter_and_limit(store):
    for i, wf in enumerate(["a", "b", "a", "a"]):
        store.create_run(f.run(f"run-{i:04d}", workflow=wf, created_at=100.0 + i))
    assert [r.id for r in store.list_runs()] == ["run-0003", "run-0002", "run-0001", "run-0000"]
    assert [r.id for r in store.list_runs("a")] == ["run-0003", "run-0002", "run-0000"]
    assert [r.id for r in store.list_runs("a", limit=2)] == ["run-0003", "run-0002"]
    assert store.list_runs("zzz") == []


def test_set_run_status(store):
    store.create_run(f.run("run-0001"))
    store.set_run_status("run-0001", "failed", finished_at=2000.0)
    got = store.get_run("run-0001")
    assert (got.status, got.finished_at) == ("failed", 2000.0)
    store.set_run_status("run-0001", "interrupted")
    assert store.get_run("run-0001").finished_at == 2000.0
    store.set_run_status("run-0001", "running")
    got = store.get_run("run-0001")
    assert (got.status, got.finished_at) == ("running", None)


def test_set_run_status_errors(store):
    store.create_run(f.run("run-0001"))
    with pytest.raises(NotFound):
        store.set_run_status("run-9999", "failed")
    with pytest.raises(StoreError, match="run status"):
        store.set_run_status("run-0001", "done")
    assert store.get_run("run-0001").status == "running"


def test_update_run_fields(store):
    store.create_run(f.run("run-0001"))
    store.update_run("run-0001", options={"workers": 8}, tags=["x"], campaign="c2", why="again")
    got = store.get_run("run-0001")
    assert (got.options, got.tags, got.campaign, got.why) == ({"workers": 8}, ["x"], "c2", "again")


def test_update_run_errors(store):
    store.create_run(f.run("run-0001"))
    with pytest.raises(StoreError, match="unknown run field"):
        store.update_run("run-0001", colour="red")
    with pytest.raises(StoreError, match="unknown run field"):
        store.update_run("run-0001", id="run-0002")
    with pytest.raises(NotFound):
        store.update_run("run-9999", tags=[])
    with pytest.raises(NotFound):
        store.update_run("run-9999")


# ---------------------------------------------------------- task states


def test_save_tasks_upserts_by_run_and_task(store):
    store.create_run(f.run("run-0001"))
    store.save_tasks([f.task("run-0001", "b"), f.task("run-0001", "a")])
    leased = f.task("run-0001", "a", "leased", agent="ag-1", fencing=7, lease_expiry=99.5,
                    attempt=2, error="boom", checkpoint_id="c" * 64)
    store.save_tasks([leased])
    assert store.get_tasks("run-0001") == [leased, f.task("run-0001", "b")]
    assert store.get_tasks("run-9999") == []


def test_save_tasks_repeated_key_in_one_batch_keeps_the_last(store):
    store.create_run(f.run("run-0001"))
    store.save_tasks([f.task("run-0001", "a", "ready"), f.task("run-0001", "a", "leased")])
    assert [t.state for t in store.get_tasks("run-0001")] == ["leased"]


def test_save_tasks_for_an_unknown_run_fails(store):
    with pytest.raises(StoreError):
        store.save_tasks([f.task("run-9999", "a")])


# ---------------------------------------------------------- environments


def test_env_round_trip_and_idempotence(store):
    summary = {"python": "3.11.7", "platform": "linux"}
    packages = {"numpy": "1.26.4", "scipy": "1.11.0"}
    store.put_env("fp1", summary, packages)
    store.put_env("fp1", summary, packages)
    store.put_env("fp1", {"other": True}, {})
    assert store.get_env("fp1") == (summary, packages)
    assert store.get_env("fp2") is None


# --------------------------------------------------------------- events


def test_events_in_append_order_with_filters(store):
    store.append_events([
        f.event("started", 1.0, run_id="r1", data={"n": 1}),
        f.event("leased", 2.0, run_id="r1", task="a", attempt=1, agent="ag"),
        f.event("started", 3.0, run_id="r2"),
    ])
    store.append_events([f.event("finished", 4.0, run_id="r1")])
    everything = store.list_events()
    assert [e.kind for e in everything] == ["started", "leased", "started", "finished"]
    ids = [e.id for e in everything]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(set(ids))
    first = everything[0]
    assert dataclasses.replace(first, id=None) == f.event("started", 1.0, run_id="r1", data={"n": 1})
    assert [e.ts for e in store.list_events(run_id="r1")] == [1.0, 2.0, 4.0]
    assert [e.run_id for e in store.list_events(kind="started")] == ["r1", "r2"]
    assert [e.ts for e in store.list_events(run_id="r1", kind="leased")] == [2.0]


def test_list_events_limit_returns_the_latest_oldest_first(store):
    store.append_events([f.event("tick", float(i)) for i in range(10)])
    assert [e.ts for e in store.list_events(limit=3)] == [7.0, 8.0, 9.0]
    assert store.list_events(limit=0) == []


def test_append_no_events_is_a_no_op(store):
    store.append_events([])
    assert store.list_events() == []
