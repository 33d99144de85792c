"""Distributed execution: throughput and per-task overhead of headwater's
executors beside plain Dask distributed, on no-op graphs.

Graphs: a fan-out of N independent tasks (default 10,000) and a layered DAG
of D layers of W tasks (default 50 wide, 100 deep), each task depending on
two of the previous layer. Every headwater run records a full signed bundle
per task, durably stored; plain Dask records nothing.

Systems, each with the same number of workers:

* ``local``: headwater's local agent processes (``headwater run``);
* ``dask``: headwater's Dask executor on a ``LocalCluster`` started before
  the clock, as plain Dask's is (``headwater run --executor dask
  --scheduler-address ...``);
* ``http``: remote agents over HTTP: ``headwater serve`` and W
  ``headwater agent`` processes (batched claims and submissions, each
  submission claiming the agent's next batch, idle agents holding a claim
  open on the server, persistent connections), the run submitted to the
  shared queue; timed from submission to the run's end (the agents are
  already up and registered);
* ``plain-dask``: ``dask.distributed.Client(LocalCluster(...))`` computing the
  same no-op graph with ``dask.delayed``.

Columns: tasks per second, milliseconds per task, and the ratios the issue
sets goals for: ``http`` throughput over ``local`` (goal >= 0.25) and the
``dask`` executor's time over plain Dask's (goal <= 2).

    python benchmarks/distributed.py                          # the issue's sizes
    python benchmarks/distributed.py --fanout 1000 --width 10 --depth 20 --workers 2
    python benchmarks/distributed.py --only local,http --batch 64 --json

Each system runs in a fresh workspace (temporary directory) on the embedded
SQLite store, or on ``--store URL`` (PostgreSQL) when given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This file's name would shadow the ``distributed`` package (Dask's) for
# everything imported after it, since Python puts the script's directory first.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

SYSTEMS = ("local", "dask", "http", "plain-dask")


def noop_source(graph: str, fanout: int, width: int, depth: int) -> str:
    """A workflow file of no-op tasks shaped like ``graph``."""
    if graph == "fanout":
        body = f"for i in range({fanout}):\n    wf.task(noop, name=f't{{i}}')\n"
    else:
        body = (f"W, D = {width}, {depth}\nfor l in range(D):\n    for i in range(W):\n"
                "        wf.task(noop, name=f't{l}_{i}', after=sorted({f't{l-1}_{i}', f't{l-1}_{(i+1)%W}'}) "
                "if l else [])\n")
    return f"from headwater import Workflow\nwf = Workflow('distributed-{graph}')\ndef noop(ctx):\n    pass\n{body}"


def _workflow(tmp: Path, graph: str, args: argparse.Namespace):
    from headwater.spec import load_workflow

    path = tmp / f"{graph}.py"
    path.write_text(noop_source(graph, args.fanout, args.width, args.depth))
    return load_workflow(path)


def _committed(store, run_id: str) -> int:
    return len(store.list_checkpoints(run_id, status="committed"))


def measure_executor(graph: str, executor: str, args: argparse.Namespace) -> dict:
    """headwater's own runtime with local processes or the Dask executor."""
    from headwater.runtime import RunOptions, open_workspace, run_workflow

    with tempfile.TemporaryDirectory(prefix="hw-dist-") as tmp, contextlib.ExitStack() as stack:
        ws = open_workspace(Path(tmp) / ".headwater", args.store)
        wf = _workflow(Path(tmp), graph, args)
        address = None
        if executor == "dask":
            # The cluster is started before the clock, as for plain Dask; loading
            # headwater and the workflow on the workers stays inside it.
            from distributed import LocalCluster

            cluster = stack.enter_context(LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                                       processes=True, dashboard_address=None))
            address = cluster.scheduler_address
        t0 = time.perf_counter()
        summary = run_workflow(ws, wf, {}, RunOptions(workers=args.workers, seed=1, no_cache=True,
                                                      executor=executor, scheduler_address=address))
        seconds = time.perf_counter() - t0
        n = _committed(ws.store, summary.run_id)
        ws.close()
    return {"tasks": n, "seconds": seconds, "status": summary.status}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _headwater(*argv: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "headwater", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def measure_http(graph: str, args: argparse.Namespace) -> dict:
    """``headwater serve`` plus ``--workers`` remote agent processes."""
    import httpx

    from headwater.runtime.shared import submit_run
    from headwater.store import open_store
    from headwater.store.tokens import Tokens

    with tempfile.TemporaryDirectory(prefix="hw-dist-") as tmp:
        home = Path(tmp) / ".headwater"
        wf = _workflow(Path(tmp), graph, args)
        store = open_store(args.store, root=home)
        _, secret = Tokens(store).create(["worker", "verifier"], time.time(), label="benchmark")
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        serve = ["--home", str(home)] + (["--store", args.store] if args.store else []) + \
            ["serve", "--port", str(port)]
        procs = [_headwater(*serve)]
        try:
            headers = {"Authorization": f"Bearer {secret}"}
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            logs = [Path(tmp) / f"agent-{i}.log" for i in range(args.workers)]
            for i, log in enumerate(logs):
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "headwater", "agent", "--server", url, "--token", secret,
                     "--name", f"bench-{os.getpid()}-{i}", "--workflow", wf.source_file,
                     "--batch", str(args.batch), "--cache", str(Path(tmp) / f"agent-{i}"), "--json"],
                    stdout=subprocess.DEVNULL, stderr=log.open("w"), cwd=tmp))
            # The clock starts once every agent has loaded the workflow and registered.
            names = [f"bench-{os.getpid()}-{i}" for i in range(args.workers)]
            deadline = time.monotonic() + args.agent_start
            while time.monotonic() < deadline and not all(Tokens(store).agent(n) for n in names):
                time.sleep(0.1)
            t0 = time.perf_counter()
            run_id = submit_run(store, wf, seed=1)
            version, finished = 0, False
            with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
                while not finished:
                    out = client.get(f"/v1/runs/{run_id}/wait", params={"after": version, "timeout": 5}).json()
                    version, finished = out["version"], out["finished"]
                    dead = [log for p, log in zip(procs[1:], logs) if p.poll() is not None]
                    if dead and not finished:
                        raise RuntimeError(f"agent exited: {dead[0].read_text()[-400:]}")
            seconds = time.perf_counter() - t0
            n = _committed(store, run_id)
        finally:
            for p in procs[1:] + procs[:1]:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        p.kill()
            store.close()
    return {"tasks": n, "seconds": seconds, "status": "succeeded" if finished else "failed"}


