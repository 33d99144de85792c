"""The coordinator: the imperative shell around :mod:`headwater.schedule`.

One loop, one thread. Each turn it (1) asks the scheduling core for leases on
behalf of every agent with free slots and hands the work to the executor,
(2) waits for results no longer than the core's next deadline, (3) feeds each
result to the core as an event, turns successful attempts into signed
checkpoint bundles, and applies the actions the core returns (commit, squash,
requeue, fail, skip, cancel), and (4) writes everything from that turn to the
store in one transaction. The core decides; this module only does I/O and
reads the clock.

Crash safety: a checkpoint and the task state it implies are written in the
same transaction, dependents only after their inputs (batches are written in
order), so after a SIGKILL :func:`resume_run` rebuilds the core from the
committed checkpoints and runs only what is missing.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from headwater.checkpoint import bundle as B
from headwater.checkpoint.env import fingerprint, full_export, git_state
from headwater.checkpoint.profiles import analysis_part, simulation_part
from headwater.errors import RunError
from headwater.runtime.agent import Result, VerifyWork, Work
from headwater.runtime.context import InputRef, TaskOutcome
from headwater.runtime.executors import ClaimReader, Executor, InlineExecutor, LocalProcessExecutor
from headwater.runtime.workspace import Workspace
from headwater.schedule import (
    Cancel, Commit, Fail, Lease, Requeue, RunFinished, Scheduler, Skip, Squash, State, TaskDef,
)
from headwater.spec import Workflow, load_workflow
from headwater.store.records import ArtifactRecord, CheckpointRecord, EventRecord, RunRecord, TaskRecord

ProgressFn = Callable[[str, dict], None]

# Results are written in batches: at most FLUSH_INTERVAL seconds or FLUSH_BATCH
# checkpoints after they arrive, and at once when nothing else is running.
FLUSH_INTERVAL = 0.05
FLUSH_BATCH = 500


@dataclass
class RunOptions:
    """How to run: ``workers=0`` runs every task inline, in this process."""

    workers: int = 2
    seed: int = 0
    why: str | None = None
    no_cache: bool = False
    campaign: str | None = None
    speculate: int | str = 0
    lease_ttl: float = 600.0
    prefetch: int = 2
    executor: str = "local"  # "local" (processes, or inline when workers=0) | "dask"
    scheduler_address: str | None = None  # Dask scheduler; None starts a LocalCluster


@dataclass
class TaskSummary:
    name: str
    state: str
    attempt: int
    checkpoint: str | None = None
    cached: bool = False
    seconds: float | None = None
    error: str | None = None


@dataclass
class RunSummary:
    run_id: str
    workflow: str
    status: str
    tasks: list[TaskSummary]
    counters: dict[str, int]
    elapsed: float
    provenance_seconds: float = 0.0  # building, signing and storing bundles

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def to_json(self) -> dict:
        return asdict(self)


def task_defs(wf: Workflow) -> list[TaskDef]:
    """The scheduling core's view of a workflow spec."""
    return [
        TaskDef(
            name=t.name, deps=tuple(t.after), role=t.role, priority=t.priority, retries=t.retries,
            verify=t.quorum.k, reject=t.quorum.reject, verifier_role=t.verifier_role,
            branches=tuple(t.branches),
        )
        for t in wf.tasks.values()
    ]


def _outcome_from_checkpoint(ck: CheckpointRecord) -> TaskOutcome:
    doc = ck.doc
    prof = doc.get("profile") or {}
    return TaskOutcome(
        outputs=list(ck.outputs), claims=list(ck.claims),
        uses=[u for u in ck.uses if u.direction == "consumed"],
        invariants=list(prof.get("invariants", [])), numerics=dict(prof.get("numerics", {})),
        transforms=list(prof.get("transforms", [])), cohort=prof.get("cohort"),
        schemas=dict(prof.get("schemas", {})), branch=doc["manifest"].get("branch"),
    )


@dataclass
class _InFlight:
    lease: Lease
    agent: str
    inputs: dict[str, InputRef]
    parents: list[str]
    cache_key: str | None = None
    dispatched: float = 0.0


