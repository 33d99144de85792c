"""Store contract, part 2: checkpoints, artifacts links, claims, asset uses, cache.

Every test takes the ``store`` fixture and so runs on SQLite and, when
HEADWATER_TEST_POSTGRES is set, on PostgreSQL.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from headwater.errors import NotFound, StoreError
from headwater.store import AssetUse, ClaimRecord
from tests.store import factories as f


@pytest.fixture
def runs(store):
    store.create_run(f.run("run-a", campaign="c1"))
    store.create_run(f.run("run-b", campaign="c2"))
    return store


def test_checkpoint_round_trip_with_everything(runs):
    store = runs
    ck = f.checkpoint(
        "run-a", "fit", 1,
        inputs=[f.art("x", "prepare/x.npz"), f.art("y", "prepare/y.csv", "text/csv")],
        outputs=[f.art("out", "model.json", "application/json")],
        claims=[ClaimRecord("g", 9.81, 0.01, "m/s^2"), ClaimRecord("fit", {"a": [1, 2.5], "b": None})],
        uses=[AssetUse("library", "numpy", "1.26.4", "consumed"),
              AssetUse("claim", "g", "1", "produced")],
        cache_key="ck-1",
    )
    ck.prev = f.sha("prev")
    ck.status_reason = "verified by 2"
    store.add_checkpoints([ck])
    assert ck.seq == 1
    got = store.get_checkpoint(ck.id)
    assert got == ck
    assert got.doc["task"] == "fit"


def test_bundle_bytes_are_stored_exactly(runs):
    store = runs
    ck = f.checkpoint("run-a", "t", 1)
    ck.bundle = b'{"a":"\xc3\xa9\\u00e9","b":[1,2]}\x00\xff\r\n  '
    store.add_checkpoints([ck])
    got = store.get_checkpoint(ck.id).bundle
    assert type(got) is bytes and got == ck.bundle
    assert [c.bundle for c in store.list_checkpoints("run-a")] == [ck.bundle]


def test_seq_is_assigned_per_run_in_insertion_order(runs):
    store = runs
    first = [f.checkpoint("run-a", "t", 1), f.checkpoint("run-b", "t", 2), f.checkpoint("run-a", "t", 3)]
    store.add_checkpoints(first)
    second = [f.checkpoint("run-a", "t", 4, created_at=1.0), f.checkpoint("run-b", "t", 5)]
    store.add_checkpoints(second)
    assert [c.seq for c in first + second] == [1, 1, 2, 3, 2]
    listed = store.list_checkpoints("run-a")
    assert [(c.id, c.seq) for c in listed] == [(first[0].id, 1), (first[2].id, 2), (second[0].id, 3)]


def test_list_checkpoints_filters_and_global_order(runs):
    store = runs
    cks = [
        f.checkpoint("run-a", "fit", 1, created_at=30.0, status="provisional"),
        f.checkpoint("run-b", "fit", 2, created_at=10.0),
        f.checkpoint("run-a", "solve", 3, created_at=20.0),
        f.checkpoint("run-b", "fit", 4, created_at=40.0, workflow="other"),
    ]
    store.add_checkpoints(cks)
    ids = [c.id for c in cks]
    assert [c.id for c in store.list_checkpoints()] == [ids[1], ids[2], ids[0], ids[3]]
    assert [c.id for c in store.list_checkpoints(workflow="wf")] == [ids[1], ids[2], ids[0]]
    assert [c.id for c in store.list_checkpoints(task="fit")] == [ids[1], ids[0], ids[3]]
    assert [c.id for c in store.list_checkpoints(status="committed")] == [ids[1], ids[2], ids[3]]
    assert [c.id for c in store.list_checkpoints(status=["provisional"])] == [ids[0]]
    assert [c.id for c in store.list_checkpoints("run-b", workflow="wf", task="fit")] == [ids[1]]
    assert store.list_checkpoints("run-zzz") == []


def _count_statements(store):
    counter = {"n": 0}

    def count(*_args):
        counter["n"] += 1

    sa.event.listen(store.engine, "before_cursor_execute", count)
    return counter


def test_list_checkpoints_loads_details_in_bulk(runs):
    store = runs

    def batch(prefix, n):
        return [
            f.checkpoint("run-a" if prefix == "a" else "run-b", prefix, i,
                         inputs=[f.art(f"{prefix}in{i}", f"up/in{i}")],
                         outputs=[f.art(f"{prefix}out{i}", "o1"), f.art(f"{prefix}o2{i}", "o2")],
                         claims=[ClaimRecord(f"k{i}", i)],
                         uses=[AssetUse("library", "lib", str(i), "consumed")])
            for i in range(n)
        ]

    store.add_checkpoints(batch("a", 3))
    store.add_checkpoints(batch("b", 60))
    counter = _count_statements(store)
    few = store.list_checkpoints("run-a")
    statements_for_few = counter["n"]
    counter["n"] = 0
    many = store.list_checkpoints("run-b")
    assert counter["n"] == statements_for_few <= 6
    assert len(few) == 3 and len(many) == 60
    for i, c in enumerate(many):
        assert [a.name for a in c.inputs] == [f"up/in{i}"]
        expected_outputs = [("o1", f.sha(f"bout{i}")), ("o2", f.sha(f"bo2{i}"))]
        assert [(a.name, a.sha256) for a in c.outputs] == expected_outputs
        assert c.claims == [ClaimRecord(f"k{i}", i)]
        assert c.uses == [AssetUse("library", "lib", str(i), "consumed")]


def test_artifacts_shared_between_checkpoints_are_stored_once(runs):
    store = runs
    shared = f.art("shared")
    store.add_checkpoints([f.checkpoint("run-a", "t", 1, outputs=[shared])])
    store.add_checkpoints([
        f.checkpoint("run-a", "u", 2, inputs=[f.art("shared", "t/shared")]),
        f.checkpoint("run-b", "u", 3, inputs=[f.art("shared", "t/shared")],
                     outputs=[f.art("shared", "copy")]),
    ])
    with store.engine.connect() as conn:
        from headwater.store.schema import artifact

        assert conn.scalar(sa.select(sa.func.count()).select_from(artifact)) == 1


def _nothing_stored(store, *ids):
    for cid in ids:
        with pytest.raises(NotFound):
            store.get_checkpoint(cid)


def test_a_batch_with_an_already_stored_id_leaves_nothing(runs):
    store = runs
    old = f.checkpoint("run-a", "t", 1)
    store.add_checkpoints([old])
    fresh = f.checkpoint("run-a", "t", 2, outputs=[f.art("o")], claims=[ClaimRecord("k", 1)])
    again = f.checkpoint("run-a", "t", 1)
    with pytest.raises(StoreError, match="already stored"):
        store.add_checkpoints([fresh, again], tasks=[f.task("run-a", "t")], events=[f.event("x")])
    _nothing_stored(store, fresh.id)
    assert store.get_tasks("run-a") == [] and store.list_events() == []
    assert store.checkpoints_with_artifact(f.sha("o")) == {"produced_by": [], "consumed_by": []}
    assert fresh.seq is None
    assert [c.id for c in store.list_checkpoints("run-a")] == [old.id]


def test_a_batch_repeating_an_id_leaves_nothing(runs):
    store = runs
    ck = f.checkpoint("run-a", "t", 1)
    with pytest.raises(StoreError, match="repeated"):
        store.add_checkpoints([ck, f.checkpoint("run-a", "t", 1)])
    _nothing_stored(store, ck.id)


def test_a_batch_naming_an_unknown_run_leaves_nothing(runs):
    store = runs
    good, bad = f.checkpoint("run-a", "t", 1), f.checkpoint("run-zzz", "t", 2)
    with pytest.raises(NotFound, match="run-zzz"):
        store.add_checkpoints([good, bad])
    _nothing_stored(store, good.id, bad.id)


def test_a_batch_failing_midway_in_the_database_rolls_back(runs):
    store = runs
    good = f.checkpoint("run-a", "t", 1, outputs=[f.art("o")], claims=[ClaimRecord("k", 1)])
    # The task row violates a foreign key; it is written after the checkpoints.
    with pytest.raises(StoreError):
        store.add_checkpoints([good], tasks=[f.task("run-zzz", "t")], events=[f.event("x")])
    _nothing_stored(store, good.id)
    assert store.list_events() == [] and store.claims() == []
    store.add_checkpoints([good])
    assert good.seq == 1


def test_a_claim_value_without_json_form_is_refused(runs):
    store = runs
    good = f.checkpoint("run-a", "t", 1)
    bad = f.checkpoint("run-a", "t", 2, claims=[ClaimRecord("k", object())])
    with pytest.raises(StoreError, match="claim 'k'"):
        store.add_checkpoints([good, bad])
    _nothing_stored(store, good.id, bad.id)


def test_a_batch_with_an_invalid_status_leaves_nothing(runs):
    store = runs
    good, bad = f.checkpoint("run-a", "t", 1), f.checkpoint("run-a", "t", 2, status="pending")
    with pytest.raises(StoreError, match="status"):
        store.add_checkpoints([good, bad])
    _nothing_stored(store, good.id)


def test_add_checkpoints_writes_tasks_and_events_alone(runs):
    store = runs
    store.add_checkpoints(
        [], tasks=[f.task("run-a", "t", "leased")], events=[f.event("leased", run_id="run-a")]
    )
    assert [t.state for t in store.get_tasks("run-a")] == ["leased"]
    assert [e.kind for e in store.list_events("run-a")] == ["leased"]


def test_get_checkpoint_prefix_rules(runs):
    store = runs
    cks = [f.checkpoint("run-a", "t", i, outputs=[f.art(f"o{i}", "out")]) for i in range(3)]
    cks[0].id, cks[1].id, cks[2].id = "abcd1" + "0" * 59, "abcd2" + "0" * 59, "9" * 64
    store.add_checkpoints(cks)
    got = store.get_checkpoint("abcd1")
    assert got.id == cks[0].id and [a.name for a in got.outputs] == ["out"]
    assert store.get_checkpoint("9" * 64).id == cks[2].id
    with pytest.raises(StoreError, match="ambiguous") as info:
        store.get_checkpoint("abcd")
    assert cks[0].id in str(info.value) and cks[1].id in str(info.value)
    with pytest.raises(NotFound, match="at least 4"):
        store.get_checkpoint("abc")
    with pytest.raises(NotFound):
        store.get_checkpoint("ABCD1")
    with pytest.raises(NotFound):
        store.get_checkpoint("0" * 64)


def test_set_checkpoint_status(runs):
    store = runs
    cks = [f.checkpoint("run-a", "t", i, status="provisional") for i in range(3)]
    store.add_checkpoints(cks)
    store.set_checkpoint_status([cks[0].id, cks[2].id, cks[0].id], "squashed", "ancestor refuted")
    got = {c.id: (c.status, c.status_reason) for c in store.list_checkpoints("run-a")}
    assert got[cks[0].id] == ("squashed", "ancestor refuted")
    assert got[cks[1].id] == ("provisional", None)
    store.set_checkpoint_status([cks[0].id], "committed")
    assert store.get_checkpoint(cks[0].id).status_reason is None


def test_set_checkpoint_status_with_an_unknown_id_changes_nothing(runs):
    store = runs
    ck = f.checkpoint("run-a", "t", 1, status="provisional")
    store.add_checkpoints([ck])
    with pytest.raises(NotFound) as info:
        store.set_checkpoint_status([ck.id, "f" * 64], "verified")
    assert info.value.ident == "f" * 64
    assert store.get_checkpoint(ck.id).status == "provisional"
    with pytest.raises(StoreError, match="status"):
        store.set_checkpoint_status([ck.id], "done")


def test_latest_checkpoint(runs):
    store = runs
    old = f.checkpoint("run-a", "fit", 1, created_at=10.0)
    new_b = f.checkpoint("run-b", "fit", 2, created_at=20.0)
    newest_prov = f.checkpoint("run-b", "fit", 3, created_at=30.0, status="provisional")
    store.add_checkpoints([old, new_b, newest_prov, f.checkpoint("run-a", "other", 4, created_at=99.0)])
    assert store.latest_checkpoint("wf", "fit").id == new_b.id
    assert store.latest_checkpoint("wf", "fit", exclude_run="run-b").id == old.id
    assert store.latest_checkpoint("wf", "fit", status="provisional").id == newest_prov.id
    assert store.latest_checkpoint("wf", "fit", status=None).id == newest_prov.id
    assert store.latest_checkpoint("wf", "nope") is None
    assert store.latest_checkpoint("other-wf", "fit") is None
    assert store.latest_checkpoint("wf", "fit").outputs == []


def test_find_cached_and_invalidate_cache(runs):
    store = runs
    older = f.checkpoint("run-a", "t", 1, cache_key="K", created_at=10.0, outputs=[f.art("o1", "out")])
    newer = f.checkpoint("run-b", "t", 2, cache_key="K", created_at=20.0)
    provisional = f.checkpoint("run-b", "t", 3, cache_key="K", created_at=30.0, status="provisional")
    store.add_checkpoints([older, newer, provisional, f.checkpoint("run-a", "t", 4, cache_key="other")])
    assert store.find_cached("K").id == newer.id
    assert store.find_cached("missing") is None

    assert store.invalidate_cache([newer.id, newer.id, "f" * 64], "numpy 2.0 regression") == 1
    assert store.invalidate_cache([newer.id], "again") == 0
    hit = store.find_cached("K")
    assert hit.id == older.id and [a.name for a in hit.outputs] == ["out"]
    assert store.get_checkpoint(newer.id).cache_valid is False
    events = store.list_events(kind="cache_invalidated")
    assert [(e.run_id, e.task, e.data) for e in events] == [
        ("run-b", "t", {"checkpoint": newer.id, "reason": "numpy 2.0 regression"})
    ]
    assert store.invalidate_cache([older.id], "r") == 1
    assert store.find_cached("K") is None


def test_find_cached_many_answers_like_find_cached_for_each_key(runs):
    store = runs
    older = f.checkpoint("run-a", "t", 1, cache_key="K", created_at=10.0, outputs=[f.art("o1", "out")])
    newer = f.checkpoint("run-b", "t", 2, cache_key="K", created_at=20.0, outputs=[f.art("o2", "out")])
    provisional = f.checkpoint("run-b", "t", 3, cache_key="P", created_at=30.0, status="provisional")
    many = [f.checkpoint("run-a", f"m{i}", 10 + i, cache_key=f"M{i}") for i in range(700)]
    store.add_checkpoints([older, newer, provisional, *many])
    keys = ["K", "P", "missing", "K", *[f"M{i}" for i in range(700)]]
    found = store.find_cached_many(keys)
    assert set(found) == {"K", *[f"M{i}" for i in range(700)]}
    for key, ck in found.items():
        assert ck == store.find_cached(key)
    assert [a.name for a in found["K"].outputs] == ["out"] and found["K"].id == newer.id
    store.invalidate_cache([newer.id], "stale")
    assert store.find_cached_many(["K"])["K"].id == older.id
    assert store.find_cached_many([]) == {}


def test_checkpoints_with_artifact(runs):
    store = runs
    producer = f.checkpoint("run-a", "make", 1, outputs=[f.art("data", "d")], created_at=1.0)
    user1 = f.checkpoint("run-a", "use", 2, inputs=[f.art("data", "make/d"), f.art("data", "again")],
                         created_at=2.0)
    user2 = f.checkpoint("run-b", "use", 3, inputs=[f.art("data", "make/d")], created_at=3.0)
    store.add_checkpoints([producer, user1, user2])
    assert store.checkpoints_with_artifact(f.sha("data")) == {
        "produced_by": [producer.id], "consumed_by": [user1.id, user2.id],
    }
    assert store.checkpoints_with_artifact(f.sha("nothing")) == {"produced_by": [], "consumed_by": []}


def test_campaign_has_checkpoints(runs):
    store = runs
    store.create_run(f.run("run-c", campaign="c3"))
    store.add_checkpoints([f.checkpoint("run-a", "t", 1)])
    assert store.campaign_has_checkpoints("c1") is True
    assert store.campaign_has_checkpoints("c2") is False
    assert store.campaign_has_checkpoints("c3") is False
    assert store.campaign_has_checkpoints("never") is False


def test_claims_of_committed_checkpoints(runs):
    store = runs
    values = [3.25, {"nested": [1, "two", None]}, [0.1, 0.2], "text", None, True, 10**15]
    committed = f.checkpoint("run-a", "fit", 1, created_at=1.0,
                             claims=[ClaimRecord(f"k{i}", v) for i, v in enumerate(values)])
    later = f.checkpoint("run-b", "fit", 2, created_at=2.0, claims=[ClaimRecord("k0", 3.5, 0.1, "m")])
    unverified = f.checkpoint("run-b", "fit", 3, created_at=3.0, status="provisional",
                              claims=[ClaimRecord("k0", 99.0)])
    store.add_checkpoints([later, committed, unverified])
    assert store.claims("k0") == [(committed.id, ClaimRecord("k0", 3.25)),
                                  (later.id, ClaimRecord("k0", 3.5, 0.1, "m"))]
    everything = store.claims()
    assert [c.value for cid, c in everything if cid == committed.id] == values
    assert len(everything) == len(values) + 1
    assert store.claims("unknown") == []
    store.set_checkpoint_status([unverified.id], "committed")
    assert store.claims("k0")[-1] == (unverified.id, ClaimRecord("k0", 99.0))


def test_store_root_and_artifacts(store, tmp_path):
    assert store.root == (tmp_path / ".headwater").resolve()
    record = store.artifacts.put_bytes(b"hello")
    assert store.artifacts.local_path(record.sha256).is_relative_to(store.root)


def test_a_listing_is_one_snapshot_even_while_a_writer_commits(runs, store_url, monkeypatch):
    from headwater.store import open_store, queries

    store = runs
    store.add_checkpoints([f.checkpoint("run-a", "t", 1, outputs=[f.art("o1", "out")])])
    real = queries.attach_details
    late = f.checkpoint("run-a", "t", 2, outputs=[f.art("o2", "out")])

    def commit_between_queries(conn, records, ids):
        with open_store(store_url, root=store.root) as writer:
            writer.add_checkpoints([late])
        real(conn, records, ids)

    monkeypatch.setattr(queries, "attach_details", commit_between_queries)
    listed = store.list_checkpoints("run-a")
    assert [len(c.outputs) for c in listed] == [1]
    monkeypatch.setattr(queries, "attach_details", real)
    assert [c.id for c in store.list_checkpoints("run-a")][-1] == late.id


def test_latest_checkpoints_gives_the_newest_committed_per_task(store):
    from tests.store import factories as f

    for rid in ("r-old", "r-new", "r-other"):
        store.create_run(f.run(rid))
    a1 = f.checkpoint("r-old", "a", 1, created_at=1.0, outputs=[f.art("a1", "out")])
    b1 = f.checkpoint("r-old", "b", 2, created_at=1.0)
    a2 = f.checkpoint("r-new", "a", 3, created_at=2.0, outputs=[f.art("a2", "out")])
    a3 = f.checkpoint("r-other", "a", 4, created_at=3.0, status="failed")
    store.add_checkpoints([a1, b1])
    store.add_checkpoints([a2])
    store.add_checkpoints([a3])
    latest = store.latest_checkpoints("wf")
    assert {k: v.id for k, v in latest.items()} == {"a": a2.id, "b": b1.id}
    assert [o.sha256 for o in latest["a"].outputs] == [f.sha("a2")]
    assert store.latest_checkpoints("wf", exclude_run="r-new")["a"].id == a1.id
    assert store.latest_checkpoints("other-workflow") == {}
