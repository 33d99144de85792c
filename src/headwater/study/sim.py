"""The discrete-event shell that runs a fleet on the real scheduling core, in simulated time.

:func:`simulate` plays one :class:`~headwater.study.fleet.Fleet` under one
strategy and returns an :class:`~headwater.study.ledger.Outcome`. It is pure:
time is a number it advances itself, every random draw was made by
:func:`~headwater.study.fleet.make_fleet`, and two calls with the same fleet
and strategy return the same outcome.

Each workflow run is a :class:`headwater.schedule.Scheduler` over its chain of
stages, exactly as the local runtime drives it: the shell claims work for
the workflow's worker agent, reports ``finished`` when the simulated compute
is done, has the workflow's verifier agent claim verification and report a
``verdict``, and applies the actions the core returns (commit, squash,
requeue, cancel, fail, run finished). With per-workflow oversight every
stage needs one approval (``verify=1``, one rejection refutes) and the
worker runs ahead on provisional stages up to ``params.speculate``; without
it, stages verify at once (``verify=0``). A retraction by the
infrastructure restarts a run as a new scheduler ``restore``-d from the
results that still stand, the way ``headwater rerun --affected-by`` does.

What a stage computes is decided when it starts: the asset versions it
resolves (locked at workflow start without infrastructure oversight; from
the registry, with pins and canary gating, with it), the node it lands on,
the claim it consumes and the chain input it builds on. Its *origins* are
the planted errors it carries: those of buggy versions it used (when the bug
manifests for its inputs), a bad node, its own code's bug, and what its
inputs carried, when they pass it on (``p_inherit_chain`` for the previous
stage, ``p_inherit_claim`` for a claim read from another workflow). Its claim value is noise, plus the legitimate level of
the versions it used, plus the visible shift of its origins (an error of
the kind the monitors are blind to shifts nothing they can see).

A re-run reads the claim version its stage read before, unless that one
is no longer served (retracted, tainted or sandboxed): re-running exactly
what was affected, not everything that changed since.

Per-workflow owners react to a refutation: a workflow's own bug is fixed in
``local_fix_hours``; otherwise they investigate for ``investigation_hours``
and, with ``p_root_cause``, trace it to the shared asset, pin their own
workflow off it and report it upstream (a fix follows in ``fix_hours``).
Either way, once they know the error they withdraw and re-run their own
results it touched; other workflows are not told.
Every shared error is also found from outside the fleet at its
``external`` time. A fix reaches a workflow that locked its versions only if
it heeds the advisory (``p_heed``). The infrastructure strategies add
:class:`~headwater.study.infra.Infrastructure`, which the shell consults
before a stage starts and informs of releases, commits and refutations.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from headwater.schedule import Cancel, Commit, Fail, RunFinished, Scheduler, Squash, TaskDef
from headwater.study.fleet import DRAWS, Fleet, StageDef, WorkflowDef
from headwater.study.ledger import Outcome, Record, reconcile, summarize
from headwater.study.params import STRATEGIES

START, DONE, VERDICT, WAKE, RELEASE, EXTERNAL, FIX, FAULT, LOCALFIX, OWNRERUN, INFRA = range(11)
"""Event kinds, in the order they are handled when several fall at the same time."""

RUNNING, FINISHED, CLOSED = 0, 1, 2
"""Attempt life: computing (or paused before computing), finished (provisional or verified), closed."""


@dataclass(slots=True)
class Version:
    """One version of a versioned asset: the planted errors it carries and its legitimate level."""

    no: int
    time: float
    errors: frozenset[int]
    level: float


@dataclass(slots=True, eq=False)
class Attempt:
    """One attempt of one stage, as the shell tracks it.

    ``begin``/``end`` bound its compute (``begin`` is NaN while a throttle
    holds it, ``paused_since`` and ``pause_cause`` say since when and why).
    What it computed is fixed when it begins: the ``versions`` and ``node``
    it used, its ``origins`` (planted errors it carries) and ``own`` (those
    it got directly rather than from an input), its claim ``value`` and the
    ``shift`` errors put on it, the result it ``consumed`` (``cross``: a
    corrupted one from another workflow that passed its error on), its chain
    ``parent``, and the suspect versions that ``sandbox`` its outputs.
    """

    run: Run
    stage: StageDef
    attempt: int
    token: int
    created: float
    begin: float = math.nan
    end: float = math.nan
    state: int = RUNNING
    paused_since: float = math.nan
    pause_cause: int = -1
    versions: tuple[tuple[int, int], ...] = ()
    node: int = -1
    origins: frozenset[int] = frozenset()
    own: frozenset[int] = frozenset()
    value: float = 0.0
    shift: float = 0.0
    consumed: int = -1
    cross: bool = False
    parent: Attempt | None = None
    rerun: bool = False
    sandbox: tuple[tuple[int, int], ...] = ()

    @property
    def started(self) -> bool:
        return not math.isnan(self.begin)


@dataclass(slots=True, eq=False)
class Run:
    """One workflow's current run (a new generation after each restart).

    ``env`` are the versions locked when the workflow started, ``pins`` and
    ``avoid`` its owners' own workarounds (versions, nodes), ``hold_until``
    when its owners let it continue. ``worker`` is the attempt its worker
    agent holds; ``vlease`` its verifier's lease as ``(token, attempt,
    start, cost, auto-approved)``. ``committed`` maps stage -> result of
    this generation, ``ever_committed`` the stages committed in any, and
    ``read`` the claim each stage last read.
    """

    wf: WorkflowDef
    gen: int
    sched: Scheduler
    env: dict[int, int] = field(default_factory=dict)
    pins: dict[int, int] = field(default_factory=dict)
    avoid: set[int] = field(default_factory=set)
    hold_until: float = 0.0
    wake_at: float = math.inf
    worker: Attempt | None = None
    vlease: tuple[int, Attempt, float, float, bool] | None = None
    attempts: dict[tuple[int, int], Attempt] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)
    ever_committed: set[int] = field(default_factory=set)
    read: dict[int, int] = field(default_factory=dict)
    last_attempt: dict[int, int] = field(default_factory=dict)
    done: bool = False
    failed: bool = False


def _stage_of(task: str) -> int:
    return int(task[1:])


class Simulation:
    """One fleet under one strategy; :func:`simulate` is the way to run it."""

    def __init__(self, fleet: Fleet, strategy: str) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
        self.fleet = fleet
        self.p = fleet.params
        self.strategy = strategy
        self.verify = strategy in ("per-workflow", "both")
        self.now = 0.0
        self.horizon = self.p.horizon
        self._events: list[tuple[float, int, int, object]] = []
        self._seq = 0
        self.results: list[Record] = []
        self.attempts: list[Attempt] = []
        self.runs: dict[int, Run] = {}
        self.retired: list[Run] = []
        self.claims: dict[int, list[int]] = {}
        self.versions: dict[int, list[Version]] = {}
        self.faults: dict[int, dict[int, int]] = {}
        self.epoch: dict[tuple[int, int], int] = {}
        self.fault_epoch: dict[int, int] = {}
        self.fixed: set[int] = set()
        self.reported: set[int] = set()
        self.detected: dict[int, float] = {}
        self.error_kinds = {e.idx: e.kind for e in fleet.errors}
        self.out = Outcome(strategy)
        for a in fleet.assets:
            if a.kind in ("library", "dataset", "model", "claim", "code"):
                self.versions[a.idx] = [Version(1, 0.0, frozenset(), 0.0)]
        for e in fleet.errors:
            if e.kind == "local":
                v = self.versions[e.asset][0]
                v.errors = v.errors | {e.idx}
        from headwater.study.infra import Infrastructure

        self.infra: Infrastructure | None = Infrastructure(self) if strategy in ("infrastructure", "both") else None

    # -- events -------------------------------------------------------------
    def push(self, time: float, kind: int, payload: object = None) -> None:
        """Schedule an event (ties: kind order, then order of scheduling)."""
        self._seq += 1
        heapq.heappush(self._events, (time, kind, self._seq, payload))

    def run(self) -> Outcome:
        """Play every event up to the horizon and summarize."""
        for wf in self.fleet.workflows:
            self.push(wf.start, START, wf)
        for e in self.fleet.errors:
            if e.kind == "compute":
                self.push(e.time, FAULT, e)
            elif e.kind != "local":
                self.push(e.time, RELEASE, (e.asset, e.idx, 0.0))
            if e.kind != "local" and e.external <= self.horizon:
                self.push(e.external, EXTERNAL, e)
        for c in self.fleet.changes:
            self.push(c.time, RELEASE, (c.asset, -1, c.shift))
        if self.infra is not None:
            self.infra.start()
        handlers = {
            START: self._on_start, DONE: self._on_done, VERDICT: self._on_verdict, WAKE: self._on_wake,
            RELEASE: self._on_release, EXTERNAL: self._on_external, FIX: self._on_fix, FAULT: self._on_fault,
            LOCALFIX: self._on_local_fix, OWNRERUN: self._on_own_rerun,
        }
        while self._events and self._events[0][0] <= self.horizon:
            time, kind, _, payload = heapq.heappop(self._events)
            self.now = time
            if kind == INFRA:
                self.infra.handle(payload)  # type: ignore[union-attr]
            else:
                handlers[kind](payload)
        self.now = self.horizon
        return self._finish()

    # -- workflow runs ------------------------------------------------------
    def _new_sched(self, wf: WorkflowDef) -> Scheduler:
        names = [f"s{j}" for j in range(len(wf.stages))]
        verify = 1 if self.verify else 0
        tasks = [TaskDef(n, deps=(names[j - 1],) if j else (), verify=verify, expected_duration=st.hours)
                 for j, (n, st) in enumerate(zip(names, wf.stages))]
        return Scheduler(tasks, speculate=self.p.speculate if self.verify else 0, lease_ttl=1e12,
                         max_refutations=self.p.max_refutations)

    def _on_start(self, wf: WorkflowDef) -> None:
        run = Run(wf, 0, self._new_sched(wf))
        for st in wf.stages:
            for a in st.assets:
                if a in self.versions and self.fleet.assets[a].kind != "code":
                    run.env[a] = self._latest(a).no
        self.runs[wf.idx] = run
        self.pump(run)

    def restart(self, run: Run, first: int) -> Run:
        """Abandon ``run`` from stage ``first`` on and start its next generation.

        Live attempts are squashed; the new scheduler is restored from the
        committed stages before ``first`` (the later ones were retracted),
        with attempt numbers continuing.
        """
        for att in list(run.attempts.values()):
            if att.state != CLOSED:
                self._close(att, "squashed")
        if run.vlease is not None:
            self._end_verification(run, partial=True)
        wf = run.wf
        sched = self._new_sched(wf)
        keep = {j: r for j, r in run.committed.items() if j < first and not self.results[r].retracted}
        prefix = {}
        for j in range(len(wf.stages)):
            if j in keep and all(k in keep for k in range(j)):
                prefix[f"s{j}"] = (self.results[keep[j]].attempt, None)
        sched.restore(prefix, attempts={f"s{j}": a for j, a in run.last_attempt.items()})
        new = Run(wf, run.gen + 1, sched, env=run.env, pins=run.pins, avoid=run.avoid,
                  hold_until=run.hold_until, ever_committed=run.ever_committed, read=run.read,
                  last_attempt=dict(run.last_attempt))
        new.committed = {_stage_of(t): keep[_stage_of(t)] for t in prefix}
        for j, r in new.committed.items():
            a = self.results[r].attempt
            new.attempts[(j, a)] = run.attempts[(j, a)]
        new.done = sched.done
        run.done = True
        self.retired.append(run)
        self.runs[wf.idx] = new
        self.pump(new)
        return new

    def pump(self, run: Run) -> None:
        """Give the run's agents work: the worker a stage, the verifier a verification."""
        if run.done or self.runs.get(run.wf.idx) is not run:
            return
        now = self.now
        if run.worker is None:
            if now < run.hold_until:
                self._wake(run, run.hold_until)
            else:
                for lease in run.sched.claim(f"w{run.wf.idx}", ("worker",), now):
                    self._begin_attempt(run, lease)
        elif run.worker.state == RUNNING and not run.worker.started:
            self._try_begin(run.worker)
        if self.verify and run.vlease is None:
            for lease in run.sched.claim_verification(f"v{run.wf.idx}", ("verifier",), now):
                att = run.attempts[(_stage_of(lease.task), lease.attempt)]
                auto = self.infra is not None and self.infra.auto_approves(run)
                cost = 0.0 if auto else self.p.verify_cost * att.stage.hours
                run.vlease = (lease.token, att, now, cost, auto)
                self.push(now + cost, VERDICT, (run, lease.token))

    def _wake(self, run: Run, at: float) -> None:
        if at < run.wake_at or run.wake_at <= self.now:
            run.wake_at = at
            self.push(at, WAKE, run)

    def _on_wake(self, run: Run) -> None:
        if run.wake_at <= self.now:
            run.wake_at = math.inf
        self.pump(run)

    def _begin_attempt(self, run: Run, lease) -> None:
        j = _stage_of(lease.task)
        st = run.wf.stages[j]
        att = Attempt(run, st, lease.attempt, lease.token, self.now)
        att.rerun = j in run.ever_committed
        if j:
            prev = run.sched.attempt_of(f"s{j - 1}")
            for name, a in lease.speculative:
                if name == f"s{j - 1}":
                    prev = a
            att.parent = run.attempts.get((j - 1, prev))
        run.attempts[(j, lease.attempt)] = att
        run.last_attempt[j] = max(run.last_attempt.get(j, 0), lease.attempt)
        run.worker = att
        self.attempts.append(att)
        self._try_begin(att)

    def _try_begin(self, att: Attempt) -> None:
        """Start computing, unless the infrastructure pauses the stage (then wait to be woken)."""
        now = self.now
        slot = (att.attempt - 1) % DRAWS
        node = int(att.stage.u_node[slot] * max(1, self.p.nodes_per_pool))
        plan = None
        if self.infra is not None:
            plan = self.infra.plan(att.run, att.stage, node)
            if plan.pause is not None:
                if math.isnan(att.paused_since):
                    att.paused_since, att.pause_cause = now, plan.pause
                return
            node = plan.node
        if not math.isnan(att.paused_since):
            self._account_pause(att, now)
        self._resolve(att, node, plan)
        att.begin = now
        self.push(now + att.stage.hours, DONE, att)

    def _account_pause(self, att: Attempt, until: float) -> None:
        hours = until - att.paused_since
        self.out.delay["paused"] += hours
        if att.pause_cause < 0:
            self.out.false_alarm_hours += hours
        att.paused_since = math.nan

    def _hold(self, run: Run, until: float) -> None:
        """Owners hold the workflow until ``until`` (investigating, fixing)."""
        start = max(run.hold_until, self.now)
        if until > start:
            self.out.delay["held"] += until - start
            run.hold_until = until

    def wake_paused(self) -> None:
        """Re-check every paused stage (the infrastructure's state changed)."""
        for run in list(self.runs.values()):
            if run.worker is not None and run.worker.state == RUNNING and not run.worker.started:
                self._try_begin(run.worker)

    # -- what a stage computes ----------------------------------------------
    def _latest(self, asset: int) -> Version:
        return self.versions[asset][-1]

    def version_for(self, run: Run, asset: int) -> Version:
        """The version of ``asset`` a stage of ``run`` starting now uses, without infrastructure."""
        vs = self.versions[asset]
        if self.fleet.assets[asset].kind == "code":
            return vs[-1]
        return vs[run.pins.get(asset, run.env.get(asset, vs[-1].no)) - 1]

    def node_version(self, pool: int, node: int, epoch_of: int | None = None) -> int | None:
        """The compute "version" of ``node``: the node and its epoch (a fault, a repair start a new one).

        With ``epoch_of`` (a compute error), the version the node had while
        that fault was on it, or None if it has not happened yet.
        """
        if epoch_of is not None:
            epoch = self.fault_epoch.get(epoch_of)
            return None if epoch is None else node + 1 + 1000 * epoch
        return node + 1 + 1000 * self.epoch.get((pool, node), 0)

    def fault_at(self, pool: int, version: int) -> int | None:
        """The compute error a node version carries, if any."""
        node, epoch = (version - 1) % 1000, (version - 1) // 1000
        e = self.faults.get(pool, {}).get(node)
        if e is not None and self.fault_epoch.get(e) == epoch:
            return e
        for e2, ep in self.fault_epoch.items():
            err = self.fleet.errors[e2]
            if err.asset == pool and err.node == node and ep == epoch:
                return e2
        return None

    def _resolve(self, att: Attempt, node: int, plan) -> None:
        p, st, run = self.p, att.stage, att.run
        slot = (att.attempt - 1) % DRAWS
        blind = self.fleet.blind
        own: set[int] = set()
        versions = []
        level = 0.0
        for i, a in enumerate(st.assets):
            if a not in self.versions:
                continue
            v = self.versions[a][plan.versions[a] - 1] if plan is not None else self.version_for(run, a)
            versions.append((a, v.no))
            level += v.level
            if v.errors and st.manifest[i] < (1.0 if self.fleet.assets[a].kind == "code" else p.p_manifest):
                own |= v.errors
        pool = run.wf.pool
        bad = self.faults.get(pool, {})
        if node in bad and node not in run.avoid:
            own.add(bad[node])
        versions.append((pool, self.node_version(pool, node)))
        origins = set(own)
        shift = sum(self.fleet.errors[e].bias for e in own if self.error_kinds[e] != blind)
        if att.parent is not None and att.parent.origins and st.u_inherit[0] < p.p_inherit_chain:
            origins |= att.parent.origins
            shift += att.parent.shift
        if st.consume >= 0:
            uplift = p.reuse_uplift if self.infra is not None else 1.0
            if st.u_consume < min(1.0, p.p_consume * uplift):
                r = run.read.get(st.j)
                if r is None or (self.infra is not None and not self.infra.consumable(self.results[r])):
                    r = self._claim_for(run, st.consume)
                if r is not None:
                    src = self.results[r]
                    att.consumed = r
                    if src.origins and st.u_inherit[1] < p.p_inherit_claim:
                        origins |= src.origins
                        shift += src.shift
                        att.cross = True
        att.versions = tuple(versions)
        att.node = node
        att.own = frozenset(own)
        att.origins = frozenset(origins)
        att.shift = shift
        att.value = st.noise[slot] + level + shift
        att.sandbox = plan.sandbox if plan is not None else ()

    def _claim_for(self, run: Run, key: int) -> int | None:
        """The result whose claim under ``key`` a stage of ``run`` reads: the newest usable one."""
        for r in reversed(self.claims.get(key, ())):
            res = self.results[r]
            if res.wf == run.wf.idx or res.retracted:
                continue
            if self.infra is not None and not self.infra.consumable(res):
                continue
            return r
        return None

    # -- reports to the scheduler ---------------------------------------------
    def _on_done(self, att: Attempt) -> None:
        if att.state != RUNNING:
            return
        run = att.run
        att.end = self.now
        att.state = FINISHED
        run.worker = None
        if self.infra is not None:
            self.infra.on_finished(att)
        self._apply(run, run.sched.finished(att.token, self.now))
        self.pump(run)

    def _on_verdict(self, payload) -> None:
        run, token = payload
        if run.vlease is None or run.vlease[0] != token:
            return
        _, att, _, _, auto = run.vlease
        self._end_verification(run, partial=False)
        slot = (att.attempt - 1) % DRAWS
        u = att.stage.u_verify[slot]
        if auto:
            approve = True
        elif att.origins:
            miss = 1.0
            for e in att.origins:
                kind = self.error_kinds[e] if e in att.own else "claim"
                miss *= 1.0 - self.p.p_detect.get(kind, 0.0)
            approve = u >= 1.0 - miss
        else:
            approve = u >= self.p.p_false_reject
        actions = run.sched.verdict(token, self.now, approve, "" if approve else "verifier rejected")
        if self.infra is not None and not auto:
            self.infra.on_verified(run, att, not approve)
        if not approve:
            self._close(att, "squashed")
            self._refuted(run, att)
        self._apply(run, actions)
        self.pump(run)

    def _end_verification(self, run: Run, partial: bool) -> None:
        _, _, start, cost, _ = run.vlease  # type: ignore[misc]
        self.out.compute["verification"] += min(cost, self.now - start) if partial else cost
        run.vlease = None

    def _apply(self, run: Run, actions) -> None:
        for a in actions:
            if isinstance(a, Commit):
                self._commit(run, run.attempts[(_stage_of(a.task), a.attempt)])
            elif isinstance(a, Squash):
                att = run.attempts.get((_stage_of(a.task), a.attempt))
                if att is not None and att.state != CLOSED:
                    self._close(att, "squashed")
            elif isinstance(a, Cancel):
                if a.agent.startswith("v") and run.vlease is not None and run.vlease[0] == a.token:
                    self._end_verification(run, partial=True)
            elif isinstance(a, Fail):
                run.failed = True
            elif isinstance(a, RunFinished):
                run.done = True
                if run.failed or a.status == "failed":
                    run.failed = True

    def _close(self, att: Attempt, category: str) -> None:
        """End an attempt that will not commit; its compute so far is ``category``."""
        run = att.run
        if att.state == RUNNING:
            if att.started:
                att.end = self.now
            elif not math.isnan(att.paused_since):
                self._account_pause(att, self.now)
            if run.worker is att:
                run.worker = None
        if att.started:
            self.out.compute[category] += att.end - att.begin
        att.state = CLOSED

    def _commit(self, run: Run, att: Attempt) -> None:
        j = att.stage.j
        origins = att.origins
        parent = run.committed.get(j - 1, -1) if j else -1
        r = Record(
            idx=len(self.results), wf=run.wf.idx, stage=j, attempt=att.attempt, time=self.now,
            key=att.stage.key, value=att.value, origins=origins, root=min(origins) if origins else -1,
            versions=att.versions, node=att.node, consumed=att.consumed, parent=parent, cross=att.cross,
            rerun=att.rerun, hours=att.end - att.begin, shift=att.shift,
        )
        self.results.append(r)
        self.out.compute["rerun" if att.rerun else "work"] += att.end - att.begin
        att.state = CLOSED
        run.committed[j] = r.idx
        run.ever_committed.add(j)
        if r.consumed >= 0:
            run.read[j] = r.consumed
        self.claims.setdefault(r.key, []).append(r.idx)
        if self.infra is not None:
            self.infra.on_commit(r, att)

    # -- owners' reactions ------------------------------------------------------
    def _refuted(self, run: Run, att: Attempt) -> None:
        """Owners react to a refutation: fix their own bug, or investigate and maybe find the shared one."""
        p = self.p
        now = self.now
        slot = (att.attempt - 1) % DRAWS
        local = [e for e in att.own if self.error_kinds[e] == "local"]
        if local:
            e = local[0]
            self.detect(e, now)
            self._hold(run, now + p.local_fix_hours)
            self.local_fix(e, now + p.local_fix_hours)
            self.push(now, OWNRERUN, (run.wf.idx, e))
            return
        found = now + p.investigation_hours
        self._hold(run, found)
        if not att.origins or att.stage.u_aux[slot] >= p.p_root_cause:
            return
        e = min(att.own) if att.own else min(att.origins)
        err = self.fleet.errors[e]
        self.detect(e, found)
        self.push(found, OWNRERUN, (run.wf.idx, e))
        if err.kind == "local":
            self.local_fix(e, found + p.local_fix_hours)
            return
        if err.kind == "compute":
            run.avoid.add(err.node)
        else:
            run.pins[err.asset] = self._known_good(err.asset, e)
        if self.infra is not None:
            self.infra.on_root_cause(e, found)
        self.report(e, found)

    def _on_own_rerun(self, payload: tuple[int, int]) -> None:
        """Owners who found error ``e`` withdraw and re-run their own results it touched.

        They know their own workflow: the stages that used a version or node
        carrying ``e``, that read a claim they now know is wrong, or (their
        own bug) the buggy stage; everything after the first of them is
        re-run. Nobody else is told: that is what the infrastructure adds.
        """
        wf, e = payload
        run = self.runs.get(wf)
        if run is None:
            return
        err = self.fleet.errors[e]
        hit = []
        for j, r in run.committed.items():
            res = self.results[r]
            if res.retracted:
                continue
            if err.kind == "local" and err.wf == wf:
                touched = j >= err.stage
            elif err.kind == "compute":
                touched = (err.asset, self.node_version(err.asset, err.node, epoch_of=e)) in res.versions
            else:
                touched = any(a == err.asset and e in self.versions[a][v - 1].errors for a, v in res.versions)
            if touched or (res.consumed >= 0 and e in self.results[res.consumed].origins):
                hit.append(j)
        if not hit:
            return
        first = min(hit)
        for j, r in run.committed.items():
            if j >= first:
                self.results[r].retracted = True
        self.restart(run, first)

    def _known_good(self, asset: int, e: int) -> int:
        good = [v.no for v in self.versions[asset] if not v.errors]
        return good[-1] if good else 1

    def local_fix(self, e: int, when: float) -> None:
        """The owners of the workflow with local bug ``e`` ship a fix at ``when``."""
        self.push(when, LOCALFIX, e)

    def detect(self, e: int, when: float) -> None:
        """Planted error ``e`` is correctly identified at ``when`` (first time counts)."""
        if e not in self.detected or when < self.detected[e]:
            self.detected[e] = when

    def report(self, e: int, when: float, fix_after: float | None = None) -> None:
        """Error ``e`` is reported upstream at ``when``; its fix follows (once)."""
        if e in self.reported or e in self.fixed:
            return
        self.reported.add(e)
        self.push(when + (self.p.fix_hours if fix_after is None else fix_after), FIX, e)

    def _on_external(self, err) -> None:
        self.detect(err.idx, self.now)
        if self.infra is not None:
            self.infra.on_advisory(err)
        self.report(err.idx, self.now)

    def _new_version(self, asset: int, drop: int | None = None, add: int | None = None, shift: float = 0.0) -> int:
        vs = self.versions[asset]
        errors = set(vs[-1].errors)
        if drop is not None:
            errors.discard(drop)
        if add is not None:
            errors.add(add)
        vs.append(Version(len(vs) + 1, self.now, frozenset(errors), vs[-1].level + shift))
        return vs[-1].no

    def _on_local_fix(self, e: int) -> None:
        if e in self.fixed:
            return
        self.fixed.add(e)
        err = self.fleet.errors[e]
        self._new_version(err.asset, drop=e)
        if self.infra is not None:
            self.infra.on_release(err.asset, self.versions[err.asset][-1].no)
            self.infra.on_fixed(err)
        run = self.runs.get(err.wf)
        if run is not None:
            self.pump(run)

    def _on_fault(self, err) -> None:
        key = (err.asset, err.node)
        self.epoch[key] = self.epoch.get(key, 0) + 1
        self.fault_epoch[err.idx] = self.epoch[key]
        self.faults.setdefault(err.asset, {})[err.node] = err.idx

    def _on_fix(self, e: int) -> None:
        """A fixed version of the asset carrying ``e`` is released (or the bad node repaired)."""
        if e in self.fixed:
            return
        err = self.fleet.errors[e]
        self.fixed.add(e)
        if err.kind == "compute":
            self.faults.get(err.asset, {}).pop(err.node, None)
            key = (err.asset, err.node)
            self.epoch[key] = self.epoch.get(key, 0) + 1
            if self.infra is not None:
                self.infra.on_fixed(err)
            self.wake_paused()
            return
        new = self._new_version(err.asset, drop=e)
        vs = self.versions[err.asset]
        for run in self.runs.values():
            if run.done:
                continue
            cur = run.env.get(err.asset)
            if cur is not None and e in vs[cur - 1].errors and run.wf.u_heed[e % len(run.wf.u_heed)] < self.p.p_heed:
                run.env[err.asset] = new
            if err.asset in run.pins:
                del run.pins[err.asset]
                run.env[err.asset] = new
        if self.infra is not None:
            self.infra.on_release(err.asset, new)
            self.infra.on_fixed(err)

    def _on_release(self, payload) -> None:
        asset, e, shift = payload
        new = self._new_version(asset, add=e if e >= 0 else None, shift=shift)
        if self.infra is not None:
            self.infra.on_release(asset, new)

    def retract(self, ids: list[int], false_alarm: bool = False, uses: frozenset[tuple[int, int]] = frozenset()) -> None:
        """Retract committed results and re-run, from the first affected stage, the workflows that hold them.

        Attempts not yet committed that read a retracted claim, or used one
        of the asset versions ``uses``, are abandoned and re-run as well.
        """
        first: dict[int, int] = {}
        hit = set(ids)
        for r in ids:
            res = self.results[r]
            if res.retracted:
                continue
            res.retracted = True
            if false_alarm:
                self.out.false_alarm_hours += res.hours
            run = self.runs.get(res.wf)
            if run is not None and run.committed.get(res.stage) == r:
                first[res.wf] = min(first.get(res.wf, res.stage), res.stage)
        for run in list(self.runs.values()):
            for att in run.attempts.values():
                if att.state != CLOSED and att.started and (att.consumed in hit or not uses.isdisjoint(att.versions)):
                    first[run.wf.idx] = min(first.get(run.wf.idx, att.stage.j), att.stage.j)
        for wf, j in sorted(first.items()):
            self.restart(self.runs[wf], j)

    # -- the end ------------------------------------------------------------------
    def _finish(self) -> Outcome:
        now = self.now
        for att in self.attempts:
            if att.state == RUNNING and not att.started and not math.isnan(att.paused_since):
                self._account_pause(att, now)
            if att.state != CLOSED and att.started:
                end = att.end if att.state == FINISHED else now
                self.out.compute["in_flight"] += end - att.begin
        summary = summarize(self.strategy, self.results, self.error_kinds)
        out = self.out
        for name in ("results", "commits", "corrupt", "corrupt_commits", "standing", "contained", "consumed_corrupt"):
            setattr(out, name, getattr(summary, name))
        out.cascade, out.reach, out.error_kinds = summary.cascade, summary.reach, summary.error_kinds
        out.standing_reach = summary.standing_reach
        planted = {e.idx: e.time for e in self.fleet.errors}
        out.latency = {e: max(0.0, t - planted[e]) for e, t in self.detected.items() if t <= self.horizon}
        out.workflows_done = sum(1 for r in self.runs.values() if r.done and not r.failed)
        out.workflows_failed = sum(1 for r in self.runs.values() if r.failed)
        spent = 0.0
        for att in self.attempts:
            if att.started:
                spent += (att.end if not math.isnan(att.end) else now) - att.begin
        out.attempt_compute = spent
        reconcile(out, self.results)
        return out


def simulate(fleet: Fleet, strategy: str) -> Outcome:
    """Run ``fleet`` under ``strategy`` (one of :data:`~headwater.study.params.STRATEGIES`)."""
    return Simulation(fleet, strategy).run()
