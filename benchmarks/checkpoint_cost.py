"""What provenance costs: bundle size, time per checkpoint, share of run time.

Runs the two examples and 1,000 no-op tasks with local agent processes on the
embedded SQLite store (fresh workspace in a temporary directory, caching off)
and prints one table. "provenance" is the coordinator's time fingerprinting
the environment, building, signing and durably storing bundles (and heavy
captures when a trigger fires): signing and writing run beside the
coordinator (a store writer thread, or process for runs of 200 tasks and
more) and count where the coordinator hands work over or waits for it to be
durable, at the latest when the run ends (that last wait for as long as it
outlasts stopping the agents, which happens beside it: until they have
stopped the run would be waiting anyway). Each workflow runs twice: "cold"
is the first run in a fresh process and campaign (first-use costs: SQL
statement compilation, the first-in-campaign heavy capture, reading which
distributions provide which modules), "warm" the second. Run it on a quiet
machine: on a shared one, compare two trees side by side instead
(``PYTHONPATH=<other tree>/src``).

    python benchmarks/checkpoint_cost.py [--noop 1000] [--workers 2] [--json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from headwater.runtime import RunOptions, open_workspace, run_workflow
from headwater.spec import load_workflow

ROOT = Path(__file__).resolve().parents[1]


def noop_source(n: int) -> str:
    return (
        "from headwater import Workflow\n"
        "wf = Workflow('noop')\n"
        "def noop(ctx):\n    pass\n"
        f"for i in range({n}):\n    wf.task(noop, name=f't{{i}}')\n"
    )


def measure(ws, wf, workers: int) -> dict:
    summary = run_workflow(ws, wf, {}, RunOptions(workers=workers, seed=1, no_cache=True))
    if not summary.ok:
        raise SystemExit(f"{wf.name} failed: {[t.error for t in summary.tasks if t.error]}")
    cks = ws.store.list_checkpoints(summary.run_id)
    raw = [len(c.bundle) for c in cks]
    gz = [len(gzip.compress(c.bundle)) for c in cks]
    return {
        "workflow": wf.name,
        "checkpoints": len(cks),
        "median_bytes": int(statistics.median(raw)),
        "median_gzip_bytes": int(statistics.median(gz)),
        "ms_per_checkpoint": 1000 * summary.provenance_seconds / len(cks),
        "run_seconds": summary.elapsed,
        "provenance_share": summary.provenance_seconds / summary.elapsed,
        "tasks_per_second": len(cks) / summary.elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noop", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hw-bench-") as tmp:
        ws = open_workspace(Path(tmp) / ".headwater")
        noop_file = Path(tmp) / "noop.py"
        noop_file.write_text(noop_source(args.noop))
        for wf in (load_workflow(ROOT / "examples" / "heat_diffusion.py"),
                   load_workflow(ROOT / "examples" / "diabetes_analysis.py"),
                   load_workflow(noop_file)):
            cold = measure(ws, wf, args.workers)
            warm = measure(ws, wf, args.workers)
            rows.append({**warm, "cold_provenance_share": cold["provenance_share"],
                         "cold_ms_per_checkpoint": cold["ms_per_checkpoint"]})
        ws.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"checkpoint cost · {platform.processor() or platform.machine()} · "
                        f"{args.workers} agents · Python {sys.version.split()[0]}")
    for col in ("workflow", "checkpoints", "median bundle B", "gzip B", "ms / ckpt warm", "ms / ckpt cold",
                "run s warm", "provenance warm", "provenance cold", "tasks/s warm"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["workflow"], str(r["checkpoints"]), str(r["median_bytes"]), str(r["median_gzip_bytes"]),
                      f"{r['ms_per_checkpoint']:.2f}", f"{r['cold_ms_per_checkpoint']:.2f}", f"{r['run_seconds']:.2f}",
                      f"{100 * r['provenance_share']:.1f}%", f"{100 * r['cold_provenance_share']:.1f}%",
                      f"{r['tasks_per_second']:.0f}")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
