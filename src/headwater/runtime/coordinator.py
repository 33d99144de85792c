"""The coordinator: the imperative shell around :mod:`headwater.schedule`.

One loop, one thread, plus a store writer process. Each turn it

1. asks the scheduling core for leases on behalf of every agent with free
   slots (verification first, then runs, best first), looks up the cache
   for all new run leases in one query, and hands each agent its messages in
   one batch; an agent with free slots and nothing to claim steals queued,
   not yet started work from the busiest agent (of its own compute pool,
   when the run places work by pool: agents then claim only tasks their
   pool may run, see :class:`RunOptions`); on chains of short tasks a
   run message carries the next tasks of the chain, which the agent runs
   straight after it and which are leased to it, result in hand, once the
   task before them is in (no round trip per task);
2. lets agents whose recheck policy says so look at the scoreboard, and
   (with ``backup_stragglers``) gives work running far longer than expected
   a backup copy on another agent;
3. waits for results no longer than the next lease expiry, retry or recheck;
4. feeds each result to the core as an event, turns successful attempts into
   signed checkpoint bundles (:mod:`headwater.runtime.recorder`) and applies
   the actions the core returns (commit, squash, requeue, fail, skip,
   cancel);
5. hands the turn's checkpoints, task states and events to the store writer
   in one batch, at least every :data:`FLUSH_INTERVAL` seconds or
   :data:`FLUSH_BATCH` checkpoints, and at once when nothing runs or the
   last task is done.

When the work is done, the agents are stopped in a helper thread while the
coordinator waits for the last batch to be durable, marks the run finished
and runs the run-end monitors (:meth:`DispatchGuard.finish`).

The core decides; this module only does I/O and reads the clock.

Speculation. A lease built on provisional inputs says so (``speculative``)
and its bundle records them (``manifest.speculative``). Provisional
checkpoints become ``committed`` or ``squashed`` (with the reason) in the
store as the core's actions say. An agent that built on provisional results
learns what became of them either by notification (``recheck="notify"``,
the default: the coordinator tells it the moment the core commits or
flushes them) or by looking at the scoreboard when its recheck policy
(:mod:`headwater.schedule.recheck`: eager, backoff, adaptive) says so; a
flush of its work then reaches it only when it looks, so lazy rechecking
costs wasted work, and every look is counted (``scoreboard_reads``).

Crash safety: a checkpoint and the task state it implies are written in the
same transaction, dependents only after their inputs (batches are written in
order), and every batch is durable before the run is marked finished. After
a SIGKILL at most the batches not yet written are lost, and
:func:`resume_run` rebuilds the core from the committed checkpoints and runs
only what is missing.
"""

from __future__ import annotations

import gc
import math
import os
import secrets
import statistics
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from headwater.checkpoint import bundle as B
from headwater.checkpoint.canonical import NotJSON, hash_obj, sha256_hex, to_jsonable
from headwater.checkpoint.env import fingerprint, full_export, git_state
from headwater.checkpoint.profiles import analysis_part, simulation_part
from headwater.errors import RunError
from headwater.runtime.agent import Result, VerifyWork, Work
from headwater.runtime.context import InputRef, TaskOutcome
from headwater.runtime.executors import Executor, InlineExecutor, LocalProcessExecutor
from headwater.runtime.guard import DispatchGuard
from headwater.runtime.logs import RunLog, log_path
from headwater.runtime.rechecks import MODES as RECHECK
from headwater.runtime.rechecks import Rechecks, RunStats
from headwater.runtime.recorder import StoreWriter, assemble_bundle
from headwater.runtime.workspace import Workspace
from headwater.schedule import (
    Cancel, Commit, Fail, Lease, Requeue, RunFinished, Scheduler, Skip, Squash, State, TaskDef,
)
from headwater.spec import Workflow, load_workflow
from headwater.store.records import ArtifactRecord, CheckpointRecord, EventRecord, RunRecord, TaskRecord

ProgressFn = Callable[[str, dict], None]

WRITER_PROCESS_MIN = 200  # tasks in a run before signing and writing move to a child process
FLUSH_INTERVAL = 0.05
"""Results reach the store writer at most this many seconds after they arrive ..."""
FLUSH_BATCH = 500
"""... or in batches of this many checkpoints, and at once when nothing runs."""
LOG_ONLY = frozenset({"checkpoint", "dispatched"})
"""Events that go to the structured log only: the store has them as rows already."""
COUNTERS_EVERY = 1.0
"""Seconds between the counters snapshots written to the event log."""
STRAGGLER_MIN_SECONDS = 0.5
"""Work is never a straggler before it has run this long."""
FOLLOW_BELOW = 0.002
"""Chains run back to back in one agent when the median task takes less than this (s) ..."""
FOLLOW_MAX = 32
"""... at most this many tasks ahead ..."""
FOLLOW_BUDGET = 0.02
"""... and for at most this many seconds after the task they follow started."""
GC_YOUNG = 50_000
"""Allocations between young-generation collections while a run is on (Python's default is 700)."""


@dataclass
class RunOptions:
    """How to run: ``workers=0`` runs every task inline, in this process.

    ``roles`` gives each local agent its roles (a list of role lists, used in
    turn for agent 1, 2, ...; default: every agent takes every role).
    ``predict`` is the core's branch prediction (``"provisional"`` or
    ``"history"``: past runs' committed branch choices), ``recheck`` how
    agents that ran ahead learn about their inputs (see :data:`RECHECK`).
    ``backup_stragglers`` gives work that runs ``straggler_factor`` times
    longer than expected a backup copy on another agent; the first result
    wins. ``log_json`` also writes the structured log to standard error.

    ``pools`` places work by compute pool: pool name -> number of local
    agents in it (agents 1, 2, ... in that order; the run then has their sum
    of agents, and ``workers`` only says whether they run inline (0) or as
    processes). A task that names pools runs only on an agent of the first
    of them that is healthy and has agents of its role; a task that names
    none, on an agent of any healthy pool; work stealing and straggler
    backups stay within the pool. Without ``pools`` every agent takes every
    task, as pool ``local``.
    """

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
    roles: list[list[str]] | None = None
    predict: str = "provisional"
    recheck: str = "notify"
    backup_stragglers: bool = False
    straggler_factor: float = 3.0
    log_json: bool = False
    log_file: bool = True
    max_refutations: int = 3
    hold: float = 0.0  # seconds to wait for work paused by oversight before stopping as interrupted
    pools: dict[str, int] | None = None


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
    latency: dict[str, float] = field(default_factory=dict)  # recheck and verification latency

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def to_json(self) -> dict:
        return asdict(self)


