"""Blast radius and taint over the lineage graph: in memory, and in the store on each backend."""

import time
import uuid

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headwater.errors import StoreError
from headwater.oversight import AssetStatus, CheckpointInfo, LineageGraph, blast_radius, parse_ref, taint
from headwater.store import open_store
from headwater.store import schema as t
from tests.oversight.graphs import G0, G1, IDS, SHA, fill_store, memory_graph, random_graph, to_memory, to_store

EXPECTED = {"c1", "c2", "c3", "c4"}


def check_radius(radius):
    assert set(radius.checkpoints) == {IDS[n] for n in EXPECTED}
    assert radius.seeds == [f"claim:g@{G1}"]
    c4 = radius.checkpoints[IDS["c4"]]
    assert c4.path == (f"claim:g@{G1}", f"ckpt:{IDS['c1']}", f"artifact:{SHA['s1']}", f"ckpt:{IDS['c2']}",
                       f"claim:x@{IDS['c2'][:12]}", f"ckpt:{IDS['c3']}", f"claim:y@{IDS['c3'][:12]}",
                       f"ckpt:{IDS['c4']}")
    assert (c4.depth, c4.run_id, c4.workflow, c4.task, c4.status) == (4, "r3", "wf-c", "use-y", "committed")
    assert set(radius.claims) == {f"claim:x@{IDS['c2'][:12]}", f"claim:y@{IDS['c3'][:12]}"}
    assert set(radius.artifacts) == {SHA["s1"], SHA["s2"]}
    assert radius.counts() == {"workflows": 3, "runs": 3, "checkpoints": 4, "committed": 4, "artifacts": 2,
                               "claims": 2}
    assert [h.task for h in radius.runs["r1"]] == ["first", "second"]
    assert radius.workflows == {"wf-a": {"r1"}, "wf-b": {"r2"}, "wf-c": {"r3"}}


def test_blast_radius_in_memory():
    check_radius(blast_radius(memory_graph(), parse_ref(f"claim:g@{G1}")))


def test_blast_radius_in_the_store_matches(store):
    fill_store(store)
    check_radius(store.blast_radius(f"claim:g@{G1}"))
    # the bare asset covers every version; other versions reach other runs
    every = store.blast_radius("claim:g")
    assert set(every.checkpoints) == {IDS[n] for n in EXPECTED | {"c7"}}
    assert every.to_json() == blast_radius(memory_graph(), parse_ref("claim:g")).to_json()
    # a library used in two runs: equal bytes (s1) link runs only within a run
    lib = store.blast_radius("lib:numpy@2.0")
    assert set(lib.checkpoints) == {IDS[n] for n in ("c1", "c2", "c3", "c4", "c6", "c5")}
    assert lib.checkpoints[IDS["c5"]].path[-3:] == (f"ckpt:{IDS['c6']}", f"artifact:{SHA['s1']}", f"ckpt:{IDS['c5']}")
    assert store.blast_radius("lib:numpy@>=3").checkpoints == {}
    assert store.blast_radius("dataset:nothing").counts()["checkpoints"] == 0


def test_claim_versions_are_ordered_as_published_for_ranges(store):
    fill_store(store)
    radius = store.blast_radius(f"claim:g@>={G1}")
    assert radius.seeds == [f"claim:g@{G1}"]
    radius = store.blast_radius(f"claim:g@<{G1}")
    assert radius.seeds == [f"claim:g@{G0}"] and set(radius.checkpoints) == {IDS["c7"]}


def test_taint_reaches_claims_two_hops_away():
    radius = blast_radius(memory_graph(), parse_ref(f"claim:g@{G1}"))
    x, y = f"claim:x@{IDS['c2'][:12]}", f"claim:y@{IDS['c3'][:12]}"
    trs = taint(radius, {}, now=7.0, cause=f"claim:g@{G1}", cause_status=AssetStatus.DEGRADED)
    assert [(t.subject, t.old, t.new) for t in trs] == [(x, None, AssetStatus.SUSPECT), (y, None, AssetStatus.SUSPECT)]
    assert trs[1].record.signal["hops"] == 2 and trs[1].record.cause == f"claim:g@{G1}"
    assert trs[1].record.signal["path"][-1] == y and "2 claim hop(s)" in trs[1].record.reason
    # claims already suspect (or worse) are left alone; uncommitted producers do not count
    trs = taint(radius, {x: AssetStatus.DEGRADED}, now=7.0, cause="c", cause_status=AssetStatus.RETRACTED)
    assert [t.subject for t in trs] == [y]


def test_blast_radius_of_a_large_graph_is_bounded_by_the_radius():
    g = LineageGraph()
    from headwater.oversight import CheckpointInfo

    for i in range(3000):
        cid = f"{i:064x}"
        g.add(CheckpointInfo(cid, f"run{i % 300}", f"wf{i % 30}", f"t{i}"),
              uses=[("lib", "x", "1" if i % 10 else "2")], outputs=[f"{i:064x}"])
    t0 = time.perf_counter()
    radius = blast_radius(g, parse_ref("lib:x@2"))
    assert len(radius.checkpoints) == 300
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("ref", ["lib:numpy", "claim:g", "claim:x", "lib:numpy@>=1,<3"])
def test_store_and_memory_agree_on_every_selector(store, ref):
    fill_store(store)
    assert store.blast_radius(ref).to_json() == blast_radius(memory_graph(), parse_ref(ref)).to_json()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), runs=st.integers(1, 5), per_run=st.integers(1, 7))
