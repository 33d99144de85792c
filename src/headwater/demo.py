"""``headwater demo``: the foundation's story, end to end, on the embedded store.

Runs the simulation example twice (the second time with a changed parameter
and a reason), the data-analysis example once, and the simulation once more
with a stage made silently wrong on purpose; then lists checkpoints, diffs the
two simulation runs, verifies every bundle, reproduces one checkpoint of each
example byte for byte, and bisects the broken run to the stage at fault.

Then the fleet (:func:`fleet_story`, ``examples/fleet/``): several workflows
share a claim (``g``) and a library (``lib:integrate``); a silent error is
planted in the shared claim; the inconsistency monitor points at it and the
breaker trips; claims built on it are tainted two hops out; the blast radius
is shown; a policy rolls out from shadow to enforced and dependents are
rerouted, paused or sandboxed while unaffected workflows run on; the fix
passes a canary, and ``rerun --affected-by`` recomputes just what was
affected.
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
    fleet_ok = fleet_story(ws, ex / "fleet", console, result)
    result["seconds"] = round(time.time() - started, 1)
    result["ok"] = bool(report.ok and all(result["reproduce"].values()) and first == "solve" and fleet_ok)
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


def fleet_story(ws, fleet_dir: Path, console: Console | None, result: dict, workers: int = 2) -> bool:
    """Sections 7-14 of the demo: oversight of a fleet sharing a claim and a library.

    Returns whether every step did what the story says; ``workers=0`` runs
    the tasks inline (same decisions, no agent processes)."""
    from headwater.commands.oversight import render_findings, render_radius, render_reports
    from headwater.runtime.fleet import Fleet, load_policies
    from headwater.runtime.rerun import rerun_affected

    say = console.print if console else (lambda *a, **k: None)
    rule = (lambda title: console.print(Rule(title))) if console else (lambda title: None)
    fleet = Fleet(ws.store)
    out: dict = {}
    result["fleet"] = out
    towers = ("tower-drop", "tower-pendulum", "tower-shadow", "tower-laser", "tower-survey")
    wfs = {n: load_workflow(fleet_dir / "towers.py", n) for n in towers + ("tower-drop-canary",)}
    wfs["gravimetry"] = load_workflow(fleet_dir / "gravimetry.py")
    wfs["monument"] = load_workflow(fleet_dir / "monument.py")

    def go(name, params=None, seed=1, note=""):
        summary = run_workflow(ws, wfs[name], params or {}, RunOptions(workers=workers, seed=seed))
        claims = [f"{c.key}={_num(c.value)}" for ck in ws.store.list_checkpoints(summary.run_id, status="committed")
                  for c in ck.claims]
        held = [t.name for t in summary.tasks if t.state == "paused"]
        word = {"succeeded": "ok", "interrupted": "paused"}.get(summary.status, summary.status)
        colour = {"ok": "green", "paused": "yellow"}.get(word, "red")
        what = ", ".join(claims) or ("held: " + ", ".join(held) if held else "")
        say(f"  {name:<17} {summary.run_id[:8]} [{colour}]{word:<6}[/] {what:<24} [dim]{note}[/]")
        return summary

    rule("7. a fleet: five ways to measure one tower; two use the shared claim g and one library")
    go("gravimetry")
    for name in towers:
        go(name, seed=2)
    go("monument", seed=3)
    clean = fleet.run_monitors(apply=False)
    say(f"  monitors: {len(clean.findings.inconsistencies)} inconsistencies")

    rule("8. a silent error: gravimetry re-run with a transcription error in the pendulum length")
    bad_run = go("gravimetry", {"typo": "true"}, note="every check inside passes")
    bad = f"claim:g@{ws.store.list_checkpoints(bad_run.run_id, status='committed')[-1].id[:12]}"
    out["bad_version"] = bad
    for name in ("tower-drop", "tower-pendulum"):
        go(name, seed=2)
    go("monument", seed=3, note="no policy yet: runs on a tainted height")

    rule("9. the coordinator's inconsistency monitor pointed at the shared claim; the breaker tripped")
    report = fleet.run_monitors(apply=False)
    if console:
        render_findings(console, report)
    top = report.findings.inconsistencies[0].suspects[0].asset if report.findings.inconsistencies else None
    out["top_suspect"] = top
    for r in ws.store.audit_log(subject=bad):
        say(f"  {r.actor:<22} {r.action:<8} {r.reason[:58]}")
    status = ws.store.version_status(bad)
    out["status_after_monitor"] = status.label if status else "trusted"
    radius = fleet.blast_radius(bad)
    tainted = {k: v for k, v in ws.store.statuses_of(list(radius.claims)).items() if v is not None}
    hops = max((sum(1 for p in radius.claims[k].path[1:] if p.startswith("claim:")) for k in tainted), default=0)
    out["tainted"] = len(tainted)
    say(f"  {len(tainted)} claims built on it are suspect (up to {hops} claim hops away); "
        f"their cache entries are void")

    rule(f"10. blast radius of {bad}")
    out["radius"] = radius.counts()
    if console:
        render_radius(console, radius, paths=3)

    rule("11. a policy rolls out: shadow (recorded only), then enforced")
    policies = load_policies(fleet_dir / "policy.yaml")
    for p in policies:
        stored = fleet.apply_policy(p, mode="shadow")
        say(f"  policy {stored.name} v{stored.version}: shadow")
    shadow_run = go("tower-pendulum", seed=4, note="shadow: would have paused")
    out["shadow_ran"] = shadow_run.status == "succeeded"
    for p in policies:
        stored = fleet.apply_policy(p, mode="enforced")
        say(f"  policy {stored.name} v{stored.version}: enforced")
    mon = go("monument", seed=5, note="uses a tainted claim: sandboxed")
    drop = go("tower-drop", seed=5, note="production: rerouted to the last good g")
    paused = go("tower-pendulum", seed=5, note="exploratory: paused")
    free = go("tower-shadow", seed=5, note="does not use g: runs as usual")
    out["sandboxed"] = bool(ws.store.marks([ck.id for ck in ws.store.list_checkpoints(mon.run_id)]))
    used = [u.version for ck in ws.store.list_checkpoints(drop.run_id) for u in ck.uses if u.kind == "claim"]
    out["rerouted_to"] = used[0] if used else None
    out["paused_run"] = paused.status
    out["unaffected_ran"] = free.status == "succeeded"
    say("  audit log (automated actions name their policy and version):")
    for r in ws.store.audit_log(limit=80):
        if r.actor.startswith("policy:") and r.mode in ("enforced", "shadow") and not r.action.startswith("alert") \
                or r.action in ("hold", "stop"):
            who = f"{r.policy} v{r.policy_version} {r.mode}" if r.policy else r.actor
            say(f"    {who:<28} {r.action:<40} {(r.run_id or '')[:8]}/{r.task or '-'}")

    rule("12. the fix: a new g is gated behind a canary, passes, and reopens the flow")
    fixed = go("gravimetry", seed=1)
    new = f"claim:g@{ws.store.list_checkpoints(fixed.run_id, status='committed')[-1].id[:12]}"
    s_new = ws.store.version_status(new)
    say(f"  {new}: {s_new.label if s_new else 'trusted'} (the breaker on g is open: canary first)")
    go("tower-drop-canary", seed=6, note="tagged canary: runs on the candidate")
    canaries = ws.store.canaries(subject=new)
    out["canary"] = canaries[-1].status if canaries else None
    for rec in ws.store.version_records("claim", "g"):
        say(f"  {rec.ref}: {rec.status.label:<9} {rec.reason or ''}")

    rule(f"13. rerun --affected-by {bad}: only what was built on it")
    rr = rerun_affected(ws, bad, workers=workers)
    out["rerun"] = [{"run": r.run_id, "workflow": r.workflow, "why": r.why, "recomputed": r.recomputed,
                     "kept": r.kept, "status": r.status} for r in rr.runs]
    say(f"  {len(rr.runs)} dependent runs; {rr.cache_invalidated} cache entries voided; nothing else ran")
    for r in rr.runs:
        moved = "; ".join(f"{k} {'(new)' if a is None else _num(a)} -> {_num(b)}"
                          for c in r.changes for k, (a, b) in c.claims.items())
        say(f"  {r.workflow:<15} {r.run_id[:8]} {r.why:<8} redo {', '.join(r.recomputed):<9} "
            f"keep {', '.join(r.kept) or '-':<8} {moved}")
    after = fleet.run_monitors(apply=False)
    out["inconsistencies_after"] = len(after.findings.inconsistencies)
    say(f"  monitors after the rerun: {len(after.findings.inconsistencies)} inconsistencies")

    rule("14. risks oversight adds: what the fleet leans on, and what no monitor watches")
    if console:
        render_reports(console, fleet.reports())
    return bool(
        top == bad and out["status_after_monitor"] == "degraded" and hops >= 2 and out["shadow_ran"]
        and out["sandboxed"] and out["rerouted_to"] and out["rerouted_to"] != bad.rpartition("@")[2]
        and paused.status == "interrupted" and out["unaffected_ran"] and out["canary"] == "passed"
        and rr.runs and all(r.status == "succeeded" for r in rr.runs) and out["inconsistencies_after"] == 0
    )