def task_defs(wf: Workflow, expected: dict[str, float] | None = None) -> list[TaskDef]:
    """The scheduling core's view of a workflow spec; ``expected`` durations from history."""
    expected = expected or {}
    return [TaskDef.from_spec(t, expected.get(t.name, 1.0)) for t in wf.tasks.values()]


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


@dataclass(eq=False)
class _InFlight:
    lease: Lease
    agent: str
    inputs: dict[str, InputRef]
    parents: list[str]
    cache_key: str | None = None
    dispatched: float = 0.0
    msg: Work | VerifyWork | None = None
    backup: str | None = None




class Coordinator:
    """Drives one run to its end; see the module docstring for the loop."""

    def __init__(self, ws: Workspace, wf: Workflow, run: RunRecord, options: RunOptions,
                 progress: ProgressFn | None = None, executor: Executor | None = None,
                 description: dict | None = None) -> None:
        self.ws, self.wf, self.run, self.options = ws, wf, run, options
        self.store = ws.store
        self.progress = progress or (lambda kind, data: None)
        if options.recheck not in RECHECK:
            raise RunError(f"recheck must be one of {', '.join(RECHECK)}, got {options.recheck!r}", run_id=run.id)
        t0 = time.perf_counter()
        self.env = fingerprint(_project_dir(wf))
        self.git = git_state(_project_dir(wf)) or {}
        fingerprinting = time.perf_counter() - t0
        self.env_part = self.env.bundle_part()
        described = description["tasks"] if description is not None else None
        self.task_hash = {name: described[name]["task_hash"] if described else wf.task_hash(name) for name in wf.tasks}
        self._previous: dict[str, CheckpointRecord] = self.store.latest_checkpoints(wf.name, exclude_run=run.id)
        expected = {task: float(ck.doc["time"]["secs"]) for task, ck in self._previous.items()}
        self.expected = expected
        self.sched = Scheduler(task_defs(wf, expected), speculate=options.speculate, lease_ttl=options.lease_ttl,
                               predict=options.predict, max_refutations=options.max_refutations)
        self.roles = frozenset({t.role for t in wf.tasks.values()} | {t.verifier_role for t in wf.tasks.values()})
        self.agent_roles = [frozenset(r) for r in options.roles] if options.roles else None
        self.agent_pools = _pool_slots(options.pools, run.id)
        self.placed = self.agent_pools is not None
        self._agent_pool: dict[str, str] = {}
        self.ckpt_of: dict[str, CheckpointRecord] = {}
        self.invariants_of: dict[str, list[dict]] = {}
        self.inflight: dict[int, _InFlight] = {}
        self.summary: dict[str, TaskSummary] = {n: TaskSummary(n, "pending", 0) for n in wf.tasks}
        self.prev_id: str | None = None
        self.first_in_campaign = False
        self.pending: list[CheckpointRecord] = []
        self.pending_tasks: dict[str, TaskRecord] = {}
        self.pending_events: list[EventRecord] = []
        self.pending_blobs: list[tuple[bytes, str, str]] = []  # heavy captures, stored ahead of the next batch
        self.status_updates: list[tuple[str, str, str | None]] = []
        self._run_spec: dict[str, str] = {}
        self._executor = executor
        self._ex: Executor | None = None
        self.final_status: str | None = None
        self.provenance_seconds = fingerprinting
        self._last_flush = 0.0
        self._last_counters = 0.0
        self.stats = RunStats()
        self._children: dict[str, list[str]] = {n: [] for n in wf.tasks}
        for name, spec in wf.tasks.items():
            for dep in spec.after:
                self._children[dep].append(name)
        self._alternatives = {b for spec in wf.tasks.values() for b in spec.branches}
        self._follow: dict[tuple[str, int], tuple[str, int, int]] = {}
        self._preruns: dict[int, Result] = {}
        self._pseudo = 0
        self.rechecks = Rechecks(options.recheck, self.sched, self.stats)
        self._provisional_at: dict[tuple[str, int], float] = {}
        self._durations: list[float] = []
        self.writer: StoreWriter | None = None
        self.guard = DispatchGuard(self.store, wf, run, self.sched, hardware=self.env.hardware_class,
                                   hold=options.hold, previous=self._previous)
        self._prepare_parts()
        needed = max((t.quorum.k for t in wf.tasks.values()), default=0)
        n_agents = len(self.agent_pools) if self.agent_pools is not None else options.workers
        if needed and n_agents and n_agents < needed + 1:
            raise RunError(
                f"a task needs {needed} verifier approval(s) from agents other than its producer: "
                + (f"give the pools {needed + 1} agents or more" if self.placed else
                   f"run with --workers {needed + 1} or more"), run_id=run.id,
            )
        if self.agent_roles and options.workers > 0:
            held = set().union(*self.agent_roles[: max(n_agents, 1)])
            needs = {t.role for t in wf.tasks.values()} | {t.verifier_role for t in wf.tasks.values() if t.quorum.k}
            if needs - held:
                raise RunError(f"no agent has role(s) {', '.join(sorted(needs - held))}: give some agent "
                               "those roles with --roles", run_id=run.id)
        self.log = RunLog(log_path(ws.root, run.id) if options.log_file else None, stderr=options.log_json)

    def _prepare_parts(self) -> None:
        """The bundle parts that are the same for every checkpoint of the run, made plain once."""
        self._env_plain = to_jsonable({k: v for k, v in self.env_part.items()
                                       if k == "fp" or not _empty(v)})
        try:
            self._params_plain: Any = to_jsonable(self.run.params)
        except NotJSON:
            self._params_plain = self.run.params
        git = {k: v for k, v in self.git.items() if v is not None}
        self._code = {n: to_jsonable({k: v for k, v in {"task_hash": h, **git}.items()
                                      if k == "task_hash" or not _empty(v)})
                      for n, h in self.task_hash.items()}
        self._seed = {n: B.derive_seed(self.run.seed, n) for n in self.wf.tasks}
        self._intent = {n: {"goal": s.intent.goal, "assumptions": list(s.intent.assumptions),
                            "concludes": s.intent.concludes} for n, s in self.wf.tasks.items()}
        self._spec_diff: dict[str, tuple[dict, bool, bool]] = {}

    # -- setup -------------------------------------------------------------
    def _make_executor(self) -> Executor:
        claims = self.guard.resolver(self.store.url, str(self.ws.root))
        needed = max((t.quorum.k for t in self.wf.tasks.values()), default=0)
        if self.options.executor == "dask":
            from headwater.runtime.dask_executor import DaskExecutor

            n_agents = len(self.agent_pools) if self.agent_pools is not None else max(self.options.workers, 1)
            return DaskExecutor(self.wf, self.store.artifacts.url, self.roles, n_agents,
                                claims, self.options.scheduler_address, self.options.prefetch,
                                agent_pools=self.agent_pools)
        if self.options.executor != "local":
            raise RunError(f"unknown executor {self.options.executor!r}: use local or dask", run_id=self.run.id)
        if self.options.workers <= 0:
            if self.agent_pools is not None:
                return InlineExecutor(self.wf, self.store.artifacts, self.roles, claims,
                                      n_agents=len(self.agent_pools), agent_pools=self.agent_pools)
            return InlineExecutor(self.wf, self.store.artifacts, self.roles, claims, n_agents=needed + 1)
        n_agents = len(self.agent_pools) if self.agent_pools is not None else self.options.workers
        ex = LocalProcessExecutor(
            self.wf, self.store.artifacts.url, self.roles, n_agents, claims, self.options.prefetch,
            agent_roles=self.agent_roles, agent_pools=self.agent_pools,
        )
        return ex

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

    def _note_history(self) -> None:
        """``predict="history"``: tell the core how often each decider chose each branch before."""
        for name, spec in self.wf.tasks.items():
            if not spec.branches:
                continue
            counts = Counter(ck.doc["manifest"].get("branch") for ck in self.store.list_checkpoints(
                workflow=self.wf.name, task=name, status="committed") if ck.run_id != self.run.id)
            for branch, count in counts.items():
                if branch in spec.branches:
                    self._apply(self.sched.note_history(name, branch, count), time.time())

    # -- the loop ----------------------------------------------------------
    def execute(self) -> RunSummary:
        started = time.time()
        self.first_in_campaign = self.prev_id is None and not self.store.campaign_has_checkpoints(self.run.campaign)
        self.store.put_env(self.env.fp, self.env.summary, self.env.packages)
        self.progress("start", {"run": self.run.id, "total": len(self.wf.tasks),
                                "done": sum(1 for s in self.summary.values() if s.state == "committed")})
        self._event("run_started", data={"tasks": len(self.wf.tasks), "speculate": self.options.speculate,
                                         "recheck": self.options.recheck})
        if self.options.predict == "history":
            self._note_history()
        # The spec hashes of the runs the spec diffs compare against, read
        # while the store has no writer yet (a provenance cost all the same).
        t0 = time.perf_counter()
        for ck in self._previous.values():
            self._spec_of_run(ck.run_id)
        self.provenance_seconds += time.perf_counter() - t0
        # A writer process pays off when there are many checkpoints to overlap
        # with scheduling; for small runs its start-up costs more than it saves.
        self.writer = StoreWriter(self.store, self.ws.key, process=len(self.wf.tasks) >= WRITER_PROCESS_MIN)
        try:
            executor = self._executor or self._make_executor()
        except BaseException:
            self.writer.close()
            raise
        self._ex = executor
        if self.placed:
            self._placing(executor)
        try:
            self._loop(executor)
        except BaseException:
            executor.close()
            self._flush(final=True)
            self.store.set_run_status(self.run.id, "interrupted", time.time())
            self.log.close()
            raise
        status = self.final_status or self.sched.status
        self._event("run_finished", data={"status": status})  # the work is done; stopping agents is not part of it
        # The last checkpoints go to the writer now, without waiting for the
        # flush timer. Stopping the agents needs nothing from the store, so it
        # happens beside the rest: the final flush waits until every
        # checkpoint is durable, only then is the run marked finished, and
        # the run-end monitors (which read what the run committed) follow.
        self._flush()
        stopping = _Background(executor.close)
        try:
            # What the final flush costs the run is the wait for durability
            # past the moment the agents have stopped: before that the run
            # would be waiting for them anyway.
            t0 = time.perf_counter()
            self._flush_pending(final=True)
            self.provenance_seconds += stopping.idle_since(t0)
            self.store.set_run_status(self.run.id, status, time.time())
            self.guard.finish(status)
        finally:
            stopping.join()
        self.log.close()
        self.progress("finish", {"status": status})
        return RunSummary(
            run_id=self.run.id, workflow=self.wf.name, status=status,
            tasks=[self.summary[n] for n in self.wf.tasks], counters=self.counters(),
            elapsed=time.time() - started, provenance_seconds=round(self.provenance_seconds, 6),
            latency=self.stats.latency(),
        )

    def counters(self) -> dict[str, int]:
        """The core's counters and the shell's, in one dict."""
        return {**self.sched.counters, **self.stats.counts}

    def _loop(self, executor: Executor) -> None:
        last_renew = last_straggle = time.time()
        while not self.sched.done:
            now = time.time()
            self._apply(self.sched.expire(now), now)
            if now - last_renew >= self.options.lease_ttl / 4:
                self._renew(now)
                last_renew = now
            dispatched = self._claim(executor, now)
            if self.sched.done:
                break
            for agent, token in self.rechecks.due(now):
                self._cancel_copy(agent, token)
            if self.options.backup_stragglers and now - last_straggle >= 0.1:
                self._backup_stragglers(executor, now)
                last_straggle = now
            if not self.inflight or len(self.pending) >= FLUSH_BATCH or now - self._last_flush >= FLUSH_INTERVAL:
                self._flush()
            deadline = self.sched.next_deadline()
            wake = self.rechecks.next_wake()
            if wake < math.inf:
                deadline = wake if deadline is None else min(deadline, wake)
            if not self.inflight and self.guard.holding:
                if self.guard.stop_waiting(time.time()):
                    self.final_status = "interrupted"
                    break
                continue
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
                for f in self.inflight.values():
                    if f.backup == agent:
                        f.backup = None
                self.rechecks.lost(agent)
                self._event("agent_lost", agent=agent)
                self._apply(self.sched.agent_lost(agent, now), now)
            for result in results:  # work run ahead first, so its parents find it
                if result.token < 0:
                    self._preruns[result.token] = result
            for result in results:
                if result.token >= 0:
                    self._complete(result, now)
            take = getattr(executor, "take_released", None)
            if take is not None:
                self._released(executor, take(), now)

    def _renew(self, now: float) -> None:
        for token, f in self.inflight.items():
            if self.sched.renew(token, now):
                f.lease = replace(f.lease, expires=now + self.options.lease_ttl)

    def _claim(self, executor: Executor, now: float) -> int:
        """Lease work for every agent with free slots; returns how many leases were handed out."""
        count = 0
        held = self.guard.release(now)  # work paused by oversight, offered again
        if held:
            self._dispatch_all(executor, held, now)
        for _ in range(64):  # cache hits finish at once and may ready more work
            batches: dict[str, list[Lease]] = {}
            idle: list[str] = []
            queued = getattr(executor, "queued", None)
            agents = sorted(executor.agents.items(), key=lambda a: queued(a[0])) if queued else \
                list(executor.agents.items())
            # two passes: one message for every agent with room, emptiest first, so
            # scarce ready work spreads over idle agents; then the prefetch fills up
            for first in (True, False):
                for agent, info in agents:
                    slots = executor.free_slots(agent) - len(batches.get(agent, ()))
                    if first:
                        slots = min(slots, 1)
                    if slots <= 0:
                        continue
                    leases = self.sched.claim_verification(agent, info.roles, now, limit=slots)
                    if len(leases) < slots:
                        leases += self.sched.claim(agent, info.roles, now, limit=slots - len(leases),
                                                   accept=self._fits(info.pool, now) if self.placed else None)
                    if leases:
                        batches.setdefault(agent, []).extend(leases)
                    elif first:
                        idle.append(agent)
            if not batches:
                if idle and self.inflight:
                    self._steal(executor, idle)
                return count
            hits = self._dispatch_all(executor, batches, now)
            count += sum(len(v) for v in batches.values())
            if not hits:
                return count
        return count

    # -- dispatch ----------------------------------------------------------
    def _cache_key(self, task: str, inputs: dict[str, InputRef]) -> str:
        """:func:`headwater.checkpoint.bundle.cache_key`, with the params made plain once per run."""
        shas = {r: i.sha256 for r, i in inputs.items()}
        if self._params_plain is self.run.params:  # not plain JSON: let cache_key name the field
            return B.cache_key(task_hash=self.task_hash[task], inputs=shas, params=self.run.params,
                               seed=self._seed[task], env_fp=self.env.fp)
        return B.plain_cache_key(self.task_hash[task], shas, self._params_plain, self._seed[task], self.env.fp)

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

    def _dispatch_all(self, executor: Executor, batches: dict[str, list[Lease]], now: float) -> int:
        """Turn leases into messages (cache hits finish here); returns the number of cache hits."""
        flights: list[_InFlight] = []
        for holder, leases in batches.items():
            for lease in leases:
                agent = holder
                if lease.kind == "run" and self.placed:
                    agent, lease = self._place(executor, holder, lease, now)
                inputs, parents = self._inputs(lease.task)
                if lease.kind == "run" and not self.guard.admit(agent, lease, parents, now, pool=self._pool(agent)):
                    self.summary[lease.task].state = "paused"
                    self.summary[lease.task].error = self.guard.paused.get(lease.task)
                    continue
                key = self._cache_key(lease.task, inputs) if lease.kind == "run" else None
                flights.append(_InFlight(lease, agent, inputs, parents, key, now))
        found = {}
        if not self.options.no_cache:
            keys = [f.cache_key for f in flights if f.cache_key is not None]
            if keys:
                found = self.store.find_cached_many(keys)
        hits = 0
        out: dict[str, list[Work | VerifyWork]] = {}
        for f in flights:
            lease = f.lease
            hit = found.get(f.cache_key) if f.cache_key is not None else None
            if hit is not None and hit.workflow == self.wf.name and hit.task == lease.task and self.guard.cache_ok(hit):
                hits += 1
                self.stats.counts["cache_hits"] += 1
                self._finish_run(f, _outcome_from_checkpoint(hit), now, cache_hit=hit.id)
                continue
            seed = self._seed[lease.task]
            if lease.kind == "verify":
                ck = self.ckpt_of[lease.task]
                f.msg = VerifyWork(lease.token, self.run.id, lease.task, lease.attempt, self.run.params, seed,
                                   f.inputs, outputs=list(ck.outputs),
                                   invariants=list(self.invariants_of.get(lease.task, [])))
            else:
                f.msg = Work(lease.token, self.run.id, lease.task, lease.attempt, self.run.params, seed, f.inputs)
                if getattr(executor, "follow_ons", False):
                    self._plan_follow_ons(f.msg, f.agent, now)
                if self.summary[lease.task].state == "paused":
                    self.summary[lease.task].error = None
                self.summary[lease.task].state = "running"
                self.progress("task", {"task": lease.task, "state": "running"})
                if lease.speculative:
                    self.rechecks.assume(f.agent, lease)
                self._task_row(lease.task, now, f)
            self.inflight[lease.token] = f
            data = {"kind": lease.kind, "token": lease.token}
            if self.placed:
                data["pool"] = self._pool(f.agent)
            self._event("dispatched", lease.task, lease.attempt, f.agent, data)
            out.setdefault(f.agent, []).append(f.msg)
        many = getattr(executor, "submit_many", None)
        for agent, msgs in out.items():
            if many is not None:
                many(agent, msgs)
            else:
                for msg in msgs:
                    executor.submit(agent, msg)
        return hits

    # -- compute pools ---------------------------------------------------------
    def _placing(self, executor: Executor) -> None:
        """Tell the guard which pools have agents, and with which roles; log who is where."""
        roles: dict[str, set[str]] = {}
        members: dict[str, list[str]] = {}
        for agent, info in executor.agents.items():
            roles.setdefault(info.pool, set()).update(info.roles)
            members.setdefault(info.pool, []).append(agent)
            self._agent_pool[agent] = info.pool
        self.guard.placing(roles)
        self._event("agents", data={"pools": members})

    def _pool(self, agent: str) -> str | None:
        """The pool ``agent`` belongs to, when the run places work by pool."""
        if not self.placed:
            return None
        info = self._ex.agents.get(agent) if self._ex is not None else None
        if info is not None:
            self._agent_pool[agent] = info.pool
            return info.pool
        return self._agent_pool.get(agent)

    def _fits(self, pool: str | None, now: float) -> Callable[[str], bool]:
        """Whether an agent of ``pool`` may take a task now: the guard allows its
        pool, or allows none (the guard then holds the task, saying why)."""
        allowed = self.guard.allowed

        def fits(task: str) -> bool:
            where = allowed(task, now)
            return not where or pool in where
        return fits

    def _same_pool(self, f: _InFlight, info: Any) -> bool:
        """Run work moves (stolen, backed up) only within its agent's pool."""
        return not self.placed or f.lease.kind != "run" or info.pool == self._pool(f.agent)

    def _place(self, executor: Executor, agent: str, lease: Lease, now: float) -> tuple[str, Lease]:
        """Move a run lease held by ``agent`` to an agent of a pool its task may run
        on now, when ``agent``'s may not (work held by oversight, offered again
        after its pool changed): the least loaded agent of the task's role there."""
        allowed = self.guard.allowed(lease.task, now)
        if not allowed or self._pool(agent) in allowed:
            return agent, lease
        role = self.wf.tasks[lease.task].role
        queued = getattr(executor, "queued", None)
        others = [a for a, info in executor.agents.items() if info.pool in allowed and role in info.roles]
        for other in sorted(others, key=queued) if queued else others:
            moved = self.sched.reassign(lease.token, other, now)
            if moved is not None:
                return other, moved
        return agent, lease

    # -- chains run back to back ------------------------------------------
    def _successor(self, task: str) -> str | None:
        """The task that can run straight after ``task`` on its outputs alone, if exactly one."""
        children = self._children.get(task, ())
        if len(children) != 1:
            return None
        child = children[0]
        spec, cspec = self.wf.tasks[task], self.wf.tasks[child]
        if spec.branches or child in self._alternatives or cspec.role != spec.role or spec.quorum.k:
            return None
        if self.sched.state_of(child) is not State.PENDING:
            return None
        if any(d != task and self.sched.state_of(d) is not State.COMMITTED for d in cspec.after):
            return None
        return child

    def _plan_follow_ons(self, msg: Work, agent: str, now: float) -> None:
        """On chains of short tasks, let ``agent`` run the next ones straight after ``msg``
        (those its pool may run, when the run places work)."""
        recent = self._durations[-64:]
        if len(recent) < 8 or statistics.median(recent) > FOLLOW_BELOW:
            return
        prev, prev_attempt = msg.task, msg.attempt
        while len(msg.then) < FOLLOW_MAX:
            child = self._successor(prev)
            if child is None or (self.placed and self._pool(agent) not in (self.guard.allowed(child, now) or ())):
                break
            self._pseudo -= 1
            attempt = self.sched.attempt_of(child)
            inputs, _ = self._inputs(child)
            inputs = {ref: i for ref, i in inputs.items() if not ref.startswith(f"{prev}/")}
            msg.then.append(Work(self._pseudo, self.run.id, child, attempt, self.run.params, self._seed[child], inputs))
            self._follow[(prev, prev_attempt)] = (child, attempt, self._pseudo)
            prev, prev_attempt = child, attempt
        if msg.then:
            msg.budget = FOLLOW_BUDGET

    def _chase(self, task: str, attempt: int, agent: str, now: float) -> None:
        """``task`` finished on ``agent``: if that agent already ran its successor on
        these very outputs, lease the successor to it and take the result."""
        nxt = self._follow.pop((task, attempt), None)
        if nxt is None:
            return
        child, child_attempt, pseudo = nxt
        result = self._preruns.pop(pseudo, None)
        ck = self.ckpt_of.get(task)
        if result is None or result.agent != agent or ck is None or ck.attempt != attempt or self._ex is None:
            return
        info = self._ex.agents.get(agent)
        if info is None or self.sched.attempt_of(child) != child_attempt:
            return
        if self.placed and info.pool not in (self.guard.allowed(child, now) or ()):
            return
        lease = self.sched.claim_task(agent, info.roles, child, now)
        if lease is None:
            return
        inputs, parents = self._inputs(child)
        self.inflight[lease.token] = _InFlight(lease, agent, inputs, parents, self._cache_key(child, inputs), now)
        self.stats.counts["ran_ahead"] += 1
        self._event("dispatched", child, lease.attempt, agent, {"kind": "run", "token": lease.token, "ran_ahead": True})
        result.token = lease.token
        self._complete(result, now)

    # -- work stealing and stragglers ---------------------------------------
    def _steal(self, executor: Executor, idle: list[str]) -> None:
        """Idle agents take queued, not yet started work from the busiest agent."""
        steal = getattr(executor, "steal", None)
        queued = getattr(executor, "queued", None)
        if steal is None or queued is None:
            return
        pools = {executor.agents[a].pool for a in idle if a in executor.agents} if self.placed else None
        busiest = max((a for a, info in executor.agents.items()
                       if a not in idle and (pools is None or info.pool in pools)), key=queued, default=None)
        if busiest is None:
            return
        spare = queued(busiest) - 1
        if spare >= 1:
            steal(busiest, max(1, spare // 2))
            self.stats.counts["steal_requests"] += 1

    def _released(self, executor: Executor, released: list[tuple[str, int]], now: float) -> None:
        """Work an agent gave back: hand it to an agent with room (or back to its holder)."""
        for agent, token in released:
            f = self.inflight.get(token)
            if f is None:
                continue
            if f.backup == agent:
                f.backup = None
                continue
            if f.agent != agent or f.msg is None:
                continue
            role = self.wf.tasks[f.lease.task].role if f.lease.kind == "run" else \
                self.wf.tasks[f.lease.task].verifier_role
            target = None
            for other, info in executor.agents.items():
                if other != agent and role in info.roles and executor.free_slots(other) > 0 \
                        and self._same_pool(f, info):
                    lease = self.sched.reassign(token, other, now)
                    if lease is not None:
                        target = other
                        self._moved(f, lease)
                        break
            if target is None:
                target = agent if agent in executor.agents else None
            if target is None:
                continue
            if target != agent:
                self.stats.counts["stolen"] += 1
                self._event("stolen", f.lease.task, f.lease.attempt, target, {"from": agent, "token": token})
            executor.submit(target, f.msg)

    def _moved(self, f: _InFlight, lease: Lease) -> None:
        old = f.agent
        f.lease, f.agent = lease, lease.agent
        self.rechecks.moved(old, lease)

    def _backup_stragglers(self, executor: Executor, now: float) -> None:
        """Give run work that takes far longer than expected a copy on another agent."""
        typical = statistics.median(self._durations[-200:]) if len(self._durations) >= 3 else None
        for token, f in list(self.inflight.items()):
            if f.lease.kind != "run" or f.backup is not None or f.msg is None:
                continue
            expected = self.expected.get(f.lease.task, typical)
            if expected is None:
                continue
            if now - f.dispatched < max(STRAGGLER_MIN_SECONDS, self.options.straggler_factor * expected):
                continue
            role = self.wf.tasks[f.lease.task].role
            for other, info in executor.agents.items():
                if other != f.agent and role in info.roles and executor.free_slots(other) > 0 \
                        and self._same_pool(f, info):
                    f.backup = other
                    executor.submit(other, f.msg)
                    self.stats.counts["backups"] += 1
                    self._event("backup", f.lease.task, f.lease.attempt, other,
                                {"token": token, "running_on": f.agent, "seconds": round(now - f.dispatched, 3)})
                    break

    # -- results -----------------------------------------------------------
    def _complete(self, result: Result, now: float) -> None:
        flight = self.inflight.get(result.token)
        if flight is None:
            self._event("stale_result", agent=result.agent, data={"token": result.token})
            return
        if result.agent != flight.agent:
            if result.agent != flight.backup:
                self._event("stale_result", agent=result.agent, data={"token": result.token})
                return
            lease = self.sched.reassign(result.token, result.agent, now)
            if lease is None:
                self._event("stale_result", agent=result.agent, data={"token": result.token})
                return
            loser = flight.agent
            self._moved(flight, lease)
            flight.backup = loser
            self.stats.counts["backup_wins"] += 1
        del self.inflight[result.token]
        if flight.backup is not None:
            self._cancel_copy(flight.backup, result.token)
        if result.kind == "verify":
            task, attempt = flight.lease.task, flight.lease.attempt
            self._event("verdict", task, attempt, result.agent, {"approve": result.approve, "reason": result.reason})
            since = self._provisional_at.get((task, attempt))
            self._apply(self.sched.verdict(result.token, now, bool(result.approve), result.reason), now)
            if since is not None and self.sched.attempt_state(task, attempt) in (State.VERIFIED, State.COMMITTED):
                self._provisional_at.pop((task, attempt), None)
                self.rechecks.observe_verification(now - since)
            self.rechecks.after_step(result.agent, now)
            return
        outcome = result.outcome
        assert outcome is not None
        if outcome.finished:
            self._durations.append(max(0.0, outcome.finished - outcome.started))
        if outcome.ok:
            self._finish_run(flight, outcome, now)
            self._chase(flight.lease.task, flight.lease.attempt, result.agent, now)
        else:
            self._write(flight, outcome, "failed", now)
            self.summary[flight.lease.task].error = outcome.error
            self._apply(self.sched.failed(result.token, now, outcome.error or "failed"), now)
        self.rechecks.after_step(result.agent, now)

    def _cancel_copy(self, agent: str, token: int) -> None:
        cancel = getattr(self._ex, "cancel", None)
        if cancel is not None and self._ex is not None and agent in self._ex.agents:
            cancel(agent, token)
            self.stats.counts["cancels_sent"] += 1

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
        if state == State.PROVISIONAL:
            self._provisional_at[(lease.task, lease.attempt)] = now
        ck = self._write(flight, outcome, status, now, cache_hit)
        self.ckpt_of[lease.task] = ck
        if self.wf.tasks[lease.task].quorum.k:
            self.invariants_of[lease.task] = list(outcome.invariants)
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
                self._event("committed", act.task, act.attempt, data={"checkpoint": ck.id if ck else None})
                self.progress("task", {"task": act.task, "state": "committed"})
                self._provisional_at.pop((act.task, act.attempt), None)
                self.rechecks.notify((act.task, act.attempt), now)
            elif isinstance(act, Squash):
                ck = self.ckpt_of.get(act.task)
                if ck is not None and ck.attempt == act.attempt:
                    self._set_status(ck, "squashed", act.reason)
                    del self.ckpt_of[act.task]
                self.summary[act.task].state = "squashed"
                self._event("squashed", act.task, act.attempt, data={"reason": act.reason})
                self._provisional_at.pop((act.task, act.attempt), None)
                self.rechecks.notify((act.task, act.attempt), now)
            elif isinstance(act, Requeue):
                self._closed(act.task, act.reason)
                self.summary[act.task].state = "retrying"
                self._event("requeued", act.task, act.attempt, data={"reason": act.reason, "not_before": act.not_before})
            elif isinstance(act, Fail):
                self._closed(act.task, act.error)
                self.summary[act.task].state = "failed"
                self.summary[act.task].error = self.summary[act.task].error or act.error
                self._event("failed", act.task, act.attempt, data={"error": act.error})
                self.progress("task", {"task": act.task, "state": "failed"})
            elif isinstance(act, Skip):
                self.summary[act.task].state = "skipped"
                self._event("skipped", act.task, data={"reason": act.reason})
                self.progress("task", {"task": act.task, "state": "skipped"})
            elif isinstance(act, Cancel):
                flight = self.inflight.pop(act.token, None)
                self._event("cancelled", act.task, act.attempt, act.agent, {"token": act.token})
                if flight is not None:
                    self._cancel(flight, act)
            elif isinstance(act, RunFinished):
                self.final_status = act.status
            self._task_row(getattr(act, "task", None), now)

    def _closed(self, task: str, reason: str) -> None:
        """A task's attempt closed without a Squash of its own (it was refuted): mark its checkpoint."""
        ck = self.ckpt_of.get(task)
        if ck is None or ck.status == "committed":
            return
        state = self.sched.attempt_state(task, ck.attempt)
        if state is State.REFUTED:
            self._set_status(ck, "refuted", reason)
            del self.ckpt_of[task]
            self._provisional_at.pop((task, ck.attempt), None)
            self.rechecks.notify((task, ck.attempt), time.time())

    def _cancel(self, flight: _InFlight, act: Cancel) -> None:
        """Stop cancelled work: at once, or -- work squashed because its inputs were
        flushed, under a recheck policy -- when its agent next looks."""
        if flight.backup is not None:
            self._cancel_copy(flight.backup, act.token)
        if not self.rechecks.defer_cancel(flight.agent, act.token, time.time()):
            self._cancel_copy(flight.agent, act.token)

    # -- checkpoints -------------------------------------------------------
    def _previous_checkpoint(self, task: str) -> CheckpointRecord | None:
        """The checkpoint this task's spec diff is against: the newest committed
        one of the same workflow and task in an earlier run (loaded once per run)."""
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

    def _task_parts(self, task: str) -> tuple[dict, bool, bool]:
        """Per task, once per run: the spec diff and whether the environment or
        hardware changed since the checkpoint it is diffed against."""
        if task not in self._spec_diff:
            prev = self._previous_checkpoint(task)
            manifest = {"params": self._params_plain, "code": self._code[task], "seed": self._seed[task]}
            diff = B.make_spec_diff(
                against=prev.id if prev else None, prev_manifest=prev.doc["manifest"] if prev else None,
                manifest=manifest, prev_env_fp=prev.env_fp if prev else None, env_fp=self.env.fp,
                spec_changed=bool(prev) and self._spec_of_run(prev.run_id) != self.run.spec_hash, why=self.run.why,
            )
            env_changed = bool(prev) and prev.env_fp != self.env.fp
            hw_changed = bool(prev) and prev.doc.get("env", {}).get("hw") != self.env.hardware_class
            self._spec_diff[task] = (to_jsonable(diff), env_changed, hw_changed)
        return self._spec_diff[task]

    def _write_bundle(self, flight: _InFlight, outcome: TaskOutcome, status: str, now: float,
                      cache_hit: str | None) -> CheckpointRecord:
        lease = flight.lease
        task = lease.task
        self.guard.record(task, outcome, self._pool(flight.agent))
        manifest: dict[str, Any] = {
            "inputs": {ref: i.sha256 for ref, i in flight.inputs.items()},
            "outputs": {o.name: o.sha256 for o in outcome.outputs},
            "code": self._code[task],
            "seed": self._seed[task],
            "params": self._params_plain,
        }
        if outcome.uses:
            manifest["versions"] = {f"{u.kind}:{u.name}": u.version for u in outcome.uses}
        if flight.parents:
            manifest["upstream"] = flight.parents
        if outcome.branch is not None:
            manifest["branch"] = outcome.branch
        if lease.speculative:
            manifest["speculative"] = [list(x) for x in lease.speculative]
        spec_diff, env_changed, hw_changed = self._task_parts(task)
        triggers = B.heavy_triggers(
            first_in_campaign=self.first_in_campaign, env_changed=env_changed,
            hardware_changed=hw_changed, failed=not outcome.ok and not outcome.invariant_violated,
            invariant_violated=outcome.invariant_violated,
        )
        self.first_in_campaign = False
        heavy = None
        if triggers and cache_hit is None:
            blobs = {"stdout": outcome.stdout.encode(), "stderr": outcome.stderr.encode(),
                     "env_export": full_export(self.env).encode()}
            heavy = {"triggers": triggers, "artifacts": {name: sha256_hex(data) for name, data in blobs.items()}}
            self.pending_blobs += [(data, "text/plain", name) for name, data in blobs.items()]
        profile = None
        if self.wf.profile == "simulation":
            profile = simulation_part(outcome.numerics, outcome.invariants)
        elif self.wf.profile == "analysis":
            profile = analysis_part(outcome.transforms, outcome.cohort, outcome.schemas)
        intent = self._intent[task]
        if outcome.claims:
            intent = {**intent, "claims": [asdict(c) for c in outcome.claims]}
        data = assemble_bundle(
            run=self.run.id, workflow=self.wf.name, task=task, attempt=lease.attempt, status=status,
            parents=flight.parents, prev=self.prev_id, manifest=manifest, spec_diff=spec_diff,
            env=self._env_plain, intent=intent,
            artifacts=[{"name": o.name, "uri": o.uri, "sha256": o.sha256, "size": o.size, "media_type": o.media_type}
                       for o in outcome.outputs],
            profile=profile, heavy=heavy, started=outcome.started or now, finished=outcome.finished or now,
            cache_hit=cache_hit, error=outcome.error,
        )
        ck = CheckpointRecord(
            id=B.bundle_id(data), run_id=self.run.id, workflow=self.wf.name, task=task,
            attempt=lease.attempt, status=status, bundle=data, signature="",
            key_id=self.ws.key.key_id, parents=flight.parents, prev=self.prev_id,
            cache_key=flight.cache_key if status != "failed" else None, env_fp=self.env.fp, created_at=now,
            inputs=[ArtifactRecord(i.sha256, i.size, i.media_type, i.uri, name=ref) for ref, i in flight.inputs.items()],
            outputs=list(outcome.outputs), claims=list(outcome.claims), uses=list(outcome.uses),
        )
        self.prev_id = ck.id
        self.guard.written(ck, outcome, lease.token)
        self.pending.append(ck)
        self.stats.counts["checkpoints"] += 1
        if status != "committed":  # a committed one is logged by its "committed" event
            self._event("checkpoint", task, lease.attempt, flight.agent, {"id": ck.id, "status": status})
        return ck

    def _set_status(self, ck: CheckpointRecord, status: str, reason: str | None) -> None:
        if any(p is ck for p in reversed(self.pending)):
            ck.status = status
            ck.status_reason = reason
            return
        self.status_updates.append((ck.id, status, reason))

    def _task_row(self, task: str | None, now: float, flight: _InFlight | None = None) -> None:
        if task is None or task not in self.wf.tasks:
            return
        ck = self.ckpt_of.get(task)
        self.pending_tasks[task] = TaskRecord(
            run_id=self.run.id, task=task, attempt=self.sched.attempt_of(task),
            state=self.sched.state_of(task).name.lower(), updated_at=now,
            agent=flight.agent if flight else None, fencing=flight.lease.token if flight else None,
            lease_expiry=flight.lease.expires if flight else None,
            error=self.summary[task].error, checkpoint_id=ck.id if ck else None,
        )

    def _event(self, kind: str, task: str | None = None, attempt: int | None = None,
               agent: str | None = None, data: dict | None = None) -> None:
        ts = time.time()
        self.log.write(ts, kind, self.run.id, task, attempt, agent, data)
        if kind not in LOG_ONLY:
            self.pending_events.append(EventRecord(ts=ts, kind=kind, run_id=self.run.id, task=task,
                                                   attempt=attempt, agent=agent, data=data or {}))

    def _flush(self, final: bool = False) -> None:
        t0 = time.perf_counter()
        try:
            self._flush_pending(final)
        finally:
            self.provenance_seconds += time.perf_counter() - t0

    def _flush_pending(self, final: bool) -> None:
        now = time.time()
        self._last_flush = now
        if final or now - self._last_counters >= COUNTERS_EVERY:
            self._last_counters = now
            self.pending_events.append(EventRecord(
                ts=now, kind="counters", run_id=self.run.id,
                data={"counters": self.counters(), "latency": self.stats.latency(),
                      "speculation_depth": self.sched.speculation_depth()}))
        if self.writer is None:
            return
        # The log's write comes first, while the writer is most likely idle:
        # after the hand-over the writer thread takes the interpreter lock
        # whenever this thread lets go of it, as it does for a write.
        self.log.flush()
        if self.pending_blobs:
            self.writer.put_blobs(self.pending_blobs)
            self.pending_blobs = []
        if self.pending or self.pending_tasks or self.pending_events or self.status_updates:
            self.writer.submit(self.pending, list(self.pending_tasks.values()), self.pending_events,
                               self.status_updates)
            self.pending, self.pending_tasks, self.pending_events, self.status_updates = [], {}, [], []
        if final:
            self.writer.close()


class _Background:
    """Runs ``fn`` in a thread; :meth:`join` waits for it and re-raises what it raised."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._error: BaseException | None = None
        self._done_at: float | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name="headwater-stop-agents", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the thread that joins
            self._error = exc
        finally:
            self._done_at = time.perf_counter()

    def idle_since(self, t0: float) -> float:
        """Seconds between ``t0`` (a ``perf_counter`` reading) and now during which ``fn`` was no longer running."""
        done = self._done_at
        now = time.perf_counter()
        return 0.0 if done is None else max(0.0, now - max(t0, done))

    def join(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


@contextmanager
def quiet_gc() -> Any:
    """Keep Python's cyclic garbage collector off the run's hot path.

    A run allocates a few small records per task and keeps most of them
    (checkpoint records, task rows) until it ends, so with the default
    thresholds the collector keeps re-walking a growing heap that holds no
    garbage cycles: a third of the coordinator's time on 10,000 no-op tasks.
    Everything alive when the run starts (imported modules, the workflow,
    the scheduler's graph) is frozen out of collections, and young
    collections run every :data:`GC_YOUNG` allocations instead of 700.
    Agent and store-writer processes forked inside inherit both, which also
    spares them copying the parent's pages when the collector would touch
    them. The context gives a function that freezes what is alive now as
    well (called once set-up is done, before the loop starts); afterwards
    the thresholds are restored and the freeze undone. When something is
    frozen already -- by the caller, or by another run in this process,
    which then owns the settings -- nothing is changed here.
    ``HEADWATER_GC=default`` leaves the collector as it is (for measuring).
    """
    if os.environ.get("HEADWATER_GC") == "default" or gc.get_freeze_count():
        yield lambda: None
        return
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], GC_YOUNG), *threshold[1:])
    try:
        yield gc.freeze
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (dict, list, tuple, str)) and len(value) == 0)


def _project_dir(wf: Workflow) -> str | None:
    from pathlib import Path

    return str(Path(wf.source_file).parent) if wf.source_file else None


def _pool_slots(pools: dict[str, int] | None, run_id: str) -> list[str] | None:
    """The pool of agent 1, 2, ... from ``RunOptions.pools``; None when the run does not place work."""
    if pools is None:
        return None
    slots: list[str] = []
    for name, count in pools.items():
        if not isinstance(name, str) or not name.strip():
            raise RunError(f"pool name {name!r} is empty: name each pool (--pool NAME=N)", run_id=run_id)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise RunError(f"pool {name!r} has {count!r} agents: give each pool 1 or more (--pool {name}=N)",
                           run_id=run_id)
        slots += [name] * count
    if not slots:
        raise RunError("no pools given: name at least one (--pool NAME=N)", run_id=run_id)
    return slots


def new_run_id() -> str:
    return secrets.token_hex(8)


def _run_options(options: RunOptions) -> dict[str, Any]:
    """What a run records of its options (resume reads them back)."""
    return {"workers": options.workers, "no_cache": options.no_cache, "speculate": options.speculate,
            "prefetch": options.prefetch, "executor": options.executor, "roles": options.roles,
            "predict": options.predict, "recheck": options.recheck,
            "backup_stragglers": options.backup_stragglers, "straggler_factor": options.straggler_factor,
            "max_refutations": options.max_refutations, "pools": options.pools}


def run_workflow(ws: Workspace, wf: Workflow, params: dict[str, Any] | None = None,
                 options: RunOptions | None = None, progress: ProgressFn | None = None,
                 executor: Executor | None = None) -> RunSummary:
    """Validate, record and run a workflow to its end; return a summary."""
    options = options or RunOptions()
    with quiet_gc() as settle:
        wf.validate(file=wf.source_file)
        resolved = wf.resolve_params(params or {})
        description = wf.describe()
        spec_hash = hash_obj(description)
        ws.store.put_spec(wf.name, spec_hash, description)
        run = RunRecord(
            id=new_run_id(), workflow=wf.name, spec_hash=spec_hash, campaign=options.campaign or wf.name,
            params=resolved, seed=options.seed, status="running", why=options.why, source=wf.source_file,
            created_at=time.time(), options=_run_options(options), tags=list(wf.tags),
        )
        ws.store.create_run(run)
        coordinator = Coordinator(ws, wf, run, options, progress, executor, description)
        del description  # one dict per task: not needed past set-up
        settle()
        return coordinator.execute()


def resume_run(ws: Workspace, run_id: str, progress: ProgressFn | None = None,
               workers: int | None = None, executor: Executor | None = None,
               log_json: bool = False, pools: dict[str, int] | None = None) -> RunSummary:
    """Continue a run whose coordinator died; committed tasks are not run again.
    ``workers`` and ``pools`` override the agents the run was started with."""
    run = ws.store.get_run(run_id)
    if run.status == "succeeded":
        raise RunError(f"run {run.id} already succeeded; nothing to resume", run_id=run.id)
    if (run.options or {}).get("executor") == "queue":
        raise RunError(f"run {run.id} is served by the shared work queue, which survives any coordinator; "
                       "start one with `headwater coordinator --run RUN` instead of resuming", run_id=run.id)
    if not run.source:
        raise RunError(f"run {run.id} records no workflow file to resume from", run_id=run.id)
    wf = load_workflow(run.source, run.workflow)
    if wf.spec_hash() != run.spec_hash:
        raise RunError(
            f"workflow {run.source} changed since run {run.id} started (spec {wf.spec_hash()[:12]} != "
            f"{run.spec_hash[:12]}); start a new run with `headwater run`", run_id=run.id,
        )
    opts = run.options
    defaults = RunOptions()
    options = RunOptions(workers=workers if workers is not None else opts.get("workers", 2), seed=run.seed,
                         why=run.why, no_cache=opts.get("no_cache", False), campaign=run.campaign,
                         speculate=opts.get("speculate", 0), prefetch=opts.get("prefetch", 2),
                         executor=opts.get("executor", defaults.executor), roles=opts.get("roles"),
                         predict=opts.get("predict", defaults.predict), recheck=opts.get("recheck", defaults.recheck),
                         backup_stragglers=opts.get("backup_stragglers", False),
                         straggler_factor=opts.get("straggler_factor", defaults.straggler_factor),
                         max_refutations=opts.get("max_refutations", defaults.max_refutations),
                         log_json=log_json, pools=pools if pools is not None else opts.get("pools"))
    ws.store.set_run_status(run.id, "running")
    with quiet_gc() as settle:
        coordinator = Coordinator(ws, wf, run, options, progress, executor)
        coordinator.restore()
        settle()
        return coordinator.execute()