class Coordinator:
    """Drives one run to its end; see the module docstring for the loop."""

    def __init__(self, ws: Workspace, wf: Workflow, run: RunRecord, options: RunOptions,
                 progress: ProgressFn | None = None, executor: Executor | None = None) -> None:
        self.ws, self.wf, self.run, self.options = ws, wf, run, options
        self.store = ws.store
        self.progress = progress or (lambda kind, data: None)
        t0 = time.perf_counter()
        self.env = fingerprint(_project_dir(wf))
        self.git = git_state(_project_dir(wf)) or {}
        fingerprinting = time.perf_counter() - t0
        self.env_part = self.env.bundle_part()
        self.task_hash = {name: wf.task_hash(name) for name in wf.tasks}
        self.sched = Scheduler(task_defs(wf), speculate=options.speculate, lease_ttl=options.lease_ttl)
        self.roles = frozenset({t.role for t in wf.tasks.values()} | {t.verifier_role for t in wf.tasks.values()})
        self.ckpt_of: dict[str, CheckpointRecord] = {}
        self.outcome_of: dict[str, TaskOutcome] = {}
        self.inflight: dict[int, _InFlight] = {}
        self.summary: dict[str, TaskSummary] = {n: TaskSummary(n, "pending", 0) for n in wf.tasks}
        self.prev_id: str | None = None
        self.first_in_campaign = False
        self.pending: list[CheckpointRecord] = []
        self.pending_tasks: dict[str, TaskRecord] = {}
        self.pending_events: list[EventRecord] = []
        self.status_updates: list[tuple[str, str, str | None]] = []
        self._previous: dict[str, CheckpointRecord] | None = None
        self._run_spec: dict[str, str] = {}
        self._executor = executor
        self.final_status: str | None = None
        self.provenance_seconds = fingerprinting
        self._last_flush = 0.0
        needed = max((t.quorum.k for t in wf.tasks.values()), default=0)
        if needed and options.workers and options.workers < needed + 1:
            raise RunError(
                f"a task needs {needed} verifier approval(s) from agents other than its producer: "
                f"run with --workers {needed + 1} or more", run_id=run.id,
            )

    # -- setup -------------------------------------------------------------
    def _make_executor(self) -> Executor:
        claims = ClaimReader(self.store.url, str(self.ws.root))
        needed = max((t.quorum.k for t in self.wf.tasks.values()), default=0)
        if self.options.executor == "dask":
            from headwater.runtime.dask_executor import DaskExecutor

            return DaskExecutor(self.wf, self.store.artifacts.url, self.roles, max(self.options.workers, 1),
                                claims, self.options.scheduler_address, self.options.prefetch)
        if self.options.executor != "local":
            raise RunError(f"unknown executor {self.options.executor!r}: use local or dask", run_id=self.run.id)
        if self.options.workers <= 0:
            return InlineExecutor(self.wf, self.store.artifacts, self.roles, claims, n_agents=needed + 1)
        return LocalProcessExecutor(
            self.wf, self.store.artifacts.url, self.roles, self.options.workers, claims, self.options.prefetch,
        )

    def restore(self) -> None:
        """Rebuild state from the store (resume): committed work is kept,
        provisional work is squashed and run again."""
        committed: dict[str, tuple[int, str | None]] = {}
        last_attempt: dict[str, int] = {}
        stale: list[str] = []
        for ck in self.store.list_checkpoints(self.run.id):
            self.prev_id = ck.id
            last_attempt[ck.task] = max(last_attempt.get(ck.task, 0), ck.attempt)
            if ck.status == "committed":
                committed[ck.task] = (ck.attempt, ck.doc["manifest"].get("branch"))
                self.ckpt_of[ck.task] = ck
                self.summary[ck.task] = TaskSummary(ck.task, "committed", ck.attempt, ck.id, "cache" in ck.doc)
            elif ck.status in ("provisional", "verified"):
                stale.append(ck.id)
        if stale:
            self.store.set_checkpoint_status(stale, "squashed", "coordinator restarted before verification")
        self.sched.restore(committed, attempts=last_attempt)
        self._event("resumed", data={"committed": len(committed)})

    # -- the loop ----------------------------------------------------------
    def execute(self) -> RunSummary:
        started = time.time()
        self.first_in_campaign = self.prev_id is None and not self.store.campaign_has_checkpoints(self.run.campaign)
        self.store.put_env(self.env.fp, self.env.summary, self.env.packages)
        self.progress("start", {"run": self.run.id, "total": len(self.wf.tasks),
                                "done": sum(1 for s in self.summary.values() if s.state == "committed")})
        executor = self._executor or self._make_executor()
        try:
            self._loop(executor)
        except BaseException:
            self._flush()
            self.store.set_run_status(self.run.id, "interrupted", time.time())
            raise
        finally:
            executor.close()
        status = self.final_status or self.sched.status
        self._flush()
        self.store.set_run_status(self.run.id, status, time.time())
        self.progress("finish", {"status": status})
        return RunSummary(
            run_id=self.run.id, workflow=self.wf.name, status=status,
            tasks=[self.summary[n] for n in self.wf.tasks], counters=dict(self.sched.counters),
            elapsed=time.time() - started, provenance_seconds=round(self.provenance_seconds, 6),
        )

    def _loop(self, executor: Executor) -> None:
        while not self.sched.done:
            now = time.time()
            self._apply(self.sched.expire(now), now)
            self._renew(now)
            dispatched = self._claim(executor, now)
            if self.sched.done:
                break
            deadline = self.sched.next_deadline()
            if not self.inflight and not dispatched and deadline is None:
                waiting = [n for n in self.wf.tasks if self.sched.state_of(n) not in (State.COMMITTED, State.FAILED, State.SKIPPED)]
                raise RunError(f"no agent can take the remaining tasks: {', '.join(waiting)}", run_id=self.run.id)
            wait = max(deadline - now, 0.0) if deadline is not None else 0.0
            timeout = (min(0.2, wait) if wait > 0 else 0.2) if self.inflight else max(wait, 0.01)
            results, lost = executor.poll(timeout)
            now = time.time()
            for agent in lost:
                for token in [t for t, f in self.inflight.items() if f.agent == agent]:
                    del self.inflight[token]
                self._event("agent_lost", agent=agent)
                self._apply(self.sched.agent_lost(agent, now), now)
            for result in results:
                self._complete(result, now)
            if not self.inflight or len(self.pending) >= FLUSH_BATCH or now - self._last_flush >= FLUSH_INTERVAL:
                self._flush()

    def _renew(self, now: float) -> None:
        half = self.options.lease_ttl / 2
        for token, f in self.inflight.items():
            if f.lease.expires - now < half and self.sched.renew(token, now):
                f.lease = Lease(**{**asdict(f.lease), "expires": now + self.options.lease_ttl})

    def _claim(self, executor: Executor, now: float) -> int:
        count = 0
        for agent, info in list(executor.agents.items()):
            slots = executor.free_slots(agent)
            if slots <= 0:
                continue
            leases = self.sched.claim_verification(agent, info.roles, now, limit=slots)
            if len(leases) < slots:
                leases += self.sched.claim(agent, info.roles, now, limit=slots - len(leases))
            for lease in leases:
                count += self._dispatch(executor, agent, lease, now)
        return count

    # -- dispatch ----------------------------------------------------------
    def _inputs(self, task: str) -> tuple[dict[str, InputRef], list[str]]:
        inputs: dict[str, InputRef] = {}
        parents: list[str] = []
        for dep in self.wf.tasks[task].after:
            ck = self.ckpt_of.get(dep)
            if ck is None or self.sched.state_of(dep) == State.SKIPPED:
                continue
            parents.append(ck.id)
            for out in ck.outputs:
                ref = f"{dep}/{out.name}"
                inputs[ref] = InputRef(ref, out.sha256, out.media_type, out.size, out.uri)
        return inputs, sorted(parents)

    def _dispatch(self, executor: Executor, agent: str, lease: Lease, now: float) -> int:
        inputs, parents = self._inputs(lease.task)
        seed = B.derive_seed(self.run.seed, lease.task)
        if lease.kind == "verify":
            ck = self.ckpt_of[lease.task]
            outcome = self.outcome_of.get(lease.task)
            msg: Work | VerifyWork = VerifyWork(
                lease.token, self.run.id, lease.task, lease.attempt, self.run.params, seed, inputs,
                outputs=list(ck.outputs), invariants=list(outcome.invariants if outcome else []),
            )
            key = None
        else:
            key = B.cache_key(task_hash=self.task_hash[lease.task], inputs={r: i.sha256 for r, i in inputs.items()},
                              params=self.run.params, seed=seed, env_fp=self.env.fp)
            if not self.options.no_cache:
                hit = self.store.find_cached(key)
                if hit is not None and hit.workflow == self.wf.name and hit.task == lease.task:
                    self._finish_run(_InFlight(lease, agent, inputs, parents, key, now),
                                     _outcome_from_checkpoint(hit), now, cache_hit=hit.id)
                    return 1
            msg = Work(lease.token, self.run.id, lease.task, lease.attempt, self.run.params, seed, inputs)
        self.inflight[lease.token] = _InFlight(lease, agent, inputs, parents, key, now)
        if lease.kind == "run":
            self.summary[lease.task].state = "running"
            self.progress("task", {"task": lease.task, "state": "running"})
        executor.submit(agent, msg)
        return 1

    # -- results -----------------------------------------------------------
    def _complete(self, result: Result, now: float) -> None:
        flight = self.inflight.pop(result.token, None)
        if flight is None:
            self._event("stale_result", agent=result.agent, data={"token": result.token})
            return
        if result.kind == "verify":
            self._event("verdict", flight.lease.task, flight.lease.attempt, result.agent,
                        {"approve": result.approve, "reason": result.reason})
            self._apply(self.sched.verdict(result.token, now, bool(result.approve), result.reason), now)
            return
        outcome = result.outcome
        assert outcome is not None
        if outcome.ok:
            self._finish_run(flight, outcome, now)
        else:
            self._write(flight, outcome, "failed", now)
            self.summary[flight.lease.task].error = outcome.error
            self._apply(self.sched.failed(result.token, now, outcome.error or "failed"), now)

    def _finish_run(self, flight: _InFlight, outcome: TaskOutcome, now: float, cache_hit: str | None = None) -> None:
        lease = flight.lease
        actions = self.sched.finished(lease.token, now, branch=outcome.branch)
        state = self.sched.state_of(lease.task)
        if self.sched.attempt_of(lease.task) != lease.attempt or state not in (
            State.PROVISIONAL, State.VERIFIED, State.COMMITTED
        ):
            self._event("stale_result", lease.task, lease.attempt, flight.agent)
            self._apply(actions, now)
            return
        status = "committed" if state == State.COMMITTED else "provisional"
        ck = self._write(flight, outcome, status, now, cache_hit)
        self.ckpt_of[lease.task] = ck
        self.outcome_of[lease.task] = outcome
        summary = self.summary[lease.task]
        summary.attempt, summary.checkpoint, summary.cached = lease.attempt, ck.id, cache_hit is not None
        summary.seconds = round(outcome.finished - outcome.started, 4) if outcome.finished else 0.0
        summary.state = status
        self._apply(actions, now)

    def _apply(self, actions: list, now: float) -> None:
        for act in actions:
            if isinstance(act, Commit):
                ck = self.ckpt_of.get(act.task)
                if ck is not None and ck.attempt == act.attempt and ck.status != "committed":
                    self._set_status(ck, "committed", None)
                self.summary[act.task].state = "committed"
                self._event("committed", act.task, act.attempt)
                self.progress("task", {"task": act.task, "state": "committed"})
            elif isinstance(act, Squash):
                ck = self.ckpt_of.get(act.task)
                if ck is not None and ck.attempt == act.attempt:
                    self._set_status(ck, "squashed", act.reason)
                    del self.ckpt_of[act.task]
                self.summary[act.task].state = "squashed"
                self._event("squashed", act.task, act.attempt, data={"reason": act.reason})
            elif isinstance(act, Requeue):
                self.summary[act.task].state = "retrying"
                self._event("requeued", act.task, act.attempt, data={"reason": act.reason, "not_before": act.not_before})
            elif isinstance(act, Fail):
                self.summary[act.task].state = "failed"
                self.summary[act.task].error = self.summary[act.task].error or act.error
                self._event("failed", act.task, act.attempt, data={"error": act.error})
                self.progress("task", {"task": act.task, "state": "failed"})
            elif isinstance(act, Skip):
                self.summary[act.task].state = "skipped"
                self._event("skipped", act.task, data={"reason": act.reason})
                self.progress("task", {"task": act.task, "state": "skipped"})
            elif isinstance(act, Cancel):
                self.inflight.pop(act.token, None)
                self._event("cancelled", act.task, act.attempt, act.agent)
            elif isinstance(act, RunFinished):
                self.final_status = act.status
            self._task_row(getattr(act, "task", None), now)

    # -- checkpoints -------------------------------------------------------
    def _previous_checkpoint(self, task: str) -> CheckpointRecord | None:
        """The checkpoint this task's spec diff is against: the newest committed
        one of the same workflow and task in an earlier run (loaded once per run)."""
        if self._previous is None:
            self._previous = self.store.latest_checkpoints(self.wf.name, exclude_run=self.run.id)
        return self._previous.get(task)

    def _spec_of_run(self, run_id: str) -> str:
        if run_id not in self._run_spec:
            self._run_spec[run_id] = self.store.get_run(run_id).spec_hash
        return self._run_spec[run_id]

    def _write(self, flight: _InFlight, outcome: TaskOutcome, status: str, now: float,
               cache_hit: str | None = None) -> CheckpointRecord:
        t0 = time.perf_counter()
        try:
            return self._write_bundle(flight, outcome, status, now, cache_hit)
        finally:
            self.provenance_seconds += time.perf_counter() - t0

    def _write_bundle(self, flight: _InFlight, outcome: TaskOutcome, status: str, now: float,
                      cache_hit: str | None) -> CheckpointRecord:
        lease, spec = flight.lease, self.wf.tasks[flight.lease.task]
        seed = B.derive_seed(self.run.seed, lease.task)
        manifest: dict[str, Any] = {
            "inputs": {ref: i.sha256 for ref, i in flight.inputs.items()},
            "outputs": {o.name: o.sha256 for o in outcome.outputs},
            "code": {"task_hash": self.task_hash[lease.task], **{k: v for k, v in self.git.items() if v is not None}},
            "seed": seed,
            "params": self.run.params,
            "versions": {f"{u.kind}:{u.name}": u.version for u in outcome.uses},
            "upstream": flight.parents,
        }
        if outcome.branch is not None:
            manifest["branch"] = outcome.branch
        if lease.speculative:
            manifest["speculative"] = [list(x) for x in lease.speculative]
        prev = self._previous_checkpoint(lease.task)
        spec_diff = B.make_spec_diff(
            against=prev.id if prev else None, prev_manifest=prev.doc["manifest"] if prev else None,
            manifest=manifest, prev_env_fp=prev.env_fp if prev else None, env_fp=self.env.fp,
            spec_changed=bool(prev) and self._spec_of_run(prev.run_id) != self.run.spec_hash, why=self.run.why,
        )
        hw_changed = bool(prev) and prev.doc.get("env", {}).get("hw") != self.env.hardware_class
        triggers = B.heavy_triggers(
            first_in_campaign=self.first_in_campaign, env_changed=bool(prev) and prev.env_fp != self.env.fp,
            hardware_changed=hw_changed, failed=not outcome.ok and not outcome.invariant_violated,
            invariant_violated=outcome.invariant_violated,
        )
        self.first_in_campaign = False
        heavy = None
        if triggers and cache_hit is None:
            heavy = {"triggers": triggers, "artifacts": {
                "stdout": self.store.artifacts.put_bytes(outcome.stdout.encode(), "text/plain", "stdout").sha256,
                "stderr": self.store.artifacts.put_bytes(outcome.stderr.encode(), "text/plain", "stderr").sha256,
                "env_export": self.store.artifacts.put_bytes(full_export(self.env).encode(), "text/plain", "env_export").sha256,
            }}
        profile = None
        if self.wf.profile == "simulation":
            profile = simulation_part(outcome.numerics, outcome.invariants)
        elif self.wf.profile == "analysis":
            profile = analysis_part(outcome.transforms, outcome.cohort, outcome.schemas)
        intent = {"goal": spec.intent.goal, "assumptions": list(spec.intent.assumptions),
                  "concludes": spec.intent.concludes,
                  "claims": [asdict(c) for c in outcome.claims]}
        bundle = B.build_bundle(
            run=self.run.id, workflow=self.wf.name, task=lease.task, attempt=lease.attempt, status=status,
            parents=flight.parents, prev=self.prev_id, manifest=manifest, spec_diff=spec_diff,
            env=self.env_part, intent=intent,
            artifacts=[{"name": o.name, "uri": o.uri, "sha256": o.sha256, "size": o.size, "media_type": o.media_type}
                       for o in outcome.outputs],
            profile=profile, heavy=heavy, started=outcome.started or now, finished=outcome.finished or now,
            cache_hit=cache_hit, error=outcome.error,
        )
        data = B.bundle_bytes(bundle)
        ck = CheckpointRecord(
            id=B.bundle_id(data), run_id=self.run.id, workflow=self.wf.name, task=lease.task,
            attempt=lease.attempt, status=status, bundle=data, signature=self.ws.key.sign(data),
            key_id=self.ws.key.key_id, parents=flight.parents, prev=self.prev_id,
            cache_key=flight.cache_key if status != "failed" else None, env_fp=self.env.fp, created_at=now,
            inputs=[ArtifactRecord(i.sha256, i.size, i.media_type, i.uri, name=ref) for ref, i in flight.inputs.items()],
            outputs=list(outcome.outputs), claims=list(outcome.claims), uses=list(outcome.uses),
        )
        self.prev_id = ck.id
        self.pending.append(ck)
        self._event("checkpoint", lease.task, lease.attempt, flight.agent, {"id": ck.id, "status": status})
        return ck

    def _set_status(self, ck: CheckpointRecord, status: str, reason: str | None) -> None:
        ck.status = status
        ck.status_reason = reason
        if not any(p is ck for p in self.pending):
            self.status_updates.append((ck.id, status, reason))

    def _task_row(self, task: str | None, now: float) -> None:
        if task is None or task not in self.wf.tasks:
            return
        ck = self.ckpt_of.get(task)
        self.pending_tasks[task] = TaskRecord(
            run_id=self.run.id, task=task, attempt=self.sched.attempt_of(task),
            state=self.sched.state_of(task).name.lower(), updated_at=now,
            error=self.summary[task].error, checkpoint_id=ck.id if ck else None,
        )

    def _event(self, kind: str, task: str | None = None, attempt: int | None = None,
               agent: str | None = None, data: dict | None = None) -> None:
        self.pending_events.append(EventRecord(ts=time.time(), kind=kind, run_id=self.run.id, task=task,
                                               attempt=attempt, agent=agent, data=data or {}))

    def _flush(self) -> None:
        t0 = time.perf_counter()
        try:
            self._flush_pending()
        finally:
            self.provenance_seconds += time.perf_counter() - t0

    def _flush_pending(self) -> None:
        self._last_flush = time.time()
        if self.pending or self.pending_tasks or self.pending_events:
            self.store.add_checkpoints(self.pending, list(self.pending_tasks.values()), self.pending_events)
            self.pending, self.pending_tasks, self.pending_events = [], {}, []
        if self.status_updates:
            by: dict[tuple[str, str | None], list[str]] = {}
            for cid, status, reason in self.status_updates:
                by.setdefault((status, reason), []).append(cid)
            for (status, reason), ids in by.items():
                self.store.set_checkpoint_status(ids, status, reason)
            self.status_updates = []