def _dask_graph(graph: str, args: argparse.Namespace) -> list:
    from dask import delayed

    def noop(*deps):
        return None

    if graph == "fanout":
        return [delayed(noop, pure=False)() for _ in range(args.fanout)]
    prev = [delayed(noop, pure=False)() for _ in range(args.width)]
    out = list(prev)
    for _ in range(args.depth - 1):
        prev = [delayed(noop, pure=False)(prev[i], prev[(i + 1) % args.width]) for i in range(args.width)]
        out += prev
    return out


def measure_plain_dask(graph: str, args: argparse.Namespace) -> dict:
    import dask
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        tasks = _dask_graph(graph, args)
        t0 = time.perf_counter()
        dask.compute(*tasks)
        seconds = time.perf_counter() - t0
    return {"tasks": len(tasks), "seconds": seconds, "status": "succeeded"}


def _child(system: str, graph: str, args: argparse.Namespace) -> dict:
    """Run one measurement in a fresh interpreter, so none inherits another's caches or threads."""
    argv = [sys.executable, __file__, "--child", f"{system}:{graph}", "--fanout", str(args.fanout),
            "--width", str(args.width), "--depth", str(args.depth), "--workers", str(args.workers),
            "--batch", str(args.batch), "--agent-start", str(args.agent_start)]
    if args.store:
        argv += ["--store", args.store]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"tasks": 0, "seconds": float("nan"), "status": f"error: {proc.stderr.strip()[-300:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_one(system: str, graph: str, args: argparse.Namespace) -> dict:
    if system == "local":
        return measure_executor(graph, "local", args)
    if system == "dask":
        return measure_executor(graph, "dask", args)
    if system == "http":
        return measure_http(graph, args)
    return measure_plain_dask(graph, args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fanout", type=int, default=10_000, help="tasks of the fan-out graph")
    parser.add_argument("--width", type=int, default=50, help="tasks per layer of the layered DAG")
    parser.add_argument("--depth", type=int, default=100, help="layers of the layered DAG")
    parser.add_argument("--workers", type=int, default=2, help="agents / Dask workers")
    parser.add_argument("--batch", type=int, default=64, help="items per HTTP claim and submission")
    parser.add_argument("--agent-start", type=float, default=120.0,
                        help="longest wait (seconds) for remote agents to load the workflow and register")
    parser.add_argument("--store", default=None, help="store URL (default: SQLite in each workspace)")
    parser.add_argument("--only", default=",".join(SYSTEMS), help="comma-separated systems")
    parser.add_argument("--graphs", default="fanout,layered")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        system, graph = args.child.split(":")
        print(json.dumps(run_one(system, graph, args)))
        return 0
    systems = [s for s in args.only.split(",") if s]
    rows = []
    for graph in args.graphs.split(","):
        for system in systems:
            r = _child(system, graph, args)
            rows.append({"graph": graph, "system": system, **r,
                         "tasks_per_second": r["tasks"] / r["seconds"] if r["tasks"] else 0.0,
                         "ms_per_task": 1000 * r["seconds"] / r["tasks"] if r["tasks"] else float("nan")})
    ratios = []
    for graph in args.graphs.split(","):
        by = {r["system"]: r for r in rows if r["graph"] == graph}
        if "http" in by and "local" in by and by["local"]["tasks_per_second"]:
            ratios.append({"graph": graph, "ratio": "http / local throughput", "goal": ">= 0.25",
                           "value": by["http"]["tasks_per_second"] / by["local"]["tasks_per_second"]})
        if "dask" in by and "plain-dask" in by and by["plain-dask"]["seconds"]:
            ratios.append({"graph": graph, "ratio": "dask executor / plain dask time", "goal": "<= 2",
                           "value": by["dask"]["seconds"] / by["plain-dask"]["seconds"]})
    meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "workers": args.workers,
            "batch": args.batch, "store": "sqlite" if not args.store else args.store.split(":", 1)[0]}
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows, "ratios": ratios}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"no-op throughput, {args.workers} workers, bundles recorded by headwater "
                  f"({meta['cpus']} CPUs, {meta['store']})", title_justify="left")
    for col in ("graph", "system", "tasks", "seconds", "tasks/s", "ms/task", "status"):
        table.add_column(col, justify="right" if col not in ("graph", "system", "status") else "left")
    for r in rows:
        table.add_row(r["graph"], r["system"], str(r["tasks"]), f"{r['seconds']:.2f}",
                      f"{r['tasks_per_second']:.0f}", f"{r['ms_per_task']:.2f}", r["status"][:60])
    console.print(table)
    goals = Table(title="ratios", title_justify="left")
    for col in ("graph", "ratio", "value", "goal"):
        goals.add_column(col)
    for g in ratios:
        goals.add_row(g["graph"], g["ratio"], f"{g['value']:.2f}", g["goal"])
    console.print(goals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
