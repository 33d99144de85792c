"""Lineage graphs for the blast-radius tests, in memory and in a store.

The fixed graph::

    run r1 (wf-a)   c1 uses claim:g@G1 ---> art s1 ---> c2 (same run)  --claims x-->
    run r2 (wf-b)   c3 uses claim:x@<c2>  --claims y-->
    run r3 (wf-c)   c4 uses claim:y@<c3>          (two claim hops from g)
    run r4 (wf-d)   c5 consumes an artifact with the bytes of s1, produced in its own run by c6
                    (equal bytes from an unrelated run: not affected)
    run r5 (wf-e)   c7 uses claim:g@G0 (another version: not affected by G1)

and :func:`random_graph`, for property tests. A graph is a list of
:data:`Row` in the order written: (checkpoint, uses, claim keys produced,
input sha256s, output sha256s).
"""

from __future__ import annotations

import hashlib
import random

from headwater.oversight import CheckpointInfo, LineageGraph

Row = tuple[CheckpointInfo, list[tuple[str, str, str]], list[str], list[str], list[str]]

IDS = {name: (name * 32)[:64] for name in ("c1", "c2", "c3", "c4", "c5", "c6", "c7")}
SHA = {"s1": "a1" * 32, "s2": "b2" * 32, "s5": "c3" * 32}
RUNS = {"c1": ("r1", "wf-a", "first", 1), "c2": ("r1", "wf-a", "second", 2), "c3": ("r2", "wf-b", "use-x", 1),
        "c4": ("r3", "wf-c", "use-y", 1), "c6": ("r4", "wf-d", "make", 1), "c5": ("r4", "wf-d", "take", 2),
        "c7": ("r5", "wf-e", "old", 1)}
G0, G1 = "g0g0g0g0g0g0", "g1g1g1g1g1g1"


def spec() -> list[Row]:
    v = {n: i[:12] for n, i in IDS.items()}
    rows = [
        ("c7", [("claim", "g", G0)], [], [], []),
        ("c1", [("claim", "g", G1), ("lib", "numpy", "2.0")], [], [], ["s1"]),
        ("c2", [], ["x"], ["s1"], ["s2"]),
        ("c3", [("claim", "x", v["c2"])], ["y"], [], []),
        ("c4", [("claim", "y", v["c3"])], [], [], []),
        ("c6", [("lib", "numpy", "2.0")], [], [], ["s1"]),
        ("c5", [], [], ["s1"], ["s5"]),
    ]
    return [(CheckpointInfo(IDS[name], *RUNS[name][:3], "committed", RUNS[name][3]), uses, claims,
             [SHA[s] for s in inputs], [SHA[s] for s in outputs])
            for name, uses, claims, inputs, outputs in rows]


def to_memory(rows: list[Row]) -> LineageGraph:
    g = LineageGraph()
    for i, (info, uses, claims, inputs, outputs) in enumerate(rows):
        g.add(info, uses=uses, claims=claims, inputs=inputs, outputs=outputs, created_at=float(i))
    return g


def to_store(store, rows: list[Row], names: dict[str, str] | None = None) -> None:
    """Write a graph into a store, one run record per run it names; each
    checkpoint's cache key is ``key-<name>`` (``names``: id -> name; the id by default)."""
    names = names or {}
    from headwater.store.records import ArtifactRecord, AssetUse, CheckpointRecord, ClaimRecord, RunRecord

    for run, wf in sorted({(info.run_id, info.workflow) for info, *_ in rows}):
        store.create_run(RunRecord(run, wf, "spec", "camp", {}, 0, "succeeded", None, None, 1.0, tags=[]))
    art = lambda s: ArtifactRecord(s, 1, "application/json", f"file:///{s}", s[:8])  # noqa: E731
    store.add_checkpoints([CheckpointRecord(
        id=info.id, run_id=info.run_id, workflow=info.workflow, task=info.task, attempt=1, status=info.status,
        bundle=b"{}", signature="", key_id="k", parents=[], prev=None, cache_key=f"key-{names.get(info.id, info.id)}", env_fp="env",
        created_at=float(i), inputs=[art(s) for s in inputs], outputs=[art(s) for s in outputs],
        claims=[ClaimRecord(k, 1.0, 0.1, "m") for k in claims],
        uses=[AssetUse(k, n, v, "consumed") for k, n, v in uses]) for i, (info, uses, claims, inputs, outputs)
        in enumerate(rows)])


def memory_graph() -> LineageGraph:
    return to_memory(spec())


def fill_store(store) -> None:
    """Write the fixed graph into a store."""
    to_store(store, spec(), {i: n for n, i in IDS.items()})


def random_graph(seed: int, ns: str, *, runs: int = 4, per_run: int = 6) -> list[Row]:
    """A random graph whose names all start with ``ns`` (so several can share a
    store, ids too): libraries and claims shared across runs, artifacts
    consumed in their run and, with equal bytes, in others, ids in random order."""
    rng = random.Random(seed)
    libs = [(f"{ns}L{i}", f"v{j}") for i in range(3) for j in range(2)]
    keys = [f"{ns}k{i}" for i in range(3)]
    def digest() -> str:
        return hashlib.sha256(f"{ns}{rng.getrandbits(64)}".encode()).hexdigest()

    pool = [digest() for _ in range(8)]  # few byte strings: equal bytes recur
    rows: list[Row] = []
    published: list[tuple[str, str]] = []
    order = list(range(runs * per_run))
    rng.shuffle(order)
    made: dict[str, list[str]] = {}
    seq: dict[str, int] = {}
    for n in order:
        r = n % runs
        run = f"{ns}r{r}"
        cid = digest()
        uses = [("lib", *lib) for lib in rng.sample(libs, rng.randint(0, 2))]
        if published and rng.random() < 0.5:
            key, producer = rng.choice(published)
            uses.append(("claim", key, producer[:12]))
        inputs = rng.sample(made.get(run, []) + pool[:2], min(rng.randint(0, 2), len(made.get(run, [])) + 2))
        outputs = rng.sample(pool, rng.randint(0, 2))
        claims = rng.sample(keys, rng.randint(0, 1))
        made.setdefault(run, []).extend(outputs)
        published += [(k, cid) for k in claims]
        seq[run] = seq.get(run, 0) + 1
        info = CheckpointInfo(cid, run, f"{ns}wf{r % 3}", f"t{n}", "committed", seq[run])
        rows.append((info, uses, claims, inputs, outputs))
    return rows