def _project_dir(wf: Workflow) -> str | None:
    from pathlib import Path

    return str(Path(wf.source_file).parent) if wf.source_file else None


def new_run_id() -> str:
    return secrets.token_hex(8)


def run_workflow(ws: Workspace, wf: Workflow, params: dict[str, Any] | None = None,
                 options: RunOptions | None = None, progress: ProgressFn | None = None,
                 executor: Executor | None = None) -> RunSummary:
    """Validate, record and run a workflow to its end; return a summary."""
    options = options or RunOptions()
    wf.validate(file=wf.source_file)
    resolved = wf.resolve_params(params or {})
    spec_hash = wf.spec_hash()
    ws.store.put_spec(wf.name, spec_hash, wf.describe())
    run = RunRecord(
        id=new_run_id(), workflow=wf.name, spec_hash=spec_hash, campaign=options.campaign or wf.name,
        params=resolved, seed=options.seed, status="running", why=options.why, source=wf.source_file,
        created_at=time.time(),
        options={"workers": options.workers, "no_cache": options.no_cache, "speculate": options.speculate,
                 "prefetch": options.prefetch},
        tags=list(wf.tags),
    )
    ws.store.create_run(run)
    coordinator = Coordinator(ws, wf, run, options, progress, executor)
    return coordinator.execute()


