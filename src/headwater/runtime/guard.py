"""Oversight at dispatch: the runtime side of policies, pins, canaries and sandboxes.

The coordinator owns one :class:`DispatchGuard` per run and asks it, for
each run lease, whether the task may be dispatched now. The guard predicts
which shared asset versions the task will use -- its declared ``uses``, the
asset references written in its code, the uses its previous checkpoint
recorded, the distributions its code imports (:func:`scan_task`) and the
compute pool it would run on -- plus the versions that reach it through
its inputs, and hands them to the pure core
(:func:`headwater.oversight.decide`). What comes back is applied here:

* a task that a policy pauses (``throttle`` 0), or that a cap keeps waiting,
  is *held*. Caps are fleet-wide: a cap counts the tasks running now that
  use the asset in every run sharing the store (each admission of a capped
  task is recorded, and counts while its task row holds the lease), and a
  rule scoped by tags or campaign counts only those, which makes it that
  campaign's or tag's quota. A held task's lease stays with the guard,
  renewed, and is offered again as the oversight state changes, while every task of this run and of other
  runs that is not exposed keeps running. When nothing but held work is
  left, the run stops as ``interrupted`` (after waiting ``hold`` seconds),
  to be resumed once the asset is cleared;
* a sandboxed task runs, and its checkpoint is marked ``untrusted``: its
  claims are never served to other workflows and its cache entries are
  never reused; tasks of the run built on it are sandboxed too;
* reroutes and pins take effect inside the task, where
  :class:`OversightResolver` (the run's claim reader) resolves every
  ``ctx.use("claim:...")`` and ``ctx.call("lib:...")`` with the same rules;
* cache hits are refused when built on a degraded or retracted version, on
  a sandboxed result, or on a claim version other than the one the task
  would use now;
* a degraded or retracted compute pool gets no new tasks; when the run
  places work by pool (:meth:`DispatchGuard.placing`), a task is admitted
  only on an agent of a pool :meth:`DispatchGuard.allowed` names, and is
  held, naming its pools and what is wrong with each, when there is none;
* new versions of a claim with an open breaker (or of a gated asset) are
  registered as revalidating, behind a canary, before anyone can use them;
* claims published from a degraded or retracted version, or from a tainted
  claim, are suspect from the start;
* when the run ends, the monitors run: inconsistency and output shift over
  the claims it published, compared with other workflows', then, time-boxed
  and only while the fleet is small enough, redundancy, clustered
  verification failures, concentration and coverage; their signals go
  through the breaker. A canary run's canaries are judged.

Every policy effect -- enforced, staged out or shadow -- goes to the audit
log once per task and run, naming the policy, its version, its mode and the
status that matched.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from headwater.oversight.engine import Decision, Snapshot, decide, resolve
from headwater.oversight.policy import Dependent, Exposure, Running, evaluate
from headwater.oversight.refs import parse_ref
from headwater.oversight.registry import Implementations, implementations
from headwater.oversight.routing import Candidate, Choice, choose
from headwater.oversight.status import BAD_STATES, AssetStatus, AuditRecord
from headwater.runtime.context import TaskOutcome, scan_task
from headwater.runtime.executors import ClaimReader
from headwater.runtime.fleet import Fleet
from headwater.store.assets import CLAIM_VERSION_LEN
from headwater.store.records import AssetUse, CheckpointRecord, RunRecord

if TYPE_CHECKING:
    from headwater.schedule import Lease, Scheduler
    from headwater.spec import Workflow
    from headwater.store import Store

REFRESH_SECONDS = 0.5
"""How stale the oversight snapshot a decision is made against may be."""

MONITOR_WINDOW = 200
"""When a run ends, the inconsistency monitor compares its claims with those
of the newest this many runs per key (``headwater monitors run`` sees all)."""


class OversightResolver(ClaimReader):
    """The claim reader of one run: resolves claims and shared calls through oversight.

    Called as ``resolver(key)`` by ``ctx.use("claim:KEY")``: returns
    ``(value, version)`` of the version routing picks (never a retracted
    one, never a sandboxed result, the revalidating candidate only for
    canary workflows, pins and policy reroutes applied), or None.
    ``route`` and ``alternative`` serve ``ctx.call``.
    """

    def __init__(self, store_url: str, root: str, dependent: Dependent,
                 refresh: float = REFRESH_SECONDS) -> None:
        super().__init__(store_url, root)
        self.dependent = dependent
        self.refresh = refresh
        self._snap: Snapshot | None = None
        self._snap_at = 0.0

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "dependent": self.dependent, "refresh": self.refresh,
                "_snap": None, "_snap_at": 0.0}

    def _open(self) -> Store:
        if self._store is None:
            from headwater.store import open_store

            self._store = open_store(self.store_url, root=self.root)
        return self._store

    def snapshot(self) -> Snapshot:
        now = time.time()
        if self._snap is None or now - self._snap_at >= self.refresh:
            self._snap, self._snap_at = self._open().oversight_snapshot(), now
        return self._snap

    def candidates(self, key: str) -> tuple[list[Candidate], dict[str, Any]]:
        values: dict[str, Any] = {}
        cands: list[Candidate] = []
        for v in self._open().claim_versions(key):
            if v.untrusted:
                continue
            values[v.version] = v.value
            cands.append(Candidate(key, v.version, order=v.created_at))
        return cands, values

    def __call__(self, key: str) -> tuple[Any, str] | None:
        cands, values = self.candidates(key)
        if not cands:
            return None
        res = resolve(self.snapshot(), self.dependent, "claim", cands)
        if res is None:
            return None
        return values[res.choice.version], res.choice.version

    def route(self, kind: str, cands: Sequence[Candidate]) -> Choice | None:
        res = resolve(self.snapshot(), self.dependent, kind, cands)
        return None if res is None else res.choice

    def alternative(self, kind: str, cands: Sequence[Candidate], current: Choice) -> Choice | None:
        snap = self.snapshot()
        others = [c for c in snap.with_statuses(kind, cands) if c.name != current.name]
        return choose(kind, others, tags=self.dependent.tags, pins=snap.pins)


@dataclass
class _Held:
    agent: str
    lease: Lease
    reason: str


class DispatchGuard:
    """Applies oversight decisions for one run; see the module docstring."""

    def __init__(self, store: Store, wf: Workflow, run: RunRecord, sched: Scheduler | None = None, *,
                 hardware: str = "local", hold: float = 0.0, refresh: float = REFRESH_SECONDS,
                 registry: Implementations | None = None, clock: Callable[[], float] = time.time,
                 previous: dict[str, CheckpointRecord] | None = None) -> None:
        self.store, self.wf, self.run, self.sched = store, wf, run, sched
        self.hardware = hardware
        self.hold = hold
        self.refresh = refresh
        self.registry = registry or implementations
        self.clock = clock
        self.dependent = Dependent(run.id, wf.name, tags=frozenset(run.tags), campaign=run.campaign)
        self.fleet = Fleet(store, clock=clock)
        self._snap: Snapshot | None = None
        self._snap_at = -1e18
        # The newest committed checkpoint per task in earlier runs, as the
        # coordinator loaded it for spec diffs (read from the store on first
        # use when not handed over): the uses they recorded are predicted.
        self._previous: dict[str, CheckpointRecord] | None = previous
        self.held: dict[int, _Held] = {}
        self.paused: dict[str, str] = {}
        self._released_at = 0.0
        self._since_held: float | None = None
        self._new_holds = 0
        self.lineage: dict[str, frozenset[str]] = {}
        self.untrusted: set[str] = set()
        self.sandboxed: dict[str, str] = {}
        self.exposure_of: dict[int, set[str]] = {}
        self._fleet: list[Running] | None = None
        self._fleet_at = -1e18
        self.pool_of: dict[str, Choice] = {}
        self.pools: dict[str, frozenset[str]] | None = None
        self._allowed: dict[str, frozenset[str]] = {}
        self._allowed_snap: Snapshot | None = None
        self._audited: set[tuple] = set()
        self._claims_seen: set[str] = set()
        self._published: list = []
        self._published_by: set[str] = set()

    # ------------------------------------------------------------ state

    def snapshot(self, now: float | None = None) -> Snapshot:
        now = self.clock() if now is None else now
        if self._snap is None or now - self._snap_at >= self.refresh:
            self._snap, self._snap_at = self.store.oversight_snapshot(), now
        return self._snap

    def resolver(self, store_url: str, root: str) -> OversightResolver:
        """The claim reader tasks of this run resolve claims and calls with."""
        return OversightResolver(store_url, root, self.dependent, self.refresh)

    @property
    def holding(self) -> bool:
        return bool(self.held)

    # --------------------------------------------------------- prediction

    def _previous_uses(self, task: str) -> list[AssetUse]:
        if self._previous is None:
            self._previous = self.store.latest_checkpoints(self.wf.name, exclude_run=self.run.id)
        ck = self._previous.get(task)
        return [u for u in ck.uses if u.direction == "consumed"] if ck else []

    def predicted(self, task: str, pool: str | None = None) -> dict[str, tuple[str, list[Candidate]]]:
        """``kind:name`` -> (kind, candidates) for every use the task is expected to make;
        ``pool`` is the pool of the agent it would run on, when the run places work."""
        spec = self.wf.tasks[task]
        scan = scan_task(spec.fn)
        refs = list(spec.uses) + list(scan.refs)
        refs += [f"{u.kind}:{u.name}" for u in self._previous_uses(task) if u.kind != "compute"]
        out: dict[str, tuple[str, list[Candidate]]] = {}
        for ref in dict.fromkeys(refs):
            try:
                r = parse_ref(ref)
            except ValueError:
                continue
            if r.kind == "claim":
                cands = self._claim_candidates(r.name)
                if cands:
                    out[f"claim:{r.name}"] = ("claim", cands)
            elif r.kind == "lib":
                group = r.name.split("/", 1)[0]
                if group in self.registry.assets():
                    out[f"lib:{group}"] = ("lib", self.registry.candidates(group))
                elif "/" not in r.name:
                    out[f"lib:{r.name}"] = ("lib", [Candidate(r.name, r.version or _installed(r.name))])
            else:
                out[f"{r.kind}:{r.name}"] = (r.kind, [Candidate(r.name, r.version or "unversioned")])
        for dist, version in scan.libraries.items():
            out.setdefault(f"lib:{dist}", ("lib", [Candidate(dist, version)]))
        out["compute:*"] = ("compute", self._pool_candidates(task, pool))
        return out

    def _claim_candidates(self, key: str) -> list[Candidate]:
        return [Candidate(key, v.version, order=v.created_at)
                for v in self.store.claim_versions(key) if not v.untrusted]

    def _inherited(self, parents: Sequence[str], snap: Snapshot) -> list[Exposure]:
        missing = [p for p in parents if p not in self.lineage]
        if missing:
            self.lineage.update(self.store.lineage_assets(missing))
            marks = self.store.marks(missing)
            self.untrusted.update(c for c, (m, _) in marks.items() if m == "untrusted")
        out: list[Exposure] = []
        for p in parents:
            for ref in sorted(self.lineage.get(p, ())):
                kind, _, rest = ref.partition(":")
                name, _, version = rest.rpartition("@")
                status = snap.status(kind, name, version)
                if status is not AssetStatus.TRUSTED:
                    out.append(Exposure(kind, name, version, status, via=f"input {p[:12]}"))
        return out

    def decide(self, task: str, parents: Sequence[str], now: float | None = None,
               pool: str | None = None) -> Decision:
        """The oversight decision for dispatching ``task`` built on ``parents``
        (on an agent of ``pool``, when the run places work)."""
        snap = self.snapshot(now)
        dep = Dependent(self.run.id, self.wf.name, task, self.dependent.tags, self.run.campaign)
        uses = self.predicted(task, pool)
        # A degraded or retracted pool takes no new work: only healthy pools are candidates.
        kind, pools = uses.pop("compute:*")
        healthy = [c for c in snap.with_statuses(kind, pools) if c.status not in BAD_STATES]
        if healthy:
            uses["compute:*"] = (kind, healthy)
        return decide(snap, dep, uses, self._inherited(parents, snap))

    # ---------------------------------------------------------- placement

    def placing(self, pools: Mapping[str, Iterable[str]]) -> None:
        """The run places work by compute pool: ``pools`` maps every pool that
        has agents in this run to the roles its agents hold. From then on a
        run lease is admitted only on an agent of a pool :meth:`allowed`
        names for its task (without this call every agent serves every pool,
        and the pool a task records is the one :meth:`decide` chose)."""
        self.pools = {name: frozenset(roles) for name, roles in pools.items()}
        self._allowed, self._allowed_snap = {}, None

    def allowed(self, task: str, now: float | None = None) -> frozenset[str] | None:
        """The pools whose agents may run ``task`` now; None when the run does not
        place work. A task that names pools runs on the first of them (in the
        order given, after pins and policy reroutes) that is healthy and has an
        agent of its role; one that names none, on any such pool of the run.
        Empty when there is none: the task is held. Computed once per task and
        oversight snapshot."""
        if self.pools is None:
            return None
        snap = self.snapshot(now)
        if snap is not self._allowed_snap:
            self._allowed, self._allowed_snap = {}, snap
        found = self._allowed.get(task)
        if found is None:
            found = self._allowed[task] = self._place(task, snap)
        return found

    def _staffed(self, task: str) -> list[str]:
        """The run's pools with an agent of ``task``'s role, in the order given."""
        role = self.wf.tasks[task].role
        return [name for name, roles in (self.pools or {}).items() if role in roles]

    def _pool_candidates(self, task: str, pool: str | None = None) -> list[Candidate]:
        """The compute pools ``task`` may use, in preference order: those it
        names (or ``local``) when the run does not place work; else those of
        them with agents of its role, or -- naming none -- ``pool``, the pool
        of the agent it goes to (every staffed pool of the run without one)."""
        named = list(self.wf.tasks[task].pools)
        if self.pools is None:
            names = named or ["local"]
        elif named:
            staffed = set(self._staffed(task))
            names = [p for p in named if p in staffed]
        else:
            names = [pool] if pool is not None else self._staffed(task)
        return [Candidate(p, self.hardware, rank=i) for i, p in enumerate(names)]

    def _place(self, task: str, snap: Snapshot) -> frozenset[str]:
        dep = Dependent(self.run.id, self.wf.name, task, self.dependent.tags, self.run.campaign)
        cands = [c for c in snap.with_statuses("compute", self._pool_candidates(task)) if c.status not in BAD_STATES]
        if self.wf.tasks[task].pools:
            res = resolve(snap, dep, "compute", cands) if cands else None
            return frozenset() if res is None else frozenset({res.choice.name})
        if snap.quiet:
            return frozenset(c.name for c in cands)
        return frozenset(c.name for c in cands if resolve(snap, dep, "compute", [c]) is not None)

    def _no_pool(self, task: str, snap: Snapshot, pool: str | None = None) -> str:
        """Why ``task`` cannot be placed: each pool it may use and what is wrong with it."""
        allowed = self.allowed(task) if self.pools is not None else None
        if allowed:
            return f"task {task!r} runs on pool {', '.join(sorted(allowed))}, not on pool {pool}"
        spec = self.wf.tasks[task]
        named = list(spec.pools) or (list(self.pools) if self.pools is not None else ["local"])
        why = []
        for p in named:
            status = snap.status("compute", p, self.hardware)
            if status in BAD_STATES or status is AssetStatus.REVALIDATING:
                why.append(f"{p} ({status.name.lower()})")
            elif self.pools is not None and p not in self.pools:
                why.append(f"{p} (no agents in this run)")
            elif self.pools is not None and spec.role not in self.pools[p]:
                why.append(f"{p} (no agent with role {spec.role!r})")
            else:
                why.append(f"{p} (not served by policy)")
        if not named:
            why.append("the run has no pools")
        return f"no healthy compute pool for task {task!r}: {', '.join(why)}"

    # ----------------------------------------------------------- dispatch

    def admit(self, agent: str, lease: Lease, parents: Sequence[str], now: float, pool: str | None = None) -> bool:
        """Whether ``lease`` (a run lease) may be dispatched now to ``agent`` (of
        ``pool``, when the run places work); if not, it is held."""
        task = lease.task
        snap = self.snapshot(now)
        if self.pools is not None and pool not in (self.allowed(task, now) or ()):
            self._hold(agent, lease, self._no_pool(task, snap, pool), now)
            return False
        sandbox_from = next((p for p in parents if p in self.untrusted), None)
        if snap.quiet and not sandbox_from:
            self._admitted(lease, task, None, now)
            return True
        decision = self.decide(task, parents, now, pool)
        self._audit_effects(decision, task, now)
        reason = None
        causes = [e.exposure.ref for e in decision.directive.enforced if e.action.kind == "throttle"]
        if "compute:*" not in decision.resolutions:
            reason = self._no_pool(task, snap, pool)
        elif decision.pause:
            reason = "; ".join(r for r in decision.directive.reasons() if ": pause (" in r) or "paused by policy"
        elif decision.caps:
            over = self._take_slot(lease, decision, now)
            if over is not None:
                asset, cap, n = over
                reason = f"{asset} is throttled to {cap} running dependent(s) ({n} running across the fleet)"
        if reason is not None:
            self._hold(agent, lease, reason, now, causes)
            return False
        if decision.sandbox or sandbox_from:
            why = "; ".join(e for e in decision.directive.reasons() if "sandbox" in e) or \
                f"built on sandboxed result {sandbox_from[:12] if sandbox_from else ''}"
            if task not in self.sandboxed:
                self._audit(AuditRecord(ts=now, actor="runtime", action="sandbox", subject=f"run:{self.run.id}",
                                        reason=why, run_id=self.run.id, task=task))
            self.sandboxed[task] = why
        self._admitted(lease, task, decision, now)
        return True

    def _admitted(self, lease: Lease, task: str, decision: Decision | None, now: float) -> None:
        self.held.pop(lease.token, None)
        self.paused.pop(task, None)
        if decision is None:
            return
        pool = decision.resolutions.get("compute:*")
        if pool is not None:
            self.pool_of[task] = pool.choice

    def _hold(self, agent: str, lease: Lease, reason: str, now: float, causes: Sequence[str] = ()) -> None:
        first = lease.token not in self.held
        self.held[lease.token] = _Held(agent, lease, reason)
        self._new_holds += first
        if first or self.paused.get(lease.task) != reason:
            self.paused[lease.task] = reason
            causes = list(dict.fromkeys(causes))
            self._audit(AuditRecord(ts=now, actor="runtime", action="hold", subject=f"run:{self.run.id}",
                                    reason=reason, cause=causes[0] if causes else None, run_id=self.run.id,
                                    task=lease.task, data={"exposures": causes}))
        if self._since_held is None:
            self._since_held = now

    def release(self, now: float) -> dict[str, list[Lease]]:
        """Held leases to offer again (every ``refresh`` seconds); renews them."""
        if not self.held or now - self._released_at < self.refresh:
            return {}
        self._released_at = now
        out: dict[str, list[Lease]] = defaultdict(list)
        for token, h in list(self.held.items()):
            if self.sched is not None and not self.sched.renew(token, now):
                del self.held[token]
                continue
            out[h.agent].append(h.lease)
        return dict(out)

    def done(self, token: int) -> None:
        """A dispatched lease finished (its cap slot is free)."""
        self.exposure_of.pop(token, None)

    def _running(self, now: float) -> list[Running]:
        """Tasks running now that use capped assets: this run's, known here at
        once, and every other run's from the store (at most ``refresh`` old)."""
        if self._fleet is None or now - self._fleet_at >= self.refresh:
            self._fleet, self._fleet_at = self.store.running_exposures(now, exclude_run=self.run.id), now
        return self._own() + self._fleet

    def _own(self) -> list[Running]:
        return [Running(self.dependent, frozenset(assets)) for assets in self.exposure_of.values()]

    def _take_slot(self, lease: Lease, decision: Decision, now: float) -> tuple[str, int, int] | None:
        """Take a slot under every cap of ``decision`` for ``lease``, or say which
        cap is full (``(asset, cap, running)``, as :meth:`Directive.over_cap`).

        A cap already full in the cached fleet view (:meth:`_running`) holds
        the task without a store round trip. Otherwise the store decides and
        records the admission in one step (:meth:`Store.admit_exposure`),
        counting this run's running tasks and every other run's as they are
        at that moment, so runs admitting at the same instant, here or on
        other coordinators, never take the same last slot; the fleet view it
        read refreshes the cache.
        """
        directive = decision.directive
        over = directive.over_cap(self._running(now))
        if over is not None:
            return over
        own = self._own()
        exposed = {f"{e.kind}:{e.name}" for e in decision.exposures()}
        over, self._fleet = self.store.admit_exposure(
            self.run.id, lease.task, lease.attempt, lease.token, exposed, now,
            lambda fleet: directive.over_cap(own + fleet))
        self._fleet_at = now
        if over is None:
            self.exposure_of[lease.token] = exposed
        return over

    def stop_waiting(self, now: float) -> bool:
        """Nothing runs but held work: True to stop the run now (``interrupted``),
        False after a short sleep while the ``hold`` window lasts. Just after
        new work was held, False at once: the agents it would have taken are
        free for other work."""
        if self._new_holds:
            self._new_holds = 0
            return False
        started = self._since_held if self._since_held is not None else now
        if now - started >= self.hold:
            self._audit(AuditRecord(
                ts=now, actor="runtime", action="stop", subject=f"run:{self.run.id}",
                reason="only paused work is left: " + "; ".join(f"{t}: {r}" for t, r in sorted(self.paused.items())),
                run_id=self.run.id, data={"paused": dict(self.paused)}))
            return True
        time.sleep(min(self.refresh, max(0.0, self.hold - (now - started))))
        self._released_at = 0.0
        return False

    # ------------------------------------------------------------- cache

    def cache_ok(self, hit: CheckpointRecord) -> bool:
        """Whether a cached checkpoint may be reused by this run: not built on a
        degraded or retracted version, not sandboxed, and every claim and
        shared implementation it used still resolves to what it used."""
        snap = self.snapshot()
        for u in hit.uses:
            if u.direction == "consumed" and snap.status(u.kind, u.name, u.version) in BAD_STATES:
                return False
        for u in hit.uses:
            if u.direction != "consumed":
                continue
            if u.kind == "claim":
                cands = self._claim_candidates(u.name)
            elif u.kind == "lib" and "/" in u.name and u.name.split("/", 1)[0] in self.registry.assets():
                cands = self.registry.candidates(u.name.split("/", 1)[0])
            else:
                continue
            res = resolve(snap, self.dependent, u.kind, cands) if cands else None
            if res is None or (res.choice.name, res.choice.version) != (u.name, u.version):
                return False
        if self.store.marks([hit.id]):
            return False
        return True

    # -------------------------------------------------------- checkpoints

    def record(self, task: str, outcome: TaskOutcome, pool: str | None = None) -> None:
        """Before a checkpoint is built: add the uses the runtime knows of
        (libraries the task's code uses, the compute pool it ran on: ``pool``,
        its agent's, when the run places work)."""
        have = {(u.kind, u.name) for u in outcome.uses}
        for dist, version in scan_task(self.wf.tasks[task].fn).libraries.items():
            if ("lib", dist) not in have:
                outcome.uses.append(AssetUse("lib", dist, version, "consumed"))
        if not any(u.kind == "compute" for u in outcome.uses):
            chosen = self.pool_of.get(task)
            name = pool or (chosen.name if chosen else (self.wf.tasks[task].pools or ("local",))[0])
            outcome.uses.append(AssetUse("compute", name, self.hardware, "consumed"))

    def written(self, ck: CheckpointRecord, outcome: TaskOutcome, token: int | None = None) -> None:
        """After a checkpoint record is made (before it is stored): lineage,
        sandbox marks, redundancy results and new claim versions."""
        if token is not None:
            self.done(token)
        parents = set()
        for p in ck.parents:
            parents |= self.lineage.get(p, frozenset())
        own = {f"{u.kind}:{u.name}@{u.version}" for u in ck.uses if u.direction == "consumed"}
        self.lineage[ck.id] = frozenset(own | parents)
        now = self.clock()
        if ck.task not in self.sandboxed and ck.status != "failed":
            self._after_the_fact(ck, now)
        if ck.task in self.sandboxed:
            self.untrusted.add(ck.id)
            self.store.mark_checkpoints([ck.id], "untrusted", self.sandboxed[ck.task], now)
        if outcome.redundancy:
            self.store.record_redundancy(self.run.id, ck.task, outcome.redundancy, now)
        snap = self.snapshot(now)
        if snap.gated and ck.status != "failed":
            for u in ck.uses:  # a new version of a gated asset was used (by a canary): it gets a canary
                subject = f"{u.kind}:{u.name}@{u.version}"
                if u.direction == "consumed" and subject not in self._claims_seen and snap.gate_of(u.kind, u.name) \
                        and snap.status(u.kind, u.name, u.version) is AssetStatus.REVALIDATING \
                        and subject not in snap.statuses:
                    self._claims_seen.add(subject)
                    self.fleet.gate_new_version(subject, run_id=self.run.id)
        if ck.status == "failed" or not ck.claims:
            return
        self._published.extend(ck.claims)
        self._published_by.add(ck.id)
        cause = self._taint_source(ck.id, snap)
        for claim in ck.claims:
            subject = f"claim:{claim.key}@{ck.id[:CLAIM_VERSION_LEN]}"
            if subject in self._claims_seen:
                continue
            self._claims_seen.add(subject)
            if cause is not None:
                self.fleet.taint_new(subject, cause[0], cause[1], run_id=self.run.id)
            elif snap.open_breaker("claim", claim.key) or f"claim:{claim.key}" in snap.gated:
                self.fleet.gate_new_version(subject, run_id=self.run.id)

    def _after_the_fact(self, ck: CheckpointRecord, now: float) -> None:
        """A task used a version its dispatch did not foresee (a claim named at
        run time, say): if policies would have paused or sandboxed it, its
        result is sandboxed now."""
        snap = self.snapshot(now)
        if not snap.policies:
            return
        exposures = []
        for ref in sorted(self.lineage.get(ck.id, ())):
            kind, _, rest = ref.partition(":")
            name, _, version = rest.rpartition("@")
            status = snap.status(kind, name, version)
            if status is not AssetStatus.TRUSTED:
                exposures.append(Exposure(kind, name, version, status))
        if not exposures:
            return
        dep = Dependent(self.run.id, self.wf.name, ck.task, self.dependent.tags, self.run.campaign)
        directive = evaluate(snap.policies, dep, exposures, None)
        if directive.pause or directive.sandbox:
            why = "; ".join(directive.reasons())
            self.sandboxed[ck.task] = f"used after dispatch: {why}"
            self._audit(AuditRecord(ts=now, actor="runtime", action="sandbox", subject=f"run:{self.run.id}",
                                    reason=self.sandboxed[ck.task], run_id=self.run.id, task=ck.task))

    def _taint_source(self, ckpt: str, snap: Snapshot) -> tuple[str, AssetStatus] | None:
        """The first version in a checkpoint's lineage that taints its claims:
        a degraded or retracted asset, or a suspect claim."""
        for ref in sorted(self.lineage.get(ckpt, ())):
            kind, _, rest = ref.partition(":")
            name, _, version = rest.rpartition("@")
            status = snap.status(kind, name, version)
            if status in BAD_STATES or (kind == "claim" and status is AssetStatus.SUSPECT):
                return ref, status
        return None

    def finish(self, status: str) -> None:
        """The run ended: the monitors run (:meth:`Fleet.run_end`: the claim
        keys it published, unless all came from sandboxed results, then the
        fleet-wide monitors while the fleet is small enough; their signals go
        through the breaker), and a canary run's canaries are judged."""
        keys = sorted({c.key for c in self._published})
        if self.untrusted.issuperset(self._published_by):
            keys = []
        self.fleet.run_end(keys, run_id=self.run.id, per_key=MONITOR_WINDOW)
        if "canary" in self.dependent.tags and status == "succeeded":
            self.fleet.evaluate_canaries()

    # ------------------------------------------------------------- audit

    def _audit_effects(self, decision: Decision, task: str, now: float) -> None:
        dep = Dependent(self.run.id, self.wf.name, task, self.dependent.tags, self.run.campaign)
        for eff in decision.directive.effects:
            key = (task, eff.policy, eff.policy_version, str(eff.action), eff.exposure.ref, eff.enforced)
            if key in self._audited:
                continue
            self._audited.add(key)
            self._audit(eff.audit(now, dep))

    def _audit(self, record: AuditRecord) -> None:
        self.store.append_audit([record])


def _installed(dist: str) -> str:
    from headwater.runtime.context import _distribution_version

    return _distribution_version(dist)

