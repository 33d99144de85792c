"""A small lineage graph used by the blast-radius tests, in memory and in a store.

::

    run r1 (wf-a)   c1 uses claim:g@G1 ---> art s1 ---> c2 (same run)  --claims x-->
    run r2 (wf-b)   c3 uses claim:x@<c2>  --claims y-->
    run r3 (wf-c)   c4 uses claim:y@<c3>          (two claim hops from g)
    run r4 (wf-d)   c5 consumes an artifact with the bytes of s1, produced in its own run by c6
                    (equal bytes from an unrelated run: not affected)
    run r5 (wf-e)   c7 uses claim:g@G0 (another version: not affected by G1)
"""

from __future__ import annotations

from headwater.oversight import CheckpointInfo, LineageGraph

IDS = {name: (name * 32)[:64] for name in ("c1", "c2", "c3", "c4", "c5", "c6", "c7")}
SHA = {"s1": "a1" * 32, "s2": "b2" * 32, "s5": "c3" * 32}
RUNS = {"c1": ("r1", "wf-a", "first", 1), "c2": ("r1", "wf-a", "second", 2), "c3": ("r2", "wf-b", "use-x", 1),
        "c4": ("r3", "wf-c", "use-y", 1), "c6": ("r4", "wf-d", "make", 1), "c5": ("r4", "wf-d", "take", 2),
        "c7": ("r5", "wf-e", "old", 1)}
G0, G1 = "g0g0g0g0g0g0", "g1g1g1g1g1g1"


def spec():
    """(name, uses, claims, inputs, outputs) per checkpoint, in the order written."""
    v = {n: i[:12] for n, i in IDS.items()}
    return [
        ("c7", [("claim", "g", G0)], [], [], []),
        ("c1", [("claim", "g", G1), ("lib", "numpy", "2.0")], [], [], ["s1"]),
        ("c2", [], ["x"], ["s1"], ["s2"]),
        ("c3", [("claim", "x", v["c2"])], ["y"], [], []),
        ("c4", [("claim", "y", v["c3"])], [], [], []),
        ("c6", [("lib", "numpy", "2.0")], [], [], ["s1"]),
        ("c5", [], [], ["s1"], ["s5"]),
    ]


def memory_graph() -> LineageGraph:
    g = LineageGraph()
    for i, (name, uses, claims, inputs, outputs) in enumerate(spec()):
        run, wf, task, seq = RUNS[name]
        g.add(CheckpointInfo(IDS[name], run, wf, task, "committed", seq), uses=uses, claims=claims,
              inputs=[SHA[s] for s in inputs], outputs=[SHA[s] for s in outputs], created_at=float(i))
    return g


def fill_store(store) -> None:
    """Write the same graph into a store."""
    from headwater.store.records import ArtifactRecord, AssetUse, CheckpointRecord, ClaimRecord, RunRecord

    for run, wf in sorted({(r, w) for r, w, _, _ in RUNS.values()}):
        store.create_run(RunRecord(run, wf, "spec", "camp", {}, 0, "succeeded", None, None, 1.0, tags=[]))
    records = []
    for i, (name, uses, claims, inputs, outputs) in enumerate(spec()):
        run, wf, task, _ = RUNS[name]
        art = lambda s: ArtifactRecord(SHA[s], 1, "application/json", f"file:///{s}", s)  # noqa: E731
        records.append(CheckpointRecord(
            id=IDS[name], run_id=run, workflow=wf, task=task, attempt=1, status="committed", bundle=b"{}",
            signature="", key_id="k", parents=[], prev=None, cache_key=f"key-{name}", env_fp="env",
            created_at=float(i), inputs=[art(s) for s in inputs], outputs=[art(s) for s in outputs],
            claims=[ClaimRecord(k, 1.0, 0.1, "m") for k in claims],
            uses=[AssetUse(k, n, v, "consumed") for k, n, v in uses]))
    store.add_checkpoints(records)