def resume_run(ws: Workspace, run_id: str, progress: ProgressFn | None = None,
               workers: int | None = None, executor: Executor | None = None) -> RunSummary:
    """Continue a run whose coordinator died; committed tasks are not run again."""
    run = ws.store.get_run(run_id)
    if run.status == "succeeded":
        raise RunError(f"run {run.id} already succeeded; nothing to resume", run_id=run.id)
    if not run.source:
        raise RunError(f"run {run.id} records no workflow file to resume from", run_id=run.id)
    wf = load_workflow(run.source)
    if wf.spec_hash() != run.spec_hash:
        raise RunError(
            f"workflow {run.source} changed since run {run.id} started (spec {wf.spec_hash()[:12]} != "
            f"{run.spec_hash[:12]}); start a new run with `headwater run`", run_id=run.id,
        )
    opts = run.options
    options = RunOptions(workers=workers if workers is not None else opts.get("workers", 2), seed=run.seed,
                         why=run.why, no_cache=opts.get("no_cache", False), campaign=run.campaign,
                         speculate=opts.get("speculate", 0), prefetch=opts.get("prefetch", 2))
    ws.store.set_run_status(run.id, "running")
    coordinator = Coordinator(ws, wf, run, options, progress, executor)
    coordinator.restore()
    return coordinator.execute()