def test_the_database_walk_equals_the_pure_walk_on_random_graphs(store, seed, runs, per_run):
    ns = f"n{uuid.uuid4().hex[:6]}-"
    rows = random_graph(seed, ns, runs=runs, per_run=per_run)
    to_store(store, rows)
    graph = to_memory(rows)
    selectors = [f"lib:{ns}L{i}" for i in range(3)] + [f"lib:{ns}L0@v1", f"lib:{ns}L2@>=v1"] + \
        [f"claim:{ns}k{i}" for i in range(3)]
    for sel in selectors:
        expected = blast_radius(graph, parse_ref(sel)).to_json()
        assert store.blast_radius(sel).to_json() == expected, sel
        assert store.blast_radius(sel, walk="database").to_json() == expected, sel
        assert store.blast_radius(sel, walk="hops").to_json() == expected, sel


def test_an_unknown_walk_is_refused(store):
    with pytest.raises(StoreError, match="unknown blast-radius walk 'bfs'; use one of: index, database, hops"):
        store.blast_radius("lib:x", walk="bfs")


def test_the_database_walk_reads_while_a_writer_holds_the_store(store):
    """Its temporary table is the reader's own: no write lock on the store is taken."""
    fill_store(store)
    with store.transaction():
        check_radius(store.blast_radius(f"claim:g@{G1}"))
    check_radius(store.blast_radius(f"claim:g@{G1}"))  # and the table is gone with the snapshot


def _indexed(store) -> tuple[int, int]:
    with store.engine.connect() as conn:
        return (conn.scalar(sa.select(sa.func.count()).select_from(t.lineage_node)),
                conn.scalar(sa.select(sa.func.count()).select_from(t.checkpoint)))


def test_the_lineage_index_catches_up_on_every_query(store):
    fill_store(store)
    assert _indexed(store) == (0, 7)
    check_radius(store.blast_radius(f"claim:g@{G1}"))
    assert _indexed(store) == (7, 7) and store.catch_up_lineage() == 0
    # a checkpoint written after the index was built is in the very next answer
    late = "d" * 64
    to_store(store, [(CheckpointInfo(late, "r6", "wf-f", "late", "committed", 1),
                      [("claim", "y", IDS["c3"][:12])], [], [], [])])
    radius = store.blast_radius(f"claim:g@{G1}")
    assert radius.checkpoints[late].path[-2:] == (f"claim:y@{IDS['c3'][:12]}", f"ckpt:{late}")
    assert _indexed(store) == (8, 8)


def test_checkpoint_status_is_read_when_the_radius_is_asked_for(store):
    """Statuses change after a checkpoint is indexed; the index does not keep them."""
    fill_store(store)
    assert store.blast_radius(f"claim:g@{G1}").counts()["committed"] == 4
    store.set_checkpoint_status([IDS["c3"]], "refuted", "re-run")
    radius = store.blast_radius(f"claim:g@{G1}")
    assert radius.checkpoints[IDS["c3"]].status == "refuted"
    assert radius.counts()["committed"] == 3 and set(radius.checkpoints) == {IDS[n] for n in EXPECTED}


class _RunsOnce:
    """A store for :func:`to_store` that creates each run once, so a graph can be written in batches."""

    def __init__(self, store) -> None:
        self.store, self.runs = store, set()

    def create_run(self, run) -> None:
        if run.id not in self.runs:
            self.runs.add(run.id)
            self.store.create_run(run)

    def add_checkpoints(self, records) -> None:
        self.store.add_checkpoints(records)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(1, 11), max_size=4))
def test_an_index_caught_up_piecemeal_equals_the_pure_walk(store, seed, cuts):
    """Written in batches, with the index caught up after each, consumers often
    come before their producers: the edge is found from whichever end is new."""
    ns = f"p{uuid.uuid4().hex[:6]}-"
    rows = random_graph(seed, ns, runs=2, per_run=6)
    writer = _RunsOnce(store)
    start = 0
    for cut in sorted(set(cuts)) + [len(rows)]:
        if cut > start:
            to_store(writer, rows[start:cut])
            assert store.catch_up_lineage() == cut - start
            start = cut
    graph = to_memory(rows)
    for sel in [f"lib:{ns}L{i}" for i in range(3)] + [f"claim:{ns}k{i}" for i in range(3)]:
        assert store.blast_radius(sel).to_json() == blast_radius(graph, parse_ref(sel)).to_json(), sel


def test_a_sqlite_reader_does_not_wait_on_a_writer_to_catch_up(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}", root=tmp_path)
    try:
        fill_store(store)
        with store.transaction():
            assert store.catch_up_lineage() is None
            check_radius(store.blast_radius(f"claim:g@{G1}"))  # answered by the database walk
        assert _indexed(store) == (0, 7)
        assert store.catch_up_lineage() == 7
    finally:
        store.close()
