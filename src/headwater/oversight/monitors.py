"""Fleet monitors: pure functions over committed data that point at shared assets.

Each monitor takes plain observations (gathered from the store by the shell)
and returns findings; :func:`signals` turns findings into
:class:`~headwater.oversight.breaker.Signal` for the breaker.

* :func:`inconsistency` -- claims under one key whose values disagree beyond
  their combined uncertainty. Producers are clustered (single linkage on
  agreement) and every shared asset version in the producers' lineage is
  ranked by how well its use separates a minority cluster from the rest
  (Youden's J: share of the cluster that used it minus share of the others
  that did). The asset that best explains the disagreement comes first.
* :func:`output_shift` -- a tracked scalar's distribution with one asset
  version against another (Mann-Whitney).
* :func:`verification_clusters` -- verification failures concentrated among
  the dependents of one asset version (one-sided Fisher exact test against
  everyone else).
* :func:`redundancy` -- N-version disagreement: calls run on two
  implementations of one asset whose results differ.
* :func:`concentration` and :func:`coverage` -- reports on the risks that
  oversight itself adds: the assets most of the fleet depends on (a
  monoculture), and the assets no monitor watches (a blind spot).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from headwater.oversight.breaker import Signal
from headwater.oversight.stats import fisher_greater, mann_whitney, median

# --------------------------------------------------------- inconsistency


@dataclass(frozen=True)
class ClaimObs:
    """One committed claim value and the shared asset versions behind it.

    ``assets`` are ``kind:name@version`` refs used by the producing
    checkpoint or any of its ancestors in its run.
    """

    key: str
    value: float
    uncertainty: float | None
    checkpoint: str
    run_id: str
    workflow: str
    assets: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Cluster:
    members: tuple[ClaimObs, ...]

    @property
    def center(self) -> float:
        weights = [1 / (m.uncertainty**2) if m.uncertainty else None for m in self.members]
        if all(w is not None for w in weights):
            return sum(w * m.value for w, m in zip(weights, self.members)) / sum(weights)  # type: ignore[operator]
        return median([m.value for m in self.members])

    @property
    def workflows(self) -> list[str]:
        return sorted({m.workflow for m in self.members})

    def to_json(self) -> dict:
        return {"center": self.center, "n": len(self.members), "workflows": self.workflows,
                "values": [m.value for m in self.members]}


@dataclass(frozen=True)
class Suspect:
    """A shared asset version ranked by how well its use separates clusters."""

    asset: str
    score: float
    cluster: int
    used_by: tuple[str, ...]

    def to_json(self) -> dict:
        return {"asset": self.asset, "score": round(self.score, 4), "cluster": self.cluster,
                "used_by": list(self.used_by)}


@dataclass(frozen=True)
class Inconsistency:
    key: str
    clusters: tuple[Cluster, ...]
    majority: int
    suspects: tuple[Suspect, ...]

    def to_json(self) -> dict:
        return {"key": self.key, "majority": self.majority,
                "clusters": [c.to_json() for c in self.clusters],
                "suspects": [s.to_json() for s in self.suspects]}


def agree(a: ClaimObs, b: ClaimObs, sigmas: float = 3.0, rtol: float = 1e-9) -> bool:
    """Whether two values agree within ``sigmas`` combined standard uncertainties."""
    combined = math.hypot(a.uncertainty or 0.0, b.uncertainty or 0.0)
    return abs(a.value - b.value) <= sigmas * combined + rtol * max(abs(a.value), abs(b.value))


def cluster(obs: Sequence[ClaimObs], sigmas: float = 3.0) -> list[Cluster]:
    """Single-linkage clusters of agreeing values, in value order."""
    ordered = sorted(obs, key=lambda o: (o.value, o.checkpoint))
    groups: list[list[ClaimObs]] = []
    for o in ordered:
        if groups and any(agree(o, m, sigmas) for m in groups[-1]):
            groups[-1].append(o)
        else:
            groups.append([o])
    return [Cluster(tuple(g)) for g in groups]


def inconsistency(observations: Iterable[ClaimObs], *, sigmas: float = 3.0,
                  min_users: int = 2, min_cluster: int = 2) -> list[Inconsistency]:
    """Keys whose claims fall into more than one cluster, with ranked suspects.

    Only keys published by at least two workflows are compared (one
    workflow's values drifting over time is an output shift, not a
    cross-workflow inconsistency).

    The majority cluster is the one with the most distinct workflows (then
    the most values). Suspects are ranked against the other clusters of at
    least ``min_cluster`` values (a lone outlier is reported but accuses
    nothing: every asset it used would separate it equally well). A suspect
    must be used by at least ``min_users`` producers (it is a *shared*
    asset); its score is the best separation of any such cluster. Ties are
    broken by fewer users, then by name.
    """
    by_key: dict[str, list[ClaimObs]] = defaultdict(list)
    for o in observations:
        if isinstance(o.value, (int, float)) and not isinstance(o.value, bool) and math.isfinite(o.value):
            by_key[o.key].append(o)
    out = []
    for key in sorted(by_key):
        clusters = cluster(by_key[key], sigmas)
        if len(clusters) < 2 or len({o.workflow for o in by_key[key]}) < 2:
            continue
        majority = max(range(len(clusters)), key=lambda i: (len(clusters[i].workflows), len(clusters[i].members), -i))
        members = [(i, m) for i, c in enumerate(clusters) for m in c.members]
        users: dict[str, list[tuple[int, ClaimObs]]] = defaultdict(list)
        for i, m in members:
            for asset in m.assets:
                users[asset].append((i, m))
        suspects = []
        for asset, used in users.items():
            if len(used) < min_users:
                continue
            best, best_cluster = -1.0, -1
            for ci, c in enumerate(clusters):
                if ci == majority or len(c.members) < min_cluster:
                    continue
                inside = sum(1 for i, _ in used if i == ci) / len(c.members)
                rest = len(members) - len(c.members)
                outside = sum(1 for i, _ in used if i != ci) / rest if rest else 0.0
                if inside - outside > best:
                    best, best_cluster = inside - outside, ci
            if best > 0:
                suspects.append(Suspect(asset, best, best_cluster, tuple(sorted({m.workflow for _, m in used}))))
        suspects.sort(key=lambda s: (-s.score, len(s.used_by), s.asset))
        out.append(Inconsistency(key, tuple(clusters), majority, tuple(suspects)))
    return out


# ----------------------------------------------------------- output shift


@dataclass(frozen=True)
class Shift:
    asset: str
    key: str
    before: str
    after: str
    n_before: int
    n_after: int
    median_before: float
    median_after: float
    p_value: float
    significant: bool

    def to_json(self) -> dict:
        return dict(self.__dict__)


def output_shift(asset: str, key: str, before_version: str, after_version: str,
                 before: Sequence[float], after: Sequence[float], *, alpha: float = 0.01,
                 min_n: int = 5, min_effect: float = 0.0) -> Shift:
    """Whether ``key`` moved when dependents went from one version to the other.

    Significant when both sides have ``min_n`` values, the Mann-Whitney
    p-value is below ``alpha`` and the medians differ by more than
    ``min_effect`` (relative to the earlier median).
    """
    mb, ma = median(before), median(after)
    if len(before) < min_n or len(after) < min_n:
        return Shift(asset, key, before_version, after_version, len(before), len(after), mb, ma, 1.0, False)
    res = mann_whitney(after, before)
    effect = abs(ma - mb) / abs(mb) if mb else abs(ma - mb)
    return Shift(asset, key, before_version, after_version, len(before), len(after), mb, ma,
                 res.p_value, res.p_value < alpha and effect > min_effect)


# ----------------------------------------------- clustered verification


@dataclass(frozen=True)
class VerificationObs:
    """A verified (or refuted / failed) checkpoint and the asset versions it used."""

    checkpoint: str
    workflow: str
    failed: bool
    assets: frozenset[str] = frozenset()


@dataclass(frozen=True)
class FailureCluster:
    asset: str
    failures: int
    dependents: int
    rate: float
    baseline_rate: float
    p_value: float
    workflows: tuple[str, ...]

    def to_json(self) -> dict:
        return {**self.__dict__, "workflows": list(self.workflows)}


def verification_clusters(obs: Sequence[VerificationObs], *, alpha: float = 0.01,
                          min_failures: int = 3) -> list[FailureCluster]:
    """Asset versions whose dependents fail verification more than everyone else."""
    failures_total = sum(1 for o in obs if o.failed)
    out = []
    by_asset: dict[str, list[VerificationObs]] = defaultdict(list)
    for o in obs:
        for a in o.assets:
            by_asset[a].append(o)
    for asset, deps in by_asset.items():
        f = sum(1 for o in deps if o.failed)
        if f < min_failures:
            continue
        ok = len(deps) - f
        f_other = failures_total - f
        ok_other = len(obs) - len(deps) - f_other
        p = fisher_greater(f, ok, f_other, ok_other)
        if p < alpha:
            rest = len(obs) - len(deps)
            out.append(FailureCluster(asset, f, len(deps), f / len(deps), f_other / rest if rest else 0.0, p,
                                      tuple(sorted({o.workflow for o in deps if o.failed}))))
    out.sort(key=lambda c: (c.p_value, -c.failures, c.asset))
    return out


# ------------------------------------------------- N-version redundancy


@dataclass(frozen=True)
class RedundancyObs:
    """One call run on two implementations of ``asset`` (``NAME``)."""

    asset: str
    primary: str
    secondary: str
    agree: bool
    detail: str = ""


@dataclass(frozen=True)
class Disagreement:
    asset: str
    calls: int
    disagreements: int
    implementations: tuple[str, ...]
    odd_one_out: str | None

    @property
    def rate(self) -> float:
        return self.disagreements / self.calls if self.calls else 0.0

    def to_json(self) -> dict:
        return {"asset": self.asset, "calls": self.calls, "disagreements": self.disagreements,
                "rate": round(self.rate, 4), "implementations": list(self.implementations),
                "odd_one_out": self.odd_one_out}


def redundancy(obs: Sequence[RedundancyObs], *, max_rate: float = 0.0) -> list[Disagreement]:
    """Assets whose implementations disagree on more than ``max_rate`` of sampled calls.

    With three or more implementations, the one involved in the most
    disagreements while the others agree is named the odd one out; with two
    there is no telling which is wrong, and both are suspect.
    """
    by_asset: dict[str, list[RedundancyObs]] = defaultdict(list)
    for o in obs:
        by_asset[o.asset].append(o)
    out = []
    for asset, calls in sorted(by_asset.items()):
        bad = [o for o in calls if not o.agree]
        if not bad or len(bad) / len(calls) <= max_rate:
            continue
        impls = sorted({o.primary for o in calls} | {o.secondary for o in calls})
        odd = None
        if len(impls) >= 3:
            blame = Counter(x for o in bad for x in (o.primary, o.secondary))
            good_pairs = {frozenset((o.primary, o.secondary)) for o in calls if o.agree}
            for impl, _ in blame.most_common():
                others = [i for i in impls if i != impl]
                if all(frozenset((a, b)) in good_pairs for a in others for b in others if a < b):
                    odd = impl
                    break
        out.append(Disagreement(asset, len(calls), len(bad), tuple(impls), odd))
    return out


def values_agree(a: Any, b: Any, rtol: float = 1e-9, atol: float = 0.0) -> bool:
    """Whether two results of one shared call agree (numbers, arrays, containers)."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=rtol, abs_tol=atol) or (math.isnan(a) and math.isnan(b))
    if type(a).__name__ == "ndarray" or type(b).__name__ == "ndarray":
        import numpy as np

        x, y = np.asarray(a), np.asarray(b)
        return x.shape == y.shape and bool(np.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(values_agree(a[k], b[k], rtol, atol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(values_agree(x, y, rtol, atol) for x, y in zip(a, b))
    return a == b


# ---------------------------------------------- concentration, coverage


@dataclass(frozen=True)
class Concentration:
    asset: str
    workflows: int
    share: float


def concentration(dependents: Mapping[str, set[str]], total_workflows: int) -> tuple[list[Concentration], float]:
    """Assets by the share of workflows that depend on them, and the
    Herfindahl index of those dependencies (1 = everything on one asset)."""
    rows = [Concentration(a, len(w), len(w) / total_workflows if total_workflows else 0.0)
            for a, w in dependents.items()]
    rows.sort(key=lambda r: (-r.share, r.asset))
    total = sum(r.workflows for r in rows)
    hhi = sum((r.workflows / total) ** 2 for r in rows) if total else 0.0
    return rows, hhi


@dataclass(frozen=True)
class Coverage:
    asset: str
    monitors: tuple[str, ...]

    @property
    def watched(self) -> bool:
        return bool(self.monitors)


def coverage(assets: Iterable[str], watchers: Mapping[str, Iterable[str]]) -> list[Coverage]:
    """Each asset with the monitors that watch it; unwatched ones first."""
    rows = [Coverage(a, tuple(sorted(set(watchers.get(a, ()))))) for a in set(assets)]
    rows.sort(key=lambda c: (c.watched, c.asset))
    return rows


# ----------------------------------------------------------------- signals


@dataclass
class Findings:
    """Everything one pass of the monitors found."""

    inconsistencies: list[Inconsistency] = field(default_factory=list)
    shifts: list[Shift] = field(default_factory=list)
    failure_clusters: list[FailureCluster] = field(default_factory=list)
    disagreements: list[Disagreement] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"inconsistencies": [i.to_json() for i in self.inconsistencies],
                "shifts": [s.to_json() for s in self.shifts],
                "failure_clusters": [c.to_json() for c in self.failure_clusters],
                "disagreements": [d.to_json() for d in self.disagreements]}


def signals(findings: Findings, *, min_score: float = 0.5) -> list[Signal]:
    """The signals the findings raise, one per suspect asset version.

    Inconsistency: the top suspect of each key if its score reaches
    ``min_score`` (its score is the signal's). Output shift and clustered
    failures: score 1 - p. Redundancy: the odd implementation out (score
    0.5 + half the disagreement rate), or, when there is none, every
    implementation involved (score 0.5: suspect, never tripped on this
    evidence alone).
    """
    out: list[Signal] = []
    for inc in findings.inconsistencies:
        if inc.suspects and inc.suspects[0].score >= min_score:
            top = inc.suspects[0]
            out.append(Signal(top.asset, "monitor:inconsistency",
                              f"claims {inc.key!r} disagree across {len(inc.clusters)} clusters; "
                              f"{top.asset} separates them (J={top.score:.2f})",
                              score=top.score, evidence=inc.to_json()))
    for s in findings.shifts:
        if s.significant:
            out.append(Signal(f"{s.asset}@{s.after}", "monitor:output-shift",
                              f"{s.key} moved from {s.median_before:.6g} to {s.median_after:.6g} "
                              f"(p={s.p_value:.2g})", score=1 - s.p_value, evidence=s.to_json()))
    for c in findings.failure_clusters:
        out.append(Signal(c.asset, "monitor:verification",
                          f"{c.failures}/{c.dependents} dependents failed verification "
                          f"(others {c.baseline_rate:.0%}; p={c.p_value:.2g})",
                          score=1 - c.p_value, evidence=c.to_json()))
    for d in findings.disagreements:
        # With an odd one out the blame is clear and a high rate may trip the
        # breaker; between two implementations it is not, and both are suspect.
        kind = d.asset.partition(":")[0] or "lib"
        subjects = [d.odd_one_out] if d.odd_one_out else list(d.implementations)
        score = min(1.0, 0.5 + d.rate / 2) if d.odd_one_out else 0.5
        for impl in subjects:
            out.append(Signal(f"{kind}:{impl}", "monitor:redundancy",
                              f"{d.disagreements}/{d.calls} redundant calls of {d.asset} disagreed",
                              score=score, evidence=d.to_json()))
    return out
