"""Speculative scheduling: makespan under verification latency, and per-task overhead.

Two tables, each measured in fresh workspaces (temporary directories) with
local agent processes on the embedded SQLite store.

1. Speculation. Chains and layered DAGs of tasks that sleep for C seconds
   (and save nothing, so an artifact's fsync does not count as compute),
   each verified (``verify=1``) by a verifier that sleeps V seconds and
   rejects with probability p (decided per seed, task and attempt, so runs
   are repeatable). For speculation off, fixed depth 2 and 8, and adaptive:
   the makespan (first dispatch to the end of the run, from the run's
   structured log; the wall time with start-up is shown beside it), its ratio
   to the ideal bound (the critical path of compute plus one final
   verification), squashed attempts, and scoreboard reads and notifications
   per task. Agents recheck with the adaptive policy. The ideal bound
   assumes verifiers never queue, which takes at least width x (C + V) / C
   agents (9 for the default 3-wide DAG), hence the default of 12; with
   fewer agents the layered makespan measures agent capacity, not
   speculation.

2. Overhead. No-op tasks on three graphs -- 10,000 independent tasks, a
   1,000-task chain, and a 50x100 layered DAG where each task depends on two
   of the previous layer -- run by headwater (a full signed bundle per task,
   durably stored), by ``dask.delayed`` on Dask's threaded scheduler and by
   Parsl's ThreadPoolExecutor (which record nothing), each in its own fresh
   process, in the same benchmark run: tasks per second, headwater's ratio
   to each, and peak RSS of the process that scheduled the work.

    python benchmarks/speculation.py                 # both tables
    python benchmarks/speculation.py --only overhead --workers 2
    python benchmarks/speculation.py --only speculation --compute 0.05 --verify-latency 0.1

The comparison libraries are the ``bench`` extra (``pip install -e .[bench]``);
a library that is missing is reported as such and its column left empty.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRAPHS = {"independent": 10_000, "chain": 1_000, "layered": 5_000}
MODES = ("off", "2", "8", "adaptive")

SPEC_WF = '''
import random, time
from headwater import Workflow

wf = Workflow("speculation-bench")
wf.param("C", "float", default=0.05)
wf.param("V", "float", default=0.05)
wf.param("p", "float", default=0.0)
wf.param("seed", "int", default=1)
SHAPE = {shape!r}
DEPTH, WIDTH = {depth}, {width}

def work(ctx):
    time.sleep(ctx.params["C"])

def judge(ctx, outputs):
    time.sleep(ctx.params["V"])
    draw = random.Random(f"{{ctx.params['seed']}}:{{ctx.task}}:{{ctx.attempt}}").random()
    return draw >= ctx.params["p"] or "rejected by the benchmark's coin"

for level in range(DEPTH):
    for i in range(WIDTH):
        name = f"t{{level}}_{{i}}"
        if level == 0:
            deps = []
        elif SHAPE == "chain":
            deps = [f"t{{level - 1}}_{{i}}"]
        else:
            deps = sorted({{f"t{{level - 1}}_{{i}}", f"t{{level - 1}}_{{(i + 1) % WIDTH}}"}})
        wf.task(work, name=name, after=deps, verify=1, verifier=judge)
'''


def _noop_source(graph: str) -> str:
    if graph == "independent":
        body = "for i in range(10000):\n    wf.task(noop, name=f't{i}')\n"
    elif graph == "chain":
        body = "for i in range(1000):\n    wf.task(noop, name=f't{i}', after=[f't{i-1}'] if i else [])\n"
    else:
        body = ("W, D = 50, 100\nfor l in range(D):\n    for i in range(W):\n"
                "        wf.task(noop, name=f't{l}_{i}', after=[f't{l-1}_{i}', f't{l-1}_{(i+1)%W}'] if l else [])\n")
    return f"from headwater import Workflow\nwf = Workflow('overhead-{graph}')\ndef noop(ctx):\n    pass\n{body}"


# -- one measurement per process ------------------------------------------------

def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_headwater(graph: str, workers: int) -> dict:
    from headwater.runtime import RunOptions, open_workspace, run_workflow
    from headwater.spec import load_workflow

    with tempfile.TemporaryDirectory(prefix="hw-bench-") as tmp:
        ws = open_workspace(Path(tmp) / ".headwater")
        path = Path(tmp) / f"{graph}.py"
        path.write_text(_noop_source(graph))
        wf = load_workflow(path)
        t0 = time.perf_counter()
        summary = run_workflow(ws, wf, {}, RunOptions(workers=workers, seed=1, no_cache=True))
        seconds = time.perf_counter() - t0
        n = len(ws.store.list_checkpoints(summary.run_id, status="committed"))
        ws.close()
    return {"tasks": n, "seconds": seconds, "status": summary.status, "peak_mb": _peak_mb()}


def _dask_graph(graph: str):
    from dask import delayed

    def noop(*args):
        return None

    if graph == "independent":
        return [delayed(noop, pure=False)() for _ in range(GRAPHS[graph])]
    if graph == "chain":
        x = delayed(noop, pure=False)()
        for _ in range(GRAPHS[graph] - 1):
            x = delayed(noop, pure=False)(x)
        return [x]
    prev = [delayed(noop, pure=False)() for _ in range(50)]
    out = list(prev)
    for _ in range(99):
        prev = [delayed(noop, pure=False)(prev[i], prev[(i + 1) % 50]) for i in range(50)]
        out += prev
    return out


def measure_dask(graph: str, workers: int) -> dict:
    import dask

    tasks = _dask_graph(graph)
    t0 = time.perf_counter()
    dask.compute(*tasks, scheduler="threads", num_workers=workers)
    return {"tasks": GRAPHS[graph], "seconds": time.perf_counter() - t0, "status": "succeeded", "peak_mb": _peak_mb()}


def measure_parsl(graph: str, workers: int) -> dict:
    import parsl
    from parsl.app.app import python_app
    from parsl.config import Config
    from parsl.executors.threads import ThreadPoolExecutor

    @python_app
    def noop(*args):
        return None

    parsl.load(Config(executors=[ThreadPoolExecutor(max_threads=workers)], strategy=None))
    try:
        t0 = time.perf_counter()
        if graph == "independent":
            futures = [noop() for _ in range(GRAPHS[graph])]
        elif graph == "chain":
            x = noop()
            for _ in range(GRAPHS[graph] - 1):
                x = noop(x)
            futures = [x]
        else:
            prev = [noop() for _ in range(50)]
            futures = list(prev)
            for _ in range(99):
                prev = [noop(prev[i], prev[(i + 1) % 50]) for i in range(50)]
                futures += prev
        for f in futures:
            f.result()
        seconds = time.perf_counter() - t0
    finally:
        parsl.dfk().cleanup()
        parsl.clear()
    return {"tasks": GRAPHS[graph], "seconds": seconds, "status": "succeeded", "peak_mb": _peak_mb()}


def measure_speculation(shape: str, depth: int, width: int, mode: str, C: float, V: float, p: float,
                        seed: int, workers: int) -> dict:
    from headwater.runtime import RunOptions, open_workspace, run_workflow
    from headwater.spec import load_workflow

    with tempfile.TemporaryDirectory(prefix="hw-bench-") as tmp:
        ws = open_workspace(Path(tmp) / ".headwater")
        path = Path(tmp) / "spec.py"
        path.write_text(SPEC_WF.format(shape=shape, depth=depth, width=width))
        wf = load_workflow(path)
        speculate = 0 if mode == "off" else (mode if mode == "adaptive" else int(mode))
        t0 = time.perf_counter()
        summary = run_workflow(ws, wf, {"C": C, "V": V, "p": p, "seed": seed},
                               RunOptions(workers=workers, seed=seed, no_cache=True, speculate=speculate,
                                          recheck="adaptive", max_refutations=20))
        wall = time.perf_counter() - t0
        lines = [json.loads(x) for x in (ws.root / "logs" / f"{summary.run_id}.jsonl").read_text().splitlines()]
        ws.close()
    first = min(x["ts"] for x in lines if x["event"] == "dispatched")
    last = max(x["ts"] for x in lines if x["event"] == "run_finished")
    n = len(wf.tasks)
    c = summary.counters
    return {"status": summary.status, "seconds": last - first, "wall": wall, "squashed": c["squashed"],
            "refuted": c["refuted"],
            "reads_per_task": c["scoreboard_reads"] / n, "notifications_per_task": c["notifications"] / n,
            "speculative_claims": c["speculative_claims"]}


def _child(kind: str, args: dict) -> dict:
    """Run one measurement in a fresh interpreter (clean peak RSS, no shared state)."""
    code = f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import speculation as s; " \
           f"print(json.dumps(s.measure_{kind}(**json.loads(sys.argv[1]))))"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return {"error": last}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- tables -----------------------------------------------------------------------

def overhead(workers: int) -> list[dict]:
    rows = []
    for graph in GRAPHS:
        row: dict = {"graph": graph, "tasks": GRAPHS[graph]}
        for system in ("headwater", "dask", "parsl"):
            res = _child(system, {"graph": graph, "workers": workers})
            row[system] = res
        rows.append(row)
    return rows


def speculation(args) -> list[dict]:
    rows = []
    shapes = [("chain", args.chain, 1), ("layered", args.layers, args.width)]
    for shape, depth, width in shapes:
        ideal = depth * args.compute + args.verify_latency
        for p in (0.0, args.refute):
            for mode in MODES:
                res = _child("speculation", {"shape": shape, "depth": depth, "width": width, "mode": mode,
                                             "C": args.compute, "V": args.verify_latency, "p": p,
                                             "seed": args.seed, "workers": args.agents})
                rows.append({"shape": f"{shape} {depth}x{width}", "p": p, "mode": mode, "ideal": ideal, **res})
    return rows


def _fmt(x, spec=".0f"):
    return "-" if x is None else format(x, spec)


def print_tables(over: list[dict] | None, spec: list[dict] | None, args) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    where = f"{platform.machine()} · {args.workers} agents · Python {sys.version.split()[0]}"
    if spec is not None:
        t = Table(title=f"speculation · C={args.compute}s V={args.verify_latency}s · {args.agents} agents · "
                        f"seed {args.seed}", title_justify="left")
        for col in ("graph", "p", "speculate", "status", "makespan s", "wall s", "ideal s", "/ ideal", "vs off",
                    "squashed", "refuted", "reads/task", "notif./task"):
            t.add_column(col, justify="right")
        off = {}
        for r in spec:
            if r["mode"] == "off" and "seconds" in r:
                off[(r["shape"], r["p"])] = r["seconds"]
        for r in spec:
            if "error" in r:
                t.add_row(r["shape"], str(r["p"]), r["mode"], r["error"][:40], *["-"] * 9)
                continue
            base = off.get((r["shape"], r["p"]))
            t.add_row(r["shape"], f"{r['p']:.1f}", r["mode"], r["status"], f"{r['seconds']:.2f}", f"{r['wall']:.2f}",
                      f"{r['ideal']:.2f}",
                      f"{r['seconds'] / r['ideal']:.2f}", f"{base / r['seconds']:.2f}x" if base else "-",
                      str(r["squashed"]), str(r["refuted"]), f"{r['reads_per_task']:.2f}",
                      f"{r['notifications_per_task']:.2f}")
        console.print(t)
    if over is not None:
        t = Table(title=f"per-task overhead, no-op tasks · {where}", title_justify="left")
        for col in ("graph", "tasks", "headwater tasks/s", "dask threads tasks/s", "parsl threads tasks/s",
                    "hw / dask", "hw / parsl", "hw peak MB", "dask peak MB", "parsl peak MB"):
            t.add_column(col, justify="right")
        for r in over:
            rate = {s: (r[s]["tasks"] / r[s]["seconds"] if "seconds" in r[s] else None) for s in ("headwater", "dask", "parsl")}
            hw = rate["headwater"]
            t.add_row(r["graph"], str(r["tasks"]), _fmt(hw), _fmt(rate["dask"]), _fmt(rate["parsl"]),
                      _fmt(hw / rate["dask"] if hw and rate["dask"] else None, ".2f"),
                      _fmt(hw / rate["parsl"] if hw and rate["parsl"] else None, ".2f"),
                      *[_fmt(r[s].get("peak_mb")) for s in ("headwater", "dask", "parsl")])
        console.print(t)
        for r in over:
            for s in ("headwater", "dask", "parsl"):
                if "error" in r[s]:
                    console.print(f"{s} on {r['graph']}: {r[s]['error']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("speculation", "overhead"))
    parser.add_argument("--workers", type=int, default=2, help="agents (and threads) for the overhead table")
    parser.add_argument("--agents", type=int, default=12,
                        help="agents for the speculation table (tasks sleep); the ideal bound needs at least "
                             "width x (C + V) / C of them")
    parser.add_argument("--compute", type=float, default=0.05, help="C: seconds each task sleeps")
    parser.add_argument("--verify-latency", type=float, default=0.1, help="V: seconds each verification sleeps")
    parser.add_argument("--refute", type=float, default=0.3, help="p for the second set of speculation rows")
    parser.add_argument("--chain", type=int, default=20, help="length of the speculation chain")
    parser.add_argument("--layers", type=int, default=10, help="layers of the speculation DAG")
    parser.add_argument("--width", type=int, default=3, help="width of the speculation DAG")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    spec = speculation(args) if args.only in (None, "speculation") else None
    over = overhead(args.workers) if args.only in (None, "overhead") else None
    if args.json:
        print(json.dumps({"speculation": spec, "overhead": over}, indent=2))
    else:
        print_tables(over, spec, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
