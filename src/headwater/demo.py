"""``headwater demo``: the foundation's story, end to end, on the embedded store.

Runs the simulation example twice (the second time with a changed parameter
and a reason), the data-analysis example once, and the simulation once more
with a stage made silently wrong on purpose; then lists checkpoints, diffs the
two simulation runs, verifies every bundle, reproduces one checkpoint of each
example byte for byte, and bisects the broken run to the stage at fault.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from headwater.errors import HeadwaterError
from headwater.forensics import bisect_run, diff, reproduce, verify_store
from headwater.runtime import RunOptions, open_workspace, run_workflow
from headwater.spec import load_workflow


def examples_dir() -> Path:
    """The examples/ directory of the checkout headwater runs from."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "examples"
        if (candidate / "heat_diffusion.py").exists():
            return candidate
    raise HeadwaterError(
        "the demo runs the examples/ directory of a headwater checkout; run it from a clone "
        "installed with `pip install -e '.[examples]'`"
    )


def run_demo(directory: Path, console: Console | None = None, store_url: str | None = None) -> dict:
    """Run the demo in ``directory`` (its previous workspace is replaced)."""
    say = console.print if console else (lambda *a, **k: None)
    rule = (lambda title: console.print(Rule(title))) if console else (lambda title: None)
    started = time.time()
    home = Path(directory).absolute() / ".headwater"
    if home.exists():
        shutil.rmtree(home)
    ws = open_workspace(home, store_url)
    ex = examples_dir()
    heat = load_workflow(ex / "heat_diffusion.py")
    diabetes = load_workflow(ex / "diabetes_analysis.py")
    result: dict = {"workspace": str(home), "runs": {}}

    def go(label, wf, params=None, **opts):
        t0 = time.time()
        summary = run_workflow(ws, wf, params or {}, RunOptions(workers=2, **opts))
        result["runs"][label] = {"run": summary.run_id, "status": summary.status, "seconds": round(time.time() - t0, 2)}
        say(f"  {label:<22} run {summary.run_id[:12]}  {summary.status:<9} "
            f"{len(summary.tasks)} tasks  {time.time() - t0:5.1f} s")
        if not summary.ok:
            raise HeadwaterError(f"demo run {label} failed: " + "; ".join(
                f"{t.name}: {t.error}" for t in summary.tasks if t.error))
        return summary

    rule("1. run the examples (2 local agents, one signed bundle per task)")
    a = go("heat (alpha=0.01)", heat, seed=7)
    b = go("heat (alpha=0.02)", heat, {"alpha": "0.02"}, seed=7, why="test a faster-diffusing material")
    c = go("diabetes analysis", diabetes, seed=7)

    rule("2. checkpoints of the simulation run")
    cks = ws.store.list_checkpoints(a.run_id)
    for ck in cks:
        doc = ck.doc
        claims = ", ".join(f"{cl.key}={_num(cl.value)}" for cl in ck.claims)
        heavy = ",".join((doc.get("heavy") or {}).get("triggers", []))
        say(f"  {ck.seq:>2} {ck.id[:12]} {ck.task:<18} {len(ck.bundle):>5} B  outputs: "
            f"{', '.join(o.name for o in ck.outputs):<28} {claims} {('heavy: ' + heavy) if heavy else ''}")
    sizes = sorted(len(ck.bundle) for r in (a, b, c) for ck in ws.store.list_checkpoints(r.run_id))
    result["median_bundle_bytes"] = sizes[len(sizes) // 2]
    say(f"  median bundle size over all runs: {result['median_bundle_bytes']} bytes")

    rule("3. diff the two simulation runs")
    d = diff(ws.store, a.run_id, b.run_id)
    for k, (x, y) in d["params"].items():
        say(f"  param {k}: {x} -> {y}   (why: {d['why'][1]})")
    for task, td in d["tasks"].items():
        changed = ", ".join(td["artifacts"]["changed"]) or "nothing"
        claims = "; ".join(f"{k}: {_num(v[0])} -> {_num(v[1])}" for k, v in td["claims"].items())
        say(f"  {task:<18} outputs changed: {changed}{'   ' + claims if claims else ''}")
    result["diff_params"] = d["params"]

    rule("4. verify every bundle, hash chain, signature and artifact")
    report = verify_store(ws.store, ws.key.public_hex)
    say(f"  {'[green]intact[/]' if report.ok else '[red]BROKEN[/]'}: {report.checkpoints} checkpoints, "
        f"{report.artifacts} artifacts")
    result["verify_ok"] = report.ok

    rule("5. reproduce one checkpoint of each example from its bundle")
    result["reproduce"] = {}
    for run_id, task in ((a.run_id, "solve"), (c.run_id, _last_fit(ws.store, c.run_id))):
        ck = next(x for x in ws.store.list_checkpoints(run_id) if x.task == task and x.status == "committed")
        rep = reproduce(ws.store, ck.id)
        result["reproduce"][task] = rep.identical
        say(f"  {ck.id[:12]} {task:<12} outputs {'[green]byte-identical[/]' if rep.identical else '[red]differ[/]'}"
            f" ({', '.join(rep.outputs)})")

    rule("6. a stage made silently wrong, found by bisect")
    bad = go("heat (bug in solve)", heat, {"bug": "solve"}, seed=7)
    check = getattr(heat_module(heat), "check_outputs")
    from headwater.runtime.agent import OutputsView

    bis = bisect_run(ws.store, bad.run_id, lambda ck: bool(check(OutputsView(ck.task, ck.outputs, ws.store.artifacts))))
    for chk in bis.checks:
        say(f"  check {chk['task']:<18} {'[green]good[/]' if chk['good'] else '[red]bad[/]'}")
    first = bis.first_bad["task"] if bis.first_bad else None
    say(f"  first bad checkpoint: [bold]{first}[/] after {len(bis.checks)} checks over {len(bis.chain)} checkpoints")
    result["bisect_first_bad"] = first
    result["seconds"] = round(time.time() - started, 1)
    result["ok"] = bool(report.ok and all(result["reproduce"].values()) and first == "solve")
    rule(f"done in {result['seconds']} s")
    say(f"  explore: headwater --home {home} runs   |   headwater --home {home} show {a.tasks[0].checkpoint[:12]}")
    ws.close()
    return result


def heat_module(wf):
    import sys

    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == wf.source_file:
            return module
    raise HeadwaterError(f"module for {wf.source_file} is not loaded")


def _last_fit(store, run_id: str) -> str:
    fits = [ck.task for ck in store.list_checkpoints(run_id) if ck.task.startswith("fit") and ck.status == "committed"]
    return fits[-1] if fits else store.list_checkpoints(run_id)[-1].task


def _num(v):
    return f"{v:.4g}" if isinstance(v, float) else v
