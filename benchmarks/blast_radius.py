"""Blast radius on a million lineage edges, on SQLite and on PostgreSQL.

Generates a fleet-shaped lineage graph straight into a fresh store (bulk
inserts through the store's own tables): ``--runs`` runs of 200 workflows,
each a chain of ``--tasks`` checkpoints, each writing two artifacts of
which the next consumes one; every checkpoint records seven asset uses
(three libraries at several versions, a shared implementation, a dataset
out of 100, a model out of 10, a compute pool; all chosen per run); every
fifth checkpoint publishes a claim, and a fifth of the runs start from a
claim published by a recent run. Lineage edges
are the rows of ``asset_use``, ``checkpoint_artifact`` and ``claim_value``.
Then it builds the lineage index once (``Store.catch_up_lineage``, timed on
its own: the cost a store pays once, after which every query indexes only
the checkpoints written since the last), and times ``Store.blast_radius``
(with the counts read) for selectors whose radius goes from a handful of
checkpoints to half of the graph, for each walk asked for (``index``: over
the lineage index, the default; ``database``: inside the database over the
store's own tables; ``hops``: the pure core's walk with one query per hop,
the reference), and prints one table.

    python benchmarks/blast_radius.py [--runs 10000] [--tasks 10] [--repeat 3]
                                      [--walk index,database,hops]
                                      [--pg postgresql://postgres@127.0.0.1:5432/test] [--no-pg]

PostgreSQL: the URL (default ``$HEADWATER_TEST_POSTGRES``) is used with a
schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from headwater.store import normalise_url, open_store
from headwater.store import schema as t

LIBS = {"numpy": ["1.26.4", "2.0.2", "2.1.3"], "scipy": ["1.11.1", "1.11.4", "1.12.0", "1.13.1", "1.14.0"],
        "pandas": ["2.1.4", "2.2.2"]}
IMPLS = ["integrate/rk4@1.1", "integrate/rk4@1.2", "integrate/euler@1.0"]
DATASETS = [f"survey-{i}" for i in range(100)]  # one per run: each in about 1% of runs
MODELS = [f"emulator-{i}" for i in range(10)]  # one per run: each in about 10% of runs
POOLS = ["cpu-a", "cpu-b", "gpu-a"]
KEYS = [f"const.{i}" for i in range(50)]


def generate(store, runs: int, tasks: int, seed: int = 1) -> dict:
    """Write the graph; returns counts of rows per edge table."""
    rng = random.Random(seed)
    now = time.time()
    run_rows, ck_rows, links, uses, claims = [], [], [], [], []
    published: list[tuple[str, str]] = []  # (key, checkpoint id) in publication order
    n = 0
    for r in range(runs):
        run_id = f"run{r:07d}"
        workflow = f"wf{r % 200:03d}"
        run_rows.append({"id": run_id, "workflow": workflow, "spec_hash": "s", "campaign": "bench", "params": {},
                         "seed": 0, "status": "succeeded", "why": None, "source": None, "created_at": now + r,
                         "finished_at": None, "options": {}, "tags": []})
        numpy_v = rng.choice(LIBS["numpy"])
        scipy_v = rng.choice(LIBS["scipy"])
        pandas_v = rng.choice(LIBS["pandas"])
        impl = rng.choice(IMPLS)
        pool = rng.choice(POOLS)
        dataset = rng.choice(DATASETS)
        model = rng.choice(MODELS)
        prev_sha = None
        for k in range(tasks):
            n += 1
            cid = hashlib.sha256(b"ck%d" % n).hexdigest()
            ck_rows.append({"id": cid, "run_id": run_id, "workflow": workflow, "task": f"t{k}", "attempt": 1,
                            "status": "committed", "bundle": b"{}", "signature": "", "key_id": "k",
                            "parents": [], "prev": None, "cache_key": None, "env_fp": "e",
                            "created_at": now + r + k / 100, "seq": k + 1, "cache_valid": True,
                            "status_reason": None})
            if prev_sha is not None:
                links.append({"checkpoint_id": cid, "direction": "in", "pos": 0, "name": "in", "sha256": prev_sha})
            sha = hashlib.sha256(b"art%d" % n).hexdigest()
            log = hashlib.sha256(b"log%d" % n).hexdigest()
            links.append({"checkpoint_id": cid, "direction": "out", "pos": 0, "name": "out", "sha256": sha})
            links.append({"checkpoint_id": cid, "direction": "out", "pos": 1, "name": "log", "sha256": log})
            prev_sha = sha
            name, _, version = impl.partition("@")
            for kind, nm, v in (("lib", "numpy", numpy_v), ("lib", "scipy", scipy_v), ("lib", "pandas", pandas_v),
                                ("lib", name, version), ("dataset", dataset, "1"),
                                ("model", model, "3"), ("compute", pool, "hw1")):
                uses.append({"checkpoint_id": cid, "kind": kind, "name": nm, "version": v, "direction": "consumed"})
            if k == 0 and published and rng.random() < 0.2:
                key, producer = published[rng.randrange(max(0, len(published) - 2000), len(published))]
                uses.append({"checkpoint_id": cid, "kind": "claim", "name": key, "version": producer[:12],
                             "direction": "consumed"})
            if n % 5 == 0:
                key = rng.choice(KEYS)
                claims.append({"checkpoint_id": cid, "key": key, "value": rng.random(), "uncertainty": 0.01,
                               "units": None, "created_at": now + r})
                published.append((key, cid))
    artifacts = {row["sha256"] for row in links}
    with store.transaction() as conn:
        conn.execute(sa.insert(t.campaign), [{"name": "bench", "created_at": now}])
        for table, rows in ((t.run, run_rows), (t.checkpoint, ck_rows),
                            (t.artifact, [{"sha256": s, "size": 1, "media_type": "x", "uri": "u"} for s in artifacts]),
                            (t.checkpoint_artifact, links), (t.asset_use, uses), (t.claim_value, claims)):
            for start in range(0, len(rows), 20_000):
                conn.execute(sa.insert(table), rows[start:start + 20_000])
    analyse(store)
    return {"checkpoints": len(ck_rows), "asset_use": len(uses), "checkpoint_artifact": len(links),
            "claim_value": len(claims), "edges": len(uses) + len(links) + len(claims),
            "claim": _consumed_claim(uses)}


def analyse(store) -> None:
    """What autovacuum would do after a bulk load (statistics for the planner)."""
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    else:
        with store.transaction() as conn:
            conn.exec_driver_sql("ANALYZE")


def _consumed_claim(uses: list[dict]) -> str:
    """A claim version that some run consumed (the first one, for a stable choice)."""
    u = next(u for u in uses if u["kind"] == "claim")
    return f"claim:{u['name']}@{u['version']}"


def time_queries(store, selectors: list[str], repeat: int, walks: list[str]) -> list[dict]:
    out = []
    for selector in selectors:
        for walk in walks:
            times, radius = [], None
            for _ in range(repeat):
                t0 = time.perf_counter()
                radius = store.blast_radius(selector, walk=walk)
                c = radius.counts()
                times.append(time.perf_counter() - t0)
            out.append({"selector": selector, "walk": walk, "seconds": statistics.median(times),
                        "max": max(times), **c})
    return out


def bench(url: str | None, root: Path, args) -> tuple[dict, list[dict]]:
    store = open_store(url or f"sqlite:///{root / 'store.db'}", root=root)
    try:
        t0 = time.perf_counter()
        counts = generate(store, args.runs, args.tasks)
        counts["generate_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        counts["indexed"] = store.catch_up_lineage()
        counts["index_seconds"] = time.perf_counter() - t0
        analyse(store)
        selectors = [counts["claim"], "dataset:survey-7", "model:emulator-3", "lib:scipy@1.11.1",
                     "lib:integrate/euler@1.0", "lib:scipy@>=1.11,<1.12"]
        return counts, time_queries(store, selectors, args.repeat, args.walk.split(","))
    finally:
        store.close()


def pg_schema(base: str):
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    url = make_url(normalise_url(base))
    schema = f"hw_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    isolated = url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))
        admin.dispose()

    return isolated, drop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--walk", default="index,database",
                        help="comma-separated walks to time: index, database, hops")
    parser.add_argument("--pg", default=os.environ.get("HEADWATER_TEST_POSTGRES"))
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args(argv)
    console = Console(width=max(Console().width, 110))
    table = Table(title="blast radius (median of repeats)", title_justify="left")
    for col in ("store", "edges", "selector", "walk", "checkpoints", "runs", "claims", "seconds"):
        table.add_column(col, justify="right" if col in ("edges", "checkpoints", "runs", "claims", "seconds") else "left")
    worst, walks = 0.0, args.walk.split(",")
    stores = [("sqlite", None)] + ([] if args.no_pg or not args.pg else [("postgresql", args.pg)])
    for name, url in stores:
        with tempfile.TemporaryDirectory(prefix="hw-blast-") as tmp:
            drop = None
            if url is not None:
                url, drop = pg_schema(url)
            try:
                counts, rows = bench(url, Path(tmp), args)
            finally:
                if drop is not None:
                    drop()
        console.print(f"{name}: {counts['edges']:,} lineage edges ({counts['asset_use']:,} asset uses, "
                      f"{counts['checkpoint_artifact']:,} artifact links, {counts['claim_value']:,} claims) over "
                      f"{counts['checkpoints']:,} checkpoints, generated in {counts['generate_seconds']:.1f} s; "
                      f"lineage index of {counts['indexed']:,} checkpoints built in {counts['index_seconds']:.1f} s")
        for r in rows:
            if r["walk"] == walks[0]:
                worst = max(worst, r["seconds"])
            table.add_row(name, f"{counts['edges']:,}", r["selector"], r["walk"], f"{r['checkpoints']:,}", f"{r['runs']:,}",
                          f"{r['claims']:,}", f"{r['seconds']:.3f}")
    console.print(table)
    console.print(f"slowest median ({walks[0]} walk): {worst:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
