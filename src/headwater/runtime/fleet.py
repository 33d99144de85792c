"""Fleet oversight operations: the shell around :mod:`headwater.oversight`.

:class:`Fleet` is what the CLI, the demo and the runtime call to act on
shared assets across every workflow in a store. Each operation loads what
the pure core needs, calls it, and writes what it returns:

* status changes (``flag``, ``trip``, ``clear``, ``revalidate``,
  ``retract``, ``override``, monitor signals through the breaker) go through
  :func:`headwater.oversight.transition` and are written with their audit
  records in one transaction. A version that becomes degraded or retracted
  has consequences, applied at once: every claim committed in its blast
  radius is tainted (suspect, with the linking path), and every checkpoint
  in it loses its cache validity;
* flagging a bare asset (``lib:numpy``) or a range (``lib:numpy@>=1.2,<1.4``,
  or ``--introduced``/``--fixed``) changes every known version in it *and*
  records the range itself, so versions first seen later get the status too
  (a version-scoped quarantine);
* pins, policies (YAML or Python files; versioned; ``shadow``, ``staged``,
  ``enforced``), canaries (start, judge, promote or retract), monitors and
  the concentration and coverage reports.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater.oversight import monitors as mon
from headwater.oversight.breaker import Breaker, Signal, taint
from headwater.oversight.canary import CanaryVerdict, Metric, verdict
from headwater.oversight.engine import RANGE_PREFIX, Snapshot, range_of
from headwater.oversight.lineage import BlastRadius
from headwater.oversight.policy import Mode, Policy, policy_from_doc
from headwater.oversight.refs import AssetRef, parse_ref, version_key
from headwater.oversight.routing import Pin
from headwater.oversight.status import (
    BAD_STATES,
    AssetStatus,
    AuditRecord,
    Event,
    OversightError,
    Transition,
    transition,
)
from headwater.store.records import EventRecord

if TYPE_CHECKING:
    from headwater.store import Store
    from headwater.store.assets import CanaryRecord

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one operation changed."""

    transitions: list[Transition] = field(default_factory=list)
    tainted: list[Transition] = field(default_factory=list)
    invalidated: int = 0
    radius: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def extend(self, other: Outcome) -> None:
        self.transitions += other.transitions
        self.tainted += other.tainted
        self.invalidated += other.invalidated
        self.radius.update(other.radius)
        self.notes += other.notes

    def to_json(self) -> dict:
        def tr(t: Transition) -> dict:
            return {"subject": t.subject, "from": t.old.label if t.old is not None else None,
                    "to": t.new.label, "event": t.event.value, "changed": t.changed,
                    "reason": t.record.reason, "actor": t.record.actor}
        return {"transitions": [tr(t) for t in self.transitions], "tainted": [tr(t) for t in self.tainted],
                "cache_invalidated": self.invalidated, "radius": self.radius, "notes": self.notes}


@dataclass
class MonitorReport:
    findings: mon.Findings
    signals: list[Signal]
    outcome: Outcome
    reports: dict | None = None
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {"findings": self.findings.to_json(), "signals": [s.to_json() for s in self.signals],
               "outcome": self.outcome.to_json()}
        if self.reports is not None:
            out["reports"] = self.reports
        if self.skipped:
            out["skipped"] = list(self.skipped)
        return out


RUN_END_LIMIT = 1_000
"""Above this many committed and refuted checkpoints in the store, a run's end
runs only the monitors over its own claim keys; the fleet-wide ones are
left to ``headwater monitors run``."""

RUN_END_BUDGET = 0.5
"""Seconds the monitors at a run's end may take; the rest are skipped."""


