"""``headwater rerun --affected-by ASSET[@VERSION]``: recompute exactly what an asset touched.

After a bad shared asset is fixed, every dependent run has some checkpoints
built on it (directly, or through inputs and claims) and others that are
not. :func:`rerun_affected` takes the blast radius of the selected versions
and, for each dependent run, in the order the radius reached them (so a run
that publishes a claim is recomputed before the runs that consume it):

1. squashes the run's committed checkpoints of the affected tasks and of
   every task downstream of them in the spec (the first tainted checkpoint
   on), with the reason, and makes sure no cache entry in the radius is
   reused;
2. resumes the run in place: the coordinator keeps every committed
   checkpoint that was not squashed and runs only the squashed tasks again,
   as new attempts, under current oversight (so the fixed version is used);
3. compares each recomputed task's new checkpoint with the old one: which
   outputs changed and how each claim's value moved.

Runs that oversight stopped because they would have used the selected
versions (paused, ``interrupted``) are resumed too, so the flow reopens.
Nothing else is run. Every rerun goes to the audit log.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from headwater.errors import HeadwaterError
from headwater.oversight.refs import AssetRef, parse_ref
from headwater.oversight.status import AuditRecord, OversightError
from headwater.runtime.coordinator import ProgressFn, resume_run
from headwater.runtime.fleet import _actor
from headwater.runtime.workspace import Workspace
from headwater.spec import load_workflow
from headwater.store.records import CheckpointRecord


@dataclass
class TaskChange:
    """One recomputed task: its old and new checkpoints and what moved."""

    task: str
    old: str | None
    new: str | None
    outputs_changed: list[str] = field(default_factory=list)
    claims: dict[str, list[Any]] = field(default_factory=dict)
    cached: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.outputs_changed or self.claims)


@dataclass
class RunRerun:
    run_id: str
    workflow: str
    why: str
    first_tainted: str | None
    recomputed: list[str]
    kept: list[str]
    status: str = "planned"
    changes: list[TaskChange] = field(default_factory=list)
    error: str | None = None


@dataclass
class RerunReport:
    selector: str
    seeds: list[str]
    runs: list[RunRerun] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    cache_invalidated: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def rerun_affected(ws: Workspace, ref: AssetRef | str, *, workers: int = 0,
                   progress: ProgressFn | None = None, dry_run: bool = False) -> RerunReport:
    """Re-run exactly the checkpoints built on ``ref``; see the module docstring."""
    started = time.time()
    store = ws.store
    if isinstance(ref, str):
        try:
            ref = parse_ref(ref)
        except ValueError as exc:
            raise OversightError(str(exc), subject=ref) from None
    radius = store.blast_radius(ref)
    report = RerunReport(str(ref), list(radius.seeds))
    seeds = set(radius.seeds)
    by_run: dict[str, list] = {}
    for hit in radius.committed():
        by_run.setdefault(hit.run_id or "", []).append(hit)
    runs = {r.id: r for r in store.list_runs(limit=1_000_000)}
    order = sorted(by_run, key=lambda r: (min(h.depth for h in by_run[r]),
                                          runs[r].created_at if r in runs else 0.0, r))
    paused = _paused_runs(ws, seeds, runs)
    order += [r for r in paused if r not in by_run]
    if not dry_run and radius.checkpoints:
        report.cache_invalidated = store.invalidate_cache(list(radius.checkpoints), f"rerun --affected-by {ref}")
    for run_id in order:
        run = runs.get(run_id) or store.get_run(run_id)
        why = "affected" if run_id in by_run else "paused"
        if run.status == "running":
            report.skipped.append({"run": run_id, "workflow": run.workflow, "reason": "still running"})
            continue
        if not run.source:
            report.skipped.append({"run": run_id, "workflow": run.workflow, "reason": "records no workflow file"})
            continue
        try:
            wf = load_workflow(run.source, run.workflow)
        except HeadwaterError as exc:
            report.skipped.append({"run": run_id, "workflow": run.workflow, "reason": str(exc)})
            continue
        if wf.spec_hash() != run.spec_hash:
            report.skipped.append({"run": run_id, "workflow": run.workflow,
                                   "reason": f"{run.source} changed since the run; start a new run instead"})
            continue
        committed = {ck.task: ck for ck in store.list_checkpoints(run_id, status="committed")}
        hits = by_run.get(run_id, [])
        affected = {h.task for h in hits if h.task in committed and committed[h.task].id == h.id}
        redo = set(affected)
        for task in affected:
            redo |= wf.downstream(task)
        squash = [committed[t] for t in wf.topo_order() if t in redo and t in committed]
        first = min(hits, key=lambda h: h.seq or 0).task if hits else None
        if why == "affected" and not squash:
            continue
        item = RunRerun(run_id, run.workflow, why, first, [t for t in wf.topo_order() if t in redo or
                                                            (why == "paused" and t not in committed)],
                        [t for t in wf.topo_order() if t in committed and t not in redo])
        report.runs.append(item)
        if dry_run:
            continue
        reason = f"rerun --affected-by {ref}"
        if squash:
            store.set_checkpoint_status([c.id for c in squash], "squashed", reason)
        store.append_audit([AuditRecord(
            ts=time.time(), actor=_actor("user"), action="rerun", subject=str(ref), reason=reason, run_id=run_id,
            data={"why": why, "recompute": item.recomputed, "keep": item.kept})])
        if run.status == "succeeded":
            store.set_run_status(run_id, "interrupted", run.finished_at)
        try:
            summary = resume_run(ws, run_id, progress, workers=workers)
        except HeadwaterError as exc:
            item.status, item.error = "error", str(exc)
            continue
        item.status = summary.status
        after = {ck.task: ck for ck in store.list_checkpoints(run_id, status="committed")}
        old = {c.task: c for c in squash}
        item.changes = [_change(t, old.get(t), after.get(t)) for t in item.recomputed]
    report.seconds = round(time.time() - started, 3)
    return report


def _paused_runs(ws: Workspace, seeds: set[str], runs: dict) -> list[str]:
    """Interrupted runs that oversight held because of one of ``seeds``."""
    out: list[str] = []
    for rec in ws.store.audit_log(actor="runtime"):
        if rec.action != "hold" or rec.run_id is None or rec.run_id in out:
            continue
        exposures = set(rec.data.get("exposures", [])) | ({rec.cause} if rec.cause else set())
        if exposures & seeds and getattr(runs.get(rec.run_id), "status", None) == "interrupted":
            out.append(rec.run_id)
    return out


def _change(task: str, old: CheckpointRecord | None, new: CheckpointRecord | None) -> TaskChange:
    change = TaskChange(task, old.id if old else None, new.id if new else None,
                        cached=bool(new and "cache" in new.doc))
    if new is None:
        return change
    before = {o.name: o.sha256 for o in old.outputs} if old else {}
    after = {o.name: o.sha256 for o in new.outputs}
    change.outputs_changed = sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n))
    was = {c.key: c.value for c in old.claims} if old else {}
    now = {c.key: c.value for c in new.claims}
    change.claims = {k: [was.get(k), now.get(k)] for k in sorted(was.keys() | now.keys()) if was.get(k) != now.get(k)}
    return change
