"""Infrastructure-level oversight in the simulator, decided by the real oversight core.

:class:`Infrastructure` is the shell around :mod:`headwater.oversight` for
the study, as the runtime's guard is for real runs: it keeps the state the
store would keep (the status of every asset version, the lineage of every
committed result, the active policies), calls the core's public functions
and applies what they return.

* *Dispatch.* Before a stage starts, :func:`~headwater.oversight.decide`
  resolves every asset it uses against a :class:`~headwater.oversight.Snapshot`
  of statuses and policies (retracted versions never served, versions under
  a canary held back) and applies the fleet's policy
  (:data:`BREAKER_POLICY`): sandbox dependents of a suspect version,
  reroute dependents of a degraded one to the last known-good version or,
  for a bad node, to another node of the pool; pause them when there is no
  alternative. A bad global policy, when a replicate has one, is one more
  policy in the snapshot, rolled out shadow -> staged -> enforced.
* *Signals.* Every monitor period the core's monitors run over the window
  of committed results: :func:`~headwater.oversight.inconsistency` (claims
  under one key that disagree, with suspects ranked),
  :func:`~headwater.oversight.output_shift` (a version's results against
  its predecessor's), :func:`~headwater.oversight.verification_clusters`
  (refutations concentrated on one version's dependents, when workflows
  verify) and :func:`~headwater.oversight.redundancy` (sampled calls of
  shared libraries run on a second implementation).
  :func:`~headwater.oversight.signals` turns findings into signals; owners'
  reports and external advisories are signals too. The
  :class:`~headwater.oversight.Breaker` turns each into status transitions
  (every one through :func:`~headwater.oversight.transition`, with its
  audit record).
* *Canaries.* A new version of a shared asset is gated; after
  ``canary_hours`` a canary set runs on it and on the current version and
  :func:`~headwater.oversight.verdict` compares them (Mann-Whitney).
* *Blast radius.* When a version is degraded,
  :func:`~headwater.oversight.blast_radius` over the fleet's lineage finds
  every result built on it, through claims, however many hops;
  :func:`~headwater.oversight.taint` marks their claims suspect; the
  results are retracted and their workflows re-run from the first affected
  stage.

People are modelled where the real system has them: triage confirms or
clears a suspect version after ``triage_hours`` (and sometimes finds the
real culprit near a wrong one), maintainers ship a fix ``fix_hours`` after
a report (or clear a wrongly degraded version after as long), owners fix
their own bug after ``local_fix_hours``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from headwater.oversight import (
    AssetRef,
    AssetStatus,
    Breaker,
    Candidate,
    CheckpointInfo,
    ClaimObs,
    Dependent,
    Event,
    Findings,
    Match,
    Metric,
    Mode,
    Policy,
    RedundancyObs,
    Rule,
    Signal,
    Snapshot,
    VerificationObs,
    alert,
    blast_radius,
    decide,
    inconsistency,
    output_shift,
    pause,
    redundancy,
    reroute,
    sandbox,
    signals,
    taint,
    transition,
    verdict,
    verification_clusters,
)
from headwater.study.fleet import DRAWS, REF_KIND, StageDef
from headwater.study.lineage import IndexedLineage, ckpt_id, result_of
from headwater.study.sim import INFRA

S = AssetStatus

BREAKER_POLICY = Policy(
    "breaker",
    rules=(
        Rule(Match(status=[S.SUSPECT]), (sandbox(),), "suspect: sandbox dependents"),
        Rule(Match(status=[S.DEGRADED, S.RETRACTED], kinds=["compute"]), (reroute("implementation"), pause(), alert()),
             "bad node: drain it"),
        Rule(Match(status=[S.DEGRADED, S.RETRACTED]), (reroute("last-good"), pause(), alert()),
             "degraded: last known-good, else pause"),
    ),
    mode=Mode.ENFORCED, share=1.0, version=1,
)
"""The fleet-wide policy every infrastructure strategy runs."""

FALSE_ALARM = -3
BAD_POLICY = -2
"""Pause causes that are not a planted error: a wrongly degraded version, a bad policy."""


@dataclass(slots=True)
class Plan:
    """What the core decides for one stage about to start.

    ``pause`` is the cause of a pause (an error id, :data:`FALSE_ALARM` or
    :data:`BAD_POLICY`) or None; ``versions`` the version served per asset;
    ``node`` the compute node; ``sandbox`` the suspect versions that make
    its outputs unconsumable.
    """

    pause: int | None
    versions: dict[int, int]
    node: int
    sandbox: tuple[tuple[int, int], ...]


class Infrastructure:
    """The oversight core applied to one simulation; see the module docstring.

    State, as the store would keep it: ``status`` (by ``(asset, version)``)
    and ``statuses`` (by ``kind:name@version``, what the :class:`Snapshot`
    reads) for every version with a status on record; ``policies`` and the
    ``snapshot`` built from them; ``lineage`` of every committed result, with
    ``refs`` (the versions behind each result, its run's ancestors included)
    and ``obs`` (its claim as the inconsistency monitor sees it);
    ``claim_status`` for tainted claims and ``sandboxed`` results; the
    monitors' inputs (``verifications``, ``redundant`` calls, ``promoted``
    versions and their ``uses``); the breaker's ``sources`` per version;
    ``cleared`` versions left alone until a time; ``opened`` versions whose
    breaker opened; ``evidence`` (the disagreeing results behind an
    inconsistency); a synchronized rollout's ``batch``. ``audit`` counts the
    audit records written.
    """

    def __init__(self, sim) -> None:
        self.sim = sim
        self.p = p = sim.p
        self.fleet = fleet = sim.fleet
        self.status: dict[tuple[int, int], AssetStatus] = {}
        self.statuses: dict[str, AssetStatus] = {}
        self.audit = 0
        self.lineage = IndexedLineage()
        self.breaker = Breaker(trip_score=p.trip_score, trip_sources=2)
        self.policies: tuple[Policy, ...] = (BREAKER_POLICY,)
        self.snapshot = Snapshot(self.statuses, (), self.policies)
        self.bad: Policy | None = None
        self.sources: dict[tuple[int, int], set[str]] = defaultdict(set)
        self.cleared: dict[tuple[int, int], float] = {}
        self.opened: set[tuple[int, int]] = set()
        self.evidence: dict[tuple[int, int], tuple[int, ...]] = {}
        self.batch: list[tuple[int, int]] = []
        self.claim_status: dict[str, AssetStatus] = {}
        self.sandboxed: dict[int, tuple[tuple[int, int], ...]] = {}
        self.verifications: list[tuple[float, VerificationObs]] = []
        self.redundant: list[RedundancyObs] = []
        self.promoted: list[tuple[float, int, int, int]] = []
        self.refs: dict[int, frozenset[str]] = {}
        self.obs: dict[int, ClaimObs] = {}
        self.uses: dict[tuple[int, int], list[tuple[float, int]]] = {}
        self.flagged: dict[int, int] = defaultdict(int)
        self.touched: set[int] = set()
        self.new_failures = False
        self._window_start = 0
        self._tested: dict[tuple[int, int], tuple[int, int]] = {}
        self.by_name = {a.name: a.idx for a in fleet.assets}
        self._deps: dict[tuple[int, int], Dependent] = {}
        self._cands: dict[int, list[Candidate]] = {}
        self._metric = Metric("output", test="mannwhitney", alpha=p.canary_alpha, min_n=3)
        for a, vs in sim.versions.items():
            self._set(a, vs[0].no, Event.REGISTER, "runtime", "first version")

    # -- names ------------------------------------------------------------------------
    def _u(self, *key: int) -> float:
        """A draw shared by every strategy of the replicate, named by ``key``."""
        return float(np.random.default_rng([self.fleet.seed, 0xA11, *key]).random())

    def _kind_name(self, a: int) -> tuple[str, str]:
        asset = self.fleet.assets[a]
        return REF_KIND[asset.kind], asset.name.split(":", 1)[1]

    def _use(self, a: int, v: int) -> tuple[str, str, str]:
        """``(kind, name, version)`` of version ``v`` of asset ``a`` (a node is ``pool/nK`` at epoch ``eE``)."""
        kind, name = self._kind_name(a)
        if kind == "compute":
            node, epoch = (v - 1) % 1000, (v - 1) // 1000
            return kind, f"{name}/n{node}", f"e{epoch}"
        return kind, name, str(v)

    def subject(self, a: int, v: int) -> str:
        kind, name, version = self._use(a, v)
        return f"{kind}:{name}@{version}"

    def _parse(self, kind: str, name: str, version: str) -> tuple[int, int]:
        if kind == "compute":
            pool, _, node = name.partition("/n")
            return self.by_name[f"compute:{pool}"], int(node) + 1 + 1000 * int(version[1:])
        return self.by_name[f"{kind}:{name}"], int(version)

    def parse_subject(self, subject: str) -> tuple[int, int] | None:
        kind_name, _, version = subject.rpartition("@")
        kind, _, name = kind_name.partition(":")
        try:
            return self._parse(kind, name, version)
        except (KeyError, ValueError):
            return None

    # -- status ---------------------------------------------------------------------------
    def st(self, a: int, v: int) -> AssetStatus:
        return self.status.get((a, v), S.TRUSTED)

    def _put(self, a: int, v: int, new: AssetStatus) -> None:
        old = self.status.get((a, v), S.TRUSTED)
        self.status[(a, v)] = new
        self.statuses[self.subject(a, v)] = new
        self.flagged[a] += (new is not S.TRUSTED) - (old is not S.TRUSTED)
        self.audit += 1

    def _set(self, a: int, v: int, event: Event, actor: str, reason: str = "") -> AssetStatus:
        t = transition(self.subject(a, v), self.status.get((a, v)), event, now=self.sim.now, actor=actor,
                       reason=reason)
        self._put(a, v, t.new)
        return t.new

    def _later(self, hours: float, what: str, data: object = None) -> None:
        self.sim.push(self.sim.now + hours, INFRA, (what, data))

    def start(self) -> None:
        """Schedule the periodic work: monitors, batch rollouts, the bad policy."""
        p = self.p
        self._later(p.monitor_period_hours, "monitor")
        if p.synchronized:
            self._later(p.rollout_days * 24.0, "rollout")
        bp = self.fleet.bad_policy
        if bp is not None:
            self.sim.push(bp.time, INFRA, ("policy", 0))

    def handle(self, payload) -> None:
        what, data = payload
        getattr(self, f"_on_{what}")(data)

    # -- dispatch -----------------------------------------------------------------------
    def _dependent(self, wf: int, j: int) -> Dependent:
        dep = self._deps.get((wf, j))
        if dep is None:
            tag = "class-a" if self.fleet.workflows[wf].tag == 0 else "class-b"
            dep = Dependent(run_id=f"w{wf}", workflow=f"w{wf}", task=f"s{j}", tags=frozenset({tag}))
            self._deps[(wf, j)] = dep
        return dep

    def _candidates(self, a: int) -> list[Candidate]:
        cands = self._cands.setdefault(a, [])
        vs = self.sim.versions[a]
        if len(cands) < len(vs):
            _, name = self._kind_name(a)
            cands.extend(Candidate(name, str(v.no), order=v.no) for v in vs[len(cands):])
        return cands

    def _node_candidates(self, pool: int, landed: int) -> list[Candidate]:
        _, name = self._kind_name(pool)
        nodes = max(1, self.p.nodes_per_pool)
        out = []
        for n in range(nodes):
            _, nm, ver = self._use(pool, self.sim.node_version(pool, n))
            out.append(Candidate(nm, ver, rank=(n - landed) % nodes))
        return out

    def plan(self, run, stage: StageDef, node: int) -> Plan:
        """Versions, node, sandbox and pause for a stage of ``run`` about to start (the core's decision)."""
        fleet = self.fleet
        uses: dict[str, tuple[str, list[Candidate]]] = {}
        for a in stage.assets:
            if a not in self.sim.versions:
                continue
            cands = self._candidates(a)
            if not self.p.auto_upgrade and fleet.assets[a].shared and a in run.env:
                cands = cands[: run.env[a]]
            kind, _ = self._kind_name(a)
            uses[fleet.assets[a].name] = (kind, cands)
        pool = run.wf.pool
        if self.bad is None and not self.flagged[pool] and not any(self.flagged[a] for a in stage.assets):
            # nothing on record for these assets: every candidate is trusted, no rule matches,
            # and decide() would serve the newest version of each and the node landed on
            return Plan(None, {a: self.sim.versions[a][-1].no for a in stage.assets if a in self.sim.versions},
                        node, ())
        uses[fleet.assets[pool].name] = ("compute", self._node_candidates(pool, node))
        d = decide(self.snapshot, self._dependent(run.wf.idx, stage.j), uses)
        versions: dict[int, int] = {}
        for key, res in d.resolutions.items():
            a, v = self._parse(res.choice.kind, res.choice.name, res.choice.version)
            if a == pool:
                node = (v - 1) % 1000
            else:
                versions[a] = v
        cause: int | None = None
        for a in stage.assets:
            if a in self.sim.versions and a not in versions:
                # no version can be served at all (every one withdrawn or under a canary): wait
                why = self._cause(a, self.sim.versions[a][-1].no)
                if cause is None or (why >= 0 and (cause < 0 or why < cause)):
                    cause = why
        boxed = []
        for eff in d.directive.effects:
            if not eff.enforced:
                continue
            exp = eff.exposure
            a, v = self._parse(exp.kind, exp.name, exp.version)
            if eff.action.pauses:
                why = BAD_POLICY if eff.policy != BREAKER_POLICY.name else self._cause(a, v)
                if cause is None or (why >= 0 and (cause < 0 or why < cause)):
                    cause = why
            elif eff.action.kind == "sandbox":
                boxed.append((a, v))
        return Plan(cause, versions, node, tuple(boxed))

    def _cause(self, a: int, v: int) -> int:
        """The planted error behind a version, or :data:`FALSE_ALARM`."""
        if self.fleet.assets[a].kind == "compute":
            e = self.sim.fault_at(a, v)
            return FALSE_ALARM if e is None else e
        errs = self.sim.versions[a][v - 1].errors
        return min(errs) if errs else FALSE_ALARM

    def consumable(self, res) -> bool:
        """Whether consumers may read ``res``'s claim (not retracted, tainted or sandboxed)."""
        if res.retracted:
            return False
        if self.claim_status.get(self._claim_ref(res), S.TRUSTED) is not S.TRUSTED:
            return False
        return all(self.st(a, v) is not S.SUSPECT for a, v in self.sandboxed.get(res.idx, ()))

    @staticmethod
    def _claim_ref(res) -> str:
        return f"claim:k{res.key}@{ckpt_id(res.idx)[:12]}"

    def auto_approves(self, run) -> bool:
        """Whether a bad auto-approve policy takes this workflow's verification away."""
        bad = self.bad
        if bad is None or bad.mode is Mode.SHADOW or self.fleet.bad_policy.kind != "auto-approve":
            return False
        dep = self._dependent(run.wf.idx, 0)
        return bad.applies_to(dep) and bad.rules[0].when.matches_tags(dep.tags)

    # -- what happened ------------------------------------------------------------------
    def on_commit(self, res, att) -> None:
        """Record a committed result in the lineage graph."""
        uses = [self._use(a, v) for a, v in res.versions]
        refs = frozenset(f"{k}:{n}@{v}" for k, n, v in uses)
        if res.parent >= 0:
            refs |= self.refs.get(res.parent, frozenset())
        self.refs[res.idx] = refs
        self.obs[res.idx] = ClaimObs(f"k{res.key}", res.value, self.p.claim_noise, ckpt_id(res.idx), f"w{res.wf}",
                                     f"w{res.wf}", refs)
        self.touched.add(res.key)
        for a, v in res.versions:
            if self.fleet.assets[a].shared and a in self.sim.versions:
                self.uses.setdefault((a, v), []).append((res.time, res.idx))
        if res.consumed >= 0:
            src = self.sim.results[res.consumed]
            uses.append(("claim", f"k{src.key}", ckpt_id(src.idx)[:12]))
        ck = ckpt_id(res.idx)
        self.lineage.add(CheckpointInfo(ck, f"w{res.wf}", f"w{res.wf}", f"s{res.stage}", seq=res.stage),
                         uses=uses, claim=f"k{res.key}",
                         inputs=[f"a{res.parent}"] if res.parent >= 0 else [], outputs=[f"a{res.idx}"])
        if att.sandbox:
            self.sandboxed[res.idx] = att.sandbox

    def on_finished(self, att) -> None:
        """N-version redundancy: a sampled share of shared-library calls also run on a second implementation."""
        p = self.p
        slot = (att.attempt - 1) % DRAWS
        for a, v in att.versions:
            asset = self.fleet.assets[a]
            if asset.kind != "library" or not asset.shared:
                continue
            self.sim.out.compute["monitoring"] += p.redundancy_share * att.stage.hours
            if att.stage.u_red[slot] >= p.redundancy_share:
                continue
            wrong = any(e in att.own for e in self.sim.versions[a][v - 1].errors) and self.fleet.blind != "library"
            ref = self.subject(a, v)
            self.redundant.append(RedundancyObs(ref, ref, ref.replace("@", "-reference@"), agree=not wrong))

    def on_verified(self, run, att, refuted: bool) -> None:
        """One verification outcome, for the clustered-failure monitor."""
        refs = frozenset(self.subject(a, v) for a, v in att.versions
                         if self.fleet.assets[a].shared or self.fleet.assets[a].kind == "compute")
        obs = VerificationObs(f"w{run.wf.idx}.s{att.stage.j}.{att.attempt}", f"w{run.wf.idx}", refuted, refs)
        self.verifications.append((self.sim.now, obs))
        self.new_failures = self.new_failures or refuted

    def on_root_cause(self, e: int, when: float) -> None:
        """A workflow's owners traced a refutation to error ``e`` and report it (at ``when``)."""
        self.sim.push(when, INFRA, ("report", e))

    def _on_report(self, e: int) -> None:
        self._advise(e, "user:owner", "traced by a workflow's owners")

    def on_advisory(self, err) -> None:
        """Someone outside the fleet found ``err``: an authoritative advisory."""
        self._advise(err.idx, "user:advisory", "external advisory")

    def _advise(self, e: int, source: str, reason: str) -> None:
        err = self.fleet.errors[e]
        if err.kind == "compute":
            v = self.sim.node_version(err.asset, err.node, epoch_of=e)
            if v is not None:
                self._signal(err.asset, v, source, reason, 1.0, trip=True)
            return
        for ver in list(self.sim.versions[err.asset]):
            if e in ver.errors:
                self._signal(err.asset, ver.no, source, reason, 1.0, trip=True)

    def on_fixed(self, err) -> None:
        """A fix for ``err`` is out (a new version, gated like any other); retire the bad versions."""
        if err.kind == "compute":
            v = self.sim.node_version(err.asset, err.node, epoch_of=err.idx)
            if v is not None and self.st(err.asset, v) is not S.RETRACTED:
                self._set(err.asset, v, Event.RETRACT, "runtime", "node repaired")
        else:
            for ver in self.sim.versions[err.asset]:
                if err.idx in ver.errors and self.st(err.asset, ver.no) in (S.SUSPECT, S.DEGRADED):
                    self._set(err.asset, ver.no, Event.RETRACT, "runtime", "superseded by a fixed version")
        self.sim.wake_paused()

    # -- signals, breaker, triage --------------------------------------------------
    def _signal(self, a: int, v: int, source: str, reason: str, score: float, trip: bool = False,
                evidence: dict | None = None) -> None:
        cur = self.status.get((a, v))
        if cur in (S.RETRACTED, S.REVALIDATING):
            return
        if not trip and self.cleared.get((a, v), -math.inf) > self.sim.now:
            return
        sig = Signal(self.subject(a, v), source, reason, score=score, trip=trip, evidence=evidence or {})
        earlier = set(self.sources[(a, v)])
        self.sources[(a, v)].add(source)
        for t in self.breaker.react(cur, sig, now=self.sim.now, earlier_sources=earlier):
            self._put(a, v, t.new)
            if t.changed and t.new is S.SUSPECT:
                self._later(self.p.triage_hours, "triage", (a, v))
            elif t.changed and t.new is S.DEGRADED:
                self._degraded(a, v)
                self._later(self.p.triage_hours, "triage", (a, v))
        self.sim.wake_paused()

    def _truth(self, a: int, v: int) -> int | None:
        e = self._cause(a, v)
        return None if e < 0 else e

    def _on_triage(self, av: tuple[int, int]) -> None:
        a, v = av
        status = self.st(a, v)
        if status not in (S.SUSPECT, S.DEGRADED):
            return
        p, now = self.p, self.sim.now
        e = self._truth(a, v)
        u = self._u(1, a, v, int(now))
        if e is not None:
            if status is S.SUSPECT:
                if u < p.p_confirm:
                    self._set(a, v, Event.TRIP, "user:triage", "confirmed by triage")
                    self._degraded(a, v)
                else:
                    self._set(a, v, Event.CLEAR, "user:triage", "not confirmed")
                    self._dismiss(av)
            self.sim.wake_paused()
            return
        self.sim.out.false_alarms += 1
        self.sim.out.false_alarm_hours += p.triage_hours
        self._redirect(a, v)
        if u < p.p_triage_clear:
            self._set(a, v, Event.CLEAR if status is S.SUSPECT else Event.OVERRIDE, "user:triage",
                      "nothing wrong found")
            self._dismiss(av)
        elif status is S.SUSPECT:
            self._set(a, v, Event.TRIP, "user:triage", "wrongly confirmed")
            self._degraded(a, v)
        self.sim.wake_paused()

    def _dismiss(self, av: tuple[int, int]) -> None:
        """Triage dismissed the signals on ``av``: they no longer count, and the version is left alone a week."""
        self.sources.pop(av, None)
        self.cleared[av] = self.sim.now + 7 * 24.0

    def _redirect(self, a: int, v: int) -> None:
        """Triage of an innocent version may find the error its disagreeing dependents carry."""
        roots: dict[int, int] = defaultdict(int)
        for r in self.evidence.get((a, v), ()):
            res = self.sim.results[r]
            if res.root >= 0 and not res.retracted and res.root not in self.sim.fixed:
                roots[res.root] += 1
        if not roots or self._u(2, a, v, int(self.sim.now)) >= self.p.p_redirect:
            return
        e = max(roots, key=lambda k: (roots[k], -k))
        self._advise(e, "user:triage", f"found while triaging {self.subject(a, v)}")

    def _degraded(self, a: int, v: int) -> None:
        """``(a, v)`` is degraded: the error is known, a fix is on its way, and what was built on it is retracted."""
        sim, p = self.sim, self.p
        self.opened.add((a, v))
        e = self._truth(a, v)
        if e is not None:
            sim.detect(e, sim.now)
            if self.fleet.errors[e].kind == "local":
                sim.local_fix(e, sim.now + p.local_fix_hours)
            else:
                sim.report(e, sim.now, fix_after=p.fix_hours)
        else:
            self._later(p.fix_hours, "revalidate", (a, v))
        kind, name, version = self._use(a, v)
        radius = blast_radius(self.lineage, AssetRef(kind, name, version))
        for t in taint(radius, self.claim_status, now=sim.now, cause=self.subject(a, v), cause_status=self.st(a, v)):
            self.claim_status[t.subject] = t.new
            self.audit += 1
        sim.retract(sorted(result_of(ck) for ck in radius.checkpoints), false_alarm=e is None,
                    uses=frozenset({(a, v)}))
        sim.wake_paused()

    def _on_revalidate(self, av: tuple[int, int]) -> None:
        a, v = av
        if self.st(a, v) is S.DEGRADED:
            self._set(a, v, Event.REVALIDATE, "user:maintainer", "found fine on review")
            if self.fleet.assets[a].kind == "compute":
                self._set(a, v, Event.PASS, "canary", "node back in service")
            else:
                self._canary([(a, v)])
            self.sim.wake_paused()

    # -- canaries -------------------------------------------------------------------------
    def on_release(self, a: int, v: int) -> None:
        """A new version: bespoke ones are registered, shared ones gated behind a canary."""
        if not self.fleet.assets[a].shared:
            self._set(a, v, Event.REGISTER, "runtime", "new version")
            self.sim.wake_paused()
            return
        self._set(a, v, Event.GATE, "runtime", "new version of a shared asset")
        if self.p.synchronized:
            self.batch.append((a, v))
        else:
            self._later(self.p.canary_hours, "canary", [(a, v)])

    def _on_rollout(self, _data) -> None:
        batch, self.batch = self.batch, []
        if batch:
            self._later(self.p.canary_hours, "canary", batch)
        self._later(self.p.rollout_days * 24.0, "rollout")

    def _baseline(self, a: int, v: int) -> int:
        older = [w.no for w in self.sim.versions[a][: v - 1] if self.st(a, w.no) is S.TRUSTED]
        return older[-1] if older else 1

    def _on_canary(self, batch: list[tuple[int, int]]) -> None:
        self._canary(batch)

    def _canary(self, batch: list[tuple[int, int]]) -> None:
        """One canary set on every candidate in ``batch`` at once, against the versions in use."""
        p, sim = self.p, self.sim
        batch = [(a, v) for a, v in batch if self.st(a, v) is S.REVALIDATING]
        if not batch:
            return
        n = max(3, p.canary_runs)
        sim.out.compute["monitoring"] += p.canary_cost
        rng = np.random.default_rng([self.fleet.seed, 0xCA7, *batch[0], len(batch)])
        base = rng.normal(0.0, p.claim_noise, n)
        cand = rng.normal(0.0, p.claim_noise, n)
        for a, v in batch:
            vb, vc = sim.versions[a][self._baseline(a, v) - 1], sim.versions[a][v - 1]
            cand = cand + (vc.level - vb.level)
            for e in sorted(vc.errors - vb.errors):
                if self.fleet.errors[e].kind != self.fleet.blind:
                    cand = cand + (rng.random(n) < p.p_manifest) * self.fleet.errors[e].bias
        res = verdict([self._metric], {"output": base.tolist()}, {"output": cand.tolist()})
        if res.outcome != "fail":
            for a, v in batch:
                self._promote(a, v, res.reason)
            return
        self._later(p.triage_hours * len(batch), "canary_triage", batch)

    def _promote(self, a: int, v: int, reason: str) -> None:
        self._set(a, v, Event.PASS, "canary", reason)
        self.promoted.append((self.sim.now, a, v, self._baseline(a, v)))
        self.sim.wake_paused()

    def _on_canary_triage(self, batch: list[tuple[int, int]]) -> None:
        p, sim = self.p, self.sim
        for a, v in batch:
            if self.st(a, v) is not S.REVALIDATING:
                continue
            vb, vc = sim.versions[a][self._baseline(a, v) - 1], sim.versions[a][v - 1]
            new = sorted(vc.errors - vb.errors)
            u = self._u(3, a, v)
            if new:
                if u < p.p_confirm:
                    self._set(a, v, Event.FAIL, "user:triage", "canary failure confirmed")
                    for e in new:
                        sim.detect(e, sim.now)
                        sim.report(e, sim.now, fix_after=p.fix_hours)
                else:
                    self._promote(a, v, "canary failure not confirmed")
                continue
            sim.out.false_alarms += 1
            sim.out.false_alarm_hours += p.triage_hours
            if u < p.p_triage_clear:
                self._promote(a, v, "canary difference explained")
            else:
                self._set(a, v, Event.FAIL, "user:triage", "withdrawn on a false alarm")
        sim.wake_paused()

    # -- monitors -----------------------------------------------------------------------
    def _on_monitor(self, _data) -> None:
        p, sim = self.p, self.sim
        now = sim.now
        self._later(p.monitor_period_hours, "monitor")
        since = now - p.monitor_window_days * 24.0
        results = sim.results
        lo = self._window_start
        while lo < len(results) and results[lo].time < since:
            lo += 1
        self._window_start = lo
        window = [r for r in results[lo:] if not r.retracted]
        sim.out.compute["monitoring"] += p.monitor_cost * len(window)
        findings = Findings()
        # keys without a new claim since the last pass would give the findings they gave then
        touched, self.touched = self.touched, set()
        found = inconsistency([self.obs[r.idx] for r in window if r.key in touched], sigmas=3.0, min_users=2)
        findings.inconsistencies = [
            inc for inc in found
            if inc.suspects and len(inc.clusters[inc.suspects[0].cluster].workflows) >= p.monitor_min_workflows
        ]
        findings.shifts = self._shifts(since)
        self.verifications = [(t, o) for t, o in self.verifications if t >= since]
        if self.new_failures:
            self.new_failures = False
            clusters = verification_clusters([o for _, o in self.verifications], alpha=p.cluster_alpha)
            findings.failure_clusters = [c for c in clusters if len(c.workflows) >= p.cluster_refutations]
        if self.redundant:
            findings.disagreements = redundancy(self.redundant)
            self.redundant = []
        for inc in findings.inconsistencies:
            top = self.parse_subject(inc.suspects[0].asset)
            if top is not None:
                minority = inc.clusters[inc.suspects[0].cluster].members
                self.evidence[top] = tuple(result_of(m.checkpoint) for m in minority)
        for sig in signals(findings, min_score=p.monitor_threshold):
            av = self.parse_subject(sig.subject)
            if av is None:
                continue
            self._signal(*av, sig.source, sig.reason, min(sig.score, 1.0))

    def _values(self, a: int, v: int, since: float) -> list[float]:
        results = self.sim.results
        return [results[r].value for t, r in self.uses.get((a, v), ()) if t >= since and not results[r].retracted]

    def _shifts(self, since: float):
        """Output shift of each version promoted within the window against the one before it."""
        out = []
        self.promoted = [x for x in self.promoted if x[0] >= since]
        for _, a, v, b in self.promoted:
            seen = (len(self.uses.get((a, b), ())), len(self.uses.get((a, v), ())))
            if self._tested.get((a, v)) == seen:
                continue  # no new values on either side since the last test
            self._tested[(a, v)] = seen
            before, after = self._values(a, b, since), self._values(a, v, since)
            kind, name, _ = self._use(a, v)
            out.append(output_shift(f"{kind}:{name}", "output", str(b), str(v), before, after, alpha=0.001))
        return out

    # -- a bad global policy ----------------------------------------------------------
    def _on_policy(self, step: int) -> None:
        bp = self.fleet.bad_policy
        p = self.p
        if step == 0:
            if bp.kind == "over-throttle" and self.fleet.popular >= 0:
                target = self.fleet.assets[self.fleet.popular].name
                rule = Rule(Match(status=list(S), assets=(target,), tags_any=["class-a"]), (pause(),),
                            "pause class-a dependents of the top asset")
            else:
                rule = Rule(Match(status=list(S), tags_any=["class-a"]), (alert("auto-approve verification"),),
                            "auto-approve class-a verification")
            self._install(Policy("bad-policy", (rule,), Mode.SHADOW, 0.0, 1))
            self._later(24.0, "policy", 1)
        elif step == 1 and self.bad is not None:
            if bp.u_shadow < p.p_detect_bad_policy:
                self._install(None)
                return
            self._install(self.bad.with_rollout(Mode.STAGED, 0.25))
            self.sim.out.false_alarms += 1
            self._later(72.0, "policy", 2)
        elif step == 2 and self.bad is not None:
            if bp.u_staged < p.p_detect_bad_policy:
                self._install(None)
                return
            self._install(self.bad.with_rollout(Mode.ENFORCED))
            self._later(bp.enforced_days * 24.0, "policy", 3)
        elif step == 3 and self.bad is not None:
            self._install(None)

    def _install(self, bad: Policy | None) -> None:
        self.bad = bad
        self.policies = (BREAKER_POLICY,) + ((bad,) if bad is not None else ())
        self.snapshot = Snapshot(self.statuses, (), self.policies)
        self.audit += 1
        self.sim.wake_paused()