class Fleet:
    """Oversight over every workflow in one store; see the module docstring."""

    def __init__(self, store: Store, *, breaker: Breaker | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.breaker = breaker or Breaker()
        self.clock = clock

    # ------------------------------------------------------------ versions

    def subjects(self, ref: AssetRef) -> list[str]:
        """Every known ``kind:name@version`` ``ref`` selects (an exact version
        is returned even when it was never used)."""
        if ref.version is not None:
            if ref.kind == "claim" and len(ref.version) < 12:
                known = [f"claim:{n}@{v}" for n, v, _ in self.store.known_versions(ref)
                         if ref.matches("claim", n, v)]
                if len(known) == 1:
                    return known
            return [str(ref)]
        from headwater.oversight.lineage import select_versions
        from headwater.store.assets import StoreEdges

        with self.store._read() as conn:
            pairs = select_versions(StoreEdges(conn), ref)
        return [f"{ref.kind}:{n}@{v}" for n, v in pairs]

    def _range_subject(self, ref: AssetRef) -> str | None:
        if ref.version is not None:
            return None
        text = "*" if ref.range is None else str(ref.range)
        return f"{ref.kind}:{ref.name}@{RANGE_PREFIX}{text}"

    def _status(self, subject: str) -> AssetStatus | None:
        return self.store.version_status(subject)

    # ------------------------------------------------------ status changes

    def flag(self, ref: AssetRef | str, reason: str, *, actor: str = "user", trip: bool = False,
             introduced: str | None = None, fixed: str | None = None) -> Outcome:
        """Mark the selected versions suspect (``trip``: degraded at once)."""
        ref = _ref(ref, introduced, fixed)
        subjects = self.subjects(ref)
        out = Outcome()
        rng = self._range_subject(ref)
        if rng is not None:
            if not subjects:
                out.notes.append(f"no version of {ref.key} seen yet: the flag covers versions seen later")
            subjects.append(rng)
        for subject in subjects:
            # A flag is a signal, not proof: it opens the breaker only when asked
            # to, or together with an independent second source.
            out.extend(self.signal(Signal(subject, _actor(actor), reason, score=0.5, trip=trip)))
        return out

    def signal(self, sig: Signal) -> Outcome:
        """Feed one signal to the breaker and apply what it decides."""
        earlier = self.store.signal_sources(sig.subject)
        current = self._status(sig.subject)
        if sig.source in earlier and current is not None and current is not AssetStatus.TRUSTED:
            return Outcome(notes=[f"{sig.subject}: already signalled by {sig.source}"])
        trs = self.breaker.react(current, sig, now=self.clock(), earlier_sources=earlier)
        return self._commit(trs)

    def change(self, ref: AssetRef | str, event: Event | str, reason: str, *, actor: str = "user",
               introduced: str | None = None, fixed: str | None = None) -> Outcome:
        """Apply ``event`` (trip, clear, revalidate, retract, override, pass, fail)
        to every version ``ref`` selects that has a status on record (or, for
        trip and retract, to every known one)."""
        event = Event(event)
        ref = _ref(ref, introduced, fixed)
        subjects = self.subjects(ref)
        if ref.version is None:
            prefix = f"{ref.kind}:"
            subjects += [r.ref for r in self.store.version_records(ref.kind)
                         if r.version.startswith(RANGE_PREFIX) and ref.matches_name(r.name)
                         and r.ref.startswith(prefix)]
            if event in (Event.TRIP, Event.RETRACT):
                rng = self._range_subject(ref)
                if rng is not None and rng not in subjects:
                    subjects.append(rng)
        now = self.clock()
        trs = []
        for subject in dict.fromkeys(subjects):
            current = self._status(subject)
            if current is None and event not in (Event.TRIP, Event.RETRACT):
                continue
            trs.append(transition(subject, current, event, now=now, actor=_actor(actor), reason=reason))
        if not trs:
            raise OversightError(f"nothing to {event.value}: no version of {ref} has a status on record",
                                 subject=str(ref))
        return self._commit(trs)

    def _commit(self, trs: Sequence[Transition], extra: Sequence[AuditRecord] = ()) -> Outcome:
        self.store.apply_transitions(trs, extra)
        out = Outcome(transitions=list(trs))
        for t in trs:
            if t.changed and t.new in BAD_STATES and (t.old is None or t.old not in BAD_STATES):
                out.extend(self._consequences(t.subject, t.new))
        return out

    def _consequences(self, subject: str, status: AssetStatus) -> Outcome:
        """Taint and cache invalidation for a version that just went bad."""
        kind, _, rest = subject.partition(":")
        name, _, version = rest.rpartition("@")
        rng = range_of(version)
        ref = AssetRef(kind, name, range=rng) if rng is not None else AssetRef(kind, name, version)
        radius = self.store.blast_radius(ref)
        now = self.clock()
        statuses = self.store.statuses_of(list(radius.claims))
        fresh = taint(radius, statuses, now=now, cause=subject, cause_status=status)
        ids = list(radius.checkpoints)
        invalidated = self.store.invalidate_cache(ids, f"built on {subject} ({status.label})") if ids else 0
        record = AuditRecord(ts=now, actor="breaker", action="contain", subject=subject,
                             reason=f"{subject} is {status.label}: {len(fresh)} claim(s) tainted, "
                                    f"{invalidated} cache entr{'y' if invalidated == 1 else 'ies'} invalidated",
                             data={"radius": radius.counts()})
        self.store.apply_transitions(fresh, [record])
        return Outcome(tainted=fresh, invalidated=invalidated, radius={subject: radius.counts()})

    # -------------------------------------------------------- registration

    def register(self, ref: AssetRef | str, *, actor: str = "user", **data: Any) -> Outcome:
        """Register an asset (and a version, when given) by hand."""
        ref = _ref(ref)
        self.store.register_asset(ref.kind, ref.name, **data)
        if ref.version is None:
            return Outcome(notes=[f"registered {ref.key}"])
        subject = str(ref)
        current = self._status(subject)
        snap = self.store.oversight_snapshot()
        gated = ref.key in snap.gated or snap.open_breaker(ref.kind, ref.name)
        event = Event.GATE if gated and current is None else Event.REGISTER
        return self._commit([transition(subject, current, event, now=self.clock(), actor=_actor(actor),
                                        reason="registered" + (" behind a canary" if gated else ""))])

    def gate(self, asset: str, on: bool = True, metrics: Sequence[str] = ()) -> dict:
        """Put new versions of ``asset`` behind a canary (``on``) or not; ``metrics``
        are the canary's tracked scalars (``KEY[:test][:rtol=..]...``)."""
        ref = _ref(asset)
        for m in metrics:
            Metric.parse(m)
        data = {"gated": on}
        if metrics:
            data["canary_metrics"] = list(metrics)
        if on:  # the versions seen so far stay as they are; only later ones wait for a canary
            now = self.clock()
            seen = [s for s in self.subjects(AssetRef(ref.kind, ref.name)) if self._status(s) is None]
            if seen:
                self.store.apply_transitions([transition(s, None, Event.REGISTER, now=now, actor=_actor("user"),
                                                         reason="seen before the gate") for s in seen])
        out = self.store.register_asset(ref.kind, ref.name, **data)
        self.store.append_audit([AuditRecord(ts=self.clock(), actor=_actor("user"), action="gate" if on else "ungate",
                                             subject=ref.key, data={"metrics": list(metrics)})])
        return out

    def gate_new_version(self, subject: str, *, run_id: str | None = None) -> CanaryRecord | None:
        """A new version of a gated asset (or of one with an open breaker)
        appeared: it starts revalidating, behind a canary."""
        if self._status(subject) is not None:
            return None
        kind, _, rest = subject.partition(":")
        name, _, version = rest.rpartition("@")
        baseline = self.last_good(kind, name, before=version)
        tr = transition(subject, None, Event.GATE, now=self.clock(), actor="runtime",
                        reason="new version of an asset with an open breaker or a gate: canary first")
        rec = AuditRecord(ts=tr.record.ts, actor="runtime", action="canary start", subject=subject,
                          reason=f"baseline {baseline or 'none'}", run_id=run_id)
        self._commit([tr], [rec])
        metrics = self.store.asset_data(kind, name).get("canary_metrics", [])
        cid = self.store.add_canary(kind, name, version, baseline, metrics, self.clock())
        return self.store.canaries(subject=subject)[-1] if cid else None

    def taint_new(self, subject: str, cause: str, cause_status: AssetStatus, *,
                  run_id: str | None = None) -> Outcome:
        """A claim version just produced from a bad (or tainted) version is suspect from the start."""
        if self._status(subject) is not None:
            return Outcome()
        tr = transition(subject, None, Event.TAINT, now=self.clock(), actor="taint",
                        reason=f"produced from {cause} ({cause_status.label})", cause=cause,
                        signal={"run": run_id})
        return self._commit([tr])

    def last_good(self, kind: str, name: str, *, before: str | None = None) -> str | None:
        """The newest trusted version of ``kind:name`` older than ``before``."""
        snap = self.store.oversight_snapshot()
        known = self.store.known_versions(AssetRef(kind, name))
        known = [(n, v, o) for n, v, o in known if n == name]
        key = {v: (o,) if o is not None else version_key(v) for _, v, o in known}
        ordered = sorted(key, key=lambda v: key[v])
        if before is not None and before in key:
            ordered = [v for v in ordered if key[v] < key[before]]
        good = [v for v in ordered if snap.status(kind, name, v) is AssetStatus.TRUSTED]
        return good[-1] if good else None

    # ---------------------------------------------------------------- pins

    def pin(self, ref: AssetRef | str, *, scope: str = "*", reason: str = "", actor: str = "user") -> Pin:
        """Hold dependents (in ``scope``) of an asset on one version."""
        ref = _ref(ref)
        if ref.version is None:
            raise OversightError(f"pin needs a version: {ref.key}@VERSION", subject=str(ref))
        pin = Pin(ref.kind, ref.name, ref.version, scope, reason)
        self.store.set_pin(pin, self.clock())
        self.store.append_audit([AuditRecord(ts=self.clock(), actor=_actor(actor), action="pin", subject=str(ref),
                                             reason=reason, data={"scope": scope})])
        return pin

    def unpin(self, ref: AssetRef | str, *, scope: str = "*", actor: str = "user") -> bool:
        ref = _ref(ref)
        removed = self.store.remove_pin(ref.kind, ref.name, scope)
        if removed:
            self.store.append_audit([AuditRecord(ts=self.clock(), actor=_actor(actor), action="unpin",
                                                 subject=ref.key, data={"scope": scope})])
        return removed

    # ------------------------------------------------------------ policies

    def apply_policy(self, policy: Policy, *, mode: Mode | str | None = None, share: float | None = None,
                     actor: str = "user") -> Policy:
        """Store a policy (a new version when its rules changed) with its rollout."""
        if mode is not None or share is not None:
            policy = policy.with_rollout(mode if mode is not None else policy.mode, share)
        elif policy.mode is Mode.ENFORCED and policy.share == 0.0:
            policy = policy.with_rollout(Mode.ENFORCED, 1.0)
        stored = self.store.put_policy(policy, self.clock())
        self.store.append_audit([AuditRecord(
            ts=self.clock(), actor=_actor(actor), action=f"policy {stored.mode.label}", subject=f"policy:{stored.name}",
            policy=stored.name, policy_version=stored.version, mode=stored.mode.label,
            reason=f"share {stored.share:g}", data={"policy": stored.to_doc()})])
        return stored

    def retire_policy(self, name: str, actor: str = "user") -> bool:
        done = self.store.retire_policy(name)
        if done:
            self.store.append_audit([AuditRecord(ts=self.clock(), actor=_actor(actor), action="policy retired",
                                                 subject=f"policy:{name}", policy=name)])
        return done

    # ------------------------------------------------------------ canaries

    def canary_start(self, ref: AssetRef | str, metrics: Sequence[str] = (), *, baseline: str | None = None,
                     actor: str = "user") -> CanaryRecord:
        """Put one version under a canary: it revalidates, served only to
        canary workflows, until :meth:`evaluate_canaries` decides."""
        ref = _ref(ref)
        if ref.version is None:
            raise OversightError(f"a canary needs a version: {ref.key}@VERSION", subject=str(ref))
        for m in metrics:
            Metric.parse(m)
        subject = str(ref)
        current = self._status(subject)
        event = Event.REVALIDATE if current in (AssetStatus.DEGRADED,) else Event.GATE
        baseline = baseline or self.last_good(ref.kind, ref.name, before=ref.version)
        now = self.clock()
        trs = [] if current is AssetStatus.REVALIDATING else [
            transition(subject, current, event, now=now, actor=_actor(actor), reason="canary started")]
        self._commit(trs, [AuditRecord(ts=now, actor=_actor(actor), action="canary start", subject=subject,
                                       reason=f"baseline {baseline or 'none'}", data={"metrics": list(metrics)})])
        metrics = list(metrics) or self.store.asset_data(ref.kind, ref.name).get("canary_metrics", [])
        self.store.add_canary(ref.kind, ref.name, ref.version, baseline, metrics, now)
        return self.store.canaries(subject=subject)[-1]

    def evaluate_canaries(self, ref: AssetRef | str | None = None) -> list[tuple[CanaryRecord, CanaryVerdict]]:
        """Judge every running canary (of ``ref``); pass promotes the version
        (and retracts the degraded versions it supersedes), fail retracts it."""
        canaries = self.store.canaries(status="running")
        if ref is not None:
            r = _ref(ref)
            canaries = [c for c in canaries if r.matches(c.kind, c.name, c.version)]
        if not canaries:
            return []
        obs = self.store.claim_observations()
        tags = self.store.run_tags()
        out = []
        for c in canaries:
            v = self._judge(c, obs, tags)
            out.append((c, v))
            now = self.clock()
            if v.outcome == "inconclusive":
                continue
            self.store.decide_canary(c.id, "passed" if v.passed else "failed", v.to_json(), now)
            current = self._status(c.ref)
            event = Event.PASS if v.passed else Event.FAIL
            if current is not AssetStatus.REVALIDATING:
                continue
            trs = [transition(c.ref, current, event, now=now, actor="canary", reason=v.reason,
                              signal=v.to_json())]
            if v.passed:
                for rec in self.store.version_records(c.kind, c.name, [AssetStatus.DEGRADED]):
                    if rec.version.startswith(RANGE_PREFIX) or not self._older(c.kind, c.name, rec.version, c.version):
                        continue
                    trs.append(transition(rec.ref, rec.status, Event.RETRACT, now=now, actor="canary",
                                          reason=f"superseded by {c.version}, which passed its canary"))
            self._commit(trs)
        return out

    def _older(self, kind: str, name: str, a: str, b: str) -> bool:
        known = {v: o for n, v, o in self.store.known_versions(AssetRef(kind, name)) if n == name}
        ka = (known[a],) if known.get(a) is not None else version_key(a)
        kb = (known[b],) if known.get(b) is not None else version_key(b)
        return ka < kb

    def _judge(self, c: CanaryRecord, obs: list[mon.ClaimObs], tags: dict[str, list[str]]) -> CanaryVerdict:
        cand_ref = c.ref
        base_ref = f"{c.kind}:{c.name}@{c.baseline}" if c.baseline else None
        candidate: dict[str, list[float]] = defaultdict(list)
        baseline: dict[str, list[float]] = defaultdict(list)
        for o in obs:
            if cand_ref in o.assets and "canary" in tags.get(o.run_id, ()):
                candidate[o.key].append(o.value)
            elif base_ref is not None and base_ref in o.assets:
                baseline[o.key].append(o.value)
        metrics = [Metric.parse(m) for m in c.metrics]
        if not metrics:
            metrics = [Metric(k) for k in sorted(set(candidate) & set(baseline))]
        return verdict(metrics, baseline, candidate)

    # ------------------------------------------------------------ monitors

    def run_monitors(self, *, apply: bool = True, min_score: float = 0.5,
                     keys: Sequence[str] | None = None, per_key: int | None = None) -> MonitorReport:
        """Run every monitor over committed data; feed the signals to the breaker.

        With ``keys`` (what the coordinator does when a run ends) only the
        inconsistency monitor runs, over those claim keys (and, with
        ``per_key``, over the newest that many runs' values of each).
        """
        findings = mon.Findings()
        obs = self.store.claim_observations(keys, per_key=per_key)
        findings.inconsistencies = mon.inconsistency(obs)
        if keys is None:
            findings.shifts = [s for s in self._shifts(obs) if s.significant]
            findings.failure_clusters = mon.verification_clusters(self.store.verification_observations())
            findings.disagreements = mon.redundancy(self.store.redundancy_observations())
        return self._report(findings, apply, min_score)

    def _report(self, findings: mon.Findings, apply: bool, min_score: float) -> MonitorReport:
        sigs = mon.signals(findings, min_score=min_score)
        outcome = Outcome()
        if apply:
            for sig in sigs:
                for subject in self._expand(sig.subject):
                    outcome.extend(self.signal(Signal(subject, sig.source, sig.reason, sig.score, sig.trip,
                                                      sig.evidence)))
        return MonitorReport(findings, sigs, outcome)

    def run_end(self, keys: Sequence[str], *, run_id: str | None = None, per_key: int | None = None,
                limit: int = RUN_END_LIMIT, budget: float = RUN_END_BUDGET,
                min_score: float = 0.5) -> MonitorReport:
        """The monitors a coordinator runs when a run ends; signals go through the breaker.

        Over the claim keys the run published (the newest ``per_key`` runs'
        values of each): inconsistency and output shift. Then, while the
        store holds at most ``limit`` committed and refuted checkpoints and
        ``budget`` seconds have not passed, the fleet-wide ones in order of
        cost: redundancy, clustered verification failures, and the
        concentration and coverage reports (kept in the report and logged as
        a ``monitor-report`` event, outside the run's own event stream). What is skipped is named in the report
        and logged: ``headwater monitors run`` runs everything.
        """
        started = self.clock()
        findings = mon.Findings()
        if keys:
            obs = self.store.claim_observations(keys, per_key=per_key)
            findings.inconsistencies = mon.inconsistency(obs)
            findings.shifts = [s for s in self._shifts(obs) if s.significant]
        fleet_wide: list[tuple[str, Callable[[], Any]]] = [
            ("redundancy", lambda: setattr(findings, "disagreements",
                                           mon.redundancy(self.store.redundancy_observations()))),
            ("verification", lambda: setattr(findings, "failure_clusters",
                                             mon.verification_clusters(self.store.verification_observations()))),
        ]
        reports: dict = {}
        fleet_wide.append(("concentration+coverage", lambda: reports.update(self.reports())))
        skipped: list[str] = []
        size = self.store.verdict_count()
        for name, run in fleet_wide:
            if size > limit:
                skipped.append(name)
            elif self.clock() - started > budget:
                skipped.append(name)
            else:
                run()
        if skipped:
            why = (f"{size:,} committed and refuted checkpoints > {limit:,}" if size > limit
                   else f"over the {budget:g} s budget")
            log.info("run %s ended: skipped monitors %s (%s); run `headwater monitors run` for them",
                     run_id or "?", ", ".join(skipped), why)
        report = self._report(findings, True, min_score)
        report.skipped = skipped
        if reports:
            report.reports = reports
            self.store.append_events([EventRecord(
                ts=self.clock(), kind="monitor-report", run_id=None,
                data={"run": run_id, "unwatched": reports["unwatched"], "herfindahl": reports["herfindahl"],
                      "concentration": reports["concentration"][:5]})])
        return report

    def _expand(self, subject: str) -> list[str]:
        ref = parse_ref(subject)
        if ref.version is not None:
            return [subject]
        return self.subjects(ref)

    def _shifts(self, obs: list[mon.ClaimObs]) -> list[mon.Shift]:
        """Output shift of each claim key across consecutive versions of each asset."""
        by: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for o in obs:
            for a in o.assets:
                asset, _, version = a.rpartition("@")
                by[(asset, o.key)][version].append(o.value)
        out = []
        for (asset, key), versions in sorted(by.items()):
            if len(versions) < 2:
                continue
            kind = asset.partition(":")[0]
            known = {v: o for _, v, o in self.store.known_versions(parse_ref(asset))} if kind == "claim" else {}
            order = sorted(versions, key=lambda v: (known[v],) if known.get(v) is not None else version_key(v))
            for a, b in zip(order, order[1:]):
                out.append(mon.output_shift(asset, key, a, b, versions[a], versions[b]))
        return out

    def reports(self) -> dict:
        """Concentration (what most workflows depend on) and coverage (what no monitor watches)."""
        deps = self.store.asset_dependents()
        rows, hhi = mon.concentration(deps, self.store.workflow_count())
        watchers: dict[str, set[str]] = defaultdict(set)
        obs = self.store.claim_observations()
        by_key: dict[str, set[str]] = defaultdict(set)
        for o in obs:
            by_key[o.key].add(o.workflow)
        cross = {k for k, w in by_key.items() if len(w) >= 2}
        wf_assets: dict[str, set[str]] = defaultdict(set)
        for asset, wfs in deps.items():
            for w in wfs:
                wf_assets[w].add(asset)
        for k in cross:
            watchers[f"claim:{k}"].add("inconsistency")
            for w in by_key[k]:
                for asset in wf_assets.get(w, ()):
                    watchers[asset].add("inconsistency")
        versions: dict[str, set[str]] = defaultdict(set)
        for u in self.store.asset_usage():
            if u.direction == "consumed":
                versions[f"{u.kind}:{u.name}"].add(u.version)
        for asset, vs in versions.items():
            if len(vs) >= 2:
                watchers[asset].add("output-shift")
        for o in self.store.redundancy_observations():
            watchers[o.asset].add("redundancy")
            for impl in (o.primary, o.secondary):
                watchers["lib:" + impl.rpartition("@")[0]].add("redundancy")
        verified_wfs = {self._workflow_of(e.run_id) for e in self.store.events_of_kind("verdict") if e.run_id}
        for w in verified_wfs:
            for asset in wf_assets.get(w or "", ()):
                watchers[asset].add("verification")
        for c in self.store.canaries():
            watchers[f"{c.kind}:{c.name}"].add("canary")
        assets = set(deps) | {f"claim:{k}" for k in by_key}
        cov = mon.coverage(assets, watchers)
        return {
            "concentration": [{"asset": r.asset, "workflows": r.workflows, "share": round(r.share, 4)} for r in rows],
            "herfindahl": round(hhi, 4),
            "coverage": [{"asset": c.asset, "monitors": list(c.monitors)} for c in cov],
            "unwatched": [c.asset for c in cov if not c.watched],
        }

    def _workflow_of(self, run_id: str) -> str | None:
        try:
            return self.store.get_run(run_id).workflow
        except Exception:
            return None

    # ------------------------------------------------------------- lineage

    def blast_radius(self, ref: AssetRef | str, *, introduced: str | None = None,
                     fixed: str | None = None) -> BlastRadius:
        return self.store.blast_radius(_ref(ref, introduced, fixed))

    def snapshot(self) -> Snapshot:
        return self.store.oversight_snapshot()


# ------------------------------------------------------------ policy files


def load_policies(path: str | Path) -> list[Policy]:
    """Policies from a YAML/JSON file (one document per policy) or a Python
    file (its ``Policy`` objects: ``POLICY``, ``POLICIES`` or any module global)."""
    path = Path(path)
    if not path.exists():
        raise OversightError(f"{path}: no such policy file", subject=str(path))
    if path.suffix == ".py":
        spec = importlib.util.spec_from_file_location(f"headwater_policy_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise OversightError(f"{path}: cannot import", subject=str(path))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found: list[Policy] = []
        for value in vars(module).values():
            if isinstance(value, Policy):
                found.append(value)
            elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Policy) for v in value):
                found.extend(value)
        if not found:
            raise OversightError(f"{path} defines no Policy", subject=str(path))
        return list({p.name: p for p in found}.values())
    import yaml

    text = path.read_text()
    try:
        docs = [json.loads(text)] if path.suffix == ".json" else [d for d in yaml.safe_load_all(text) if d]
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise OversightError(f"{path}: not valid YAML/JSON: {exc}", subject=str(path)) from None
    out = []
    for doc in docs:
        items = doc if isinstance(doc, list) else [doc]
        out.extend(policy_from_doc(d, source=str(path)) for d in items)
    return out


def _ref(ref: AssetRef | str, introduced: str | None = None, fixed: str | None = None) -> AssetRef:
    if isinstance(ref, AssetRef):
        if introduced or fixed:
            return parse_ref(ref.key, introduced=introduced, fixed=fixed)
        return ref
    try:
        return parse_ref(ref, introduced=introduced, fixed=fixed)
    except ValueError as exc:
        raise OversightError(str(exc), subject=str(ref)) from None


def _actor(actor: str) -> str:
    if actor == "user":
        import getpass

        try:
            actor = getpass.getuser()
        except (KeyError, OSError):
            actor = "unknown"
    return actor if ":" in actor else f"user:{actor}"

