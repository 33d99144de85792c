"""From replicates to the study's numbers, each with a bootstrap confidence interval.

Every replicate plays the same fleet under the four strategies, so
strategies are compared *paired*, replicate by replicate. A statistic is a
ratio of sums over replicates (say, corrupted results standing under
``both`` over those under ``per-workflow``); its 95% interval is the
percentile bootstrap over replicates (resampling whole replicates, which
keeps the pairing). With few replicates the intervals are wide, and say so.

Per regime and strategy (:func:`summarize_regime`):

* ``corrupt`` / ``standing`` -- corrupted results committed / still standing
  at the end, per replicate (mean and interval);
* ``prevented`` / ``contained`` -- the share of corrupted results committed /
  standing that the strategy avoids relative to no oversight;
* ``cascades`` -- planted errors whose corrupted results reached two or more
  workflows; ``stopped`` -- of the errors that cascade without oversight, the
  share whose corrupted results stand in fewer than two workflows at the end;
* ``overhead`` -- extra compute relative to no oversight (verification,
  monitors, canaries, redundancy, squashed and re-run work), as a share;
  ``delay`` -- stage-hours paused or held, per replicate; ``false_alarms``
  and ``false_alarm_hours`` per replicate;
* ``detected`` -- the share of planted shared-asset errors identified within
  the period, and the median hours it took.

And the infrastructure's margin (``infra``): ``both`` against
``per-workflow`` (what infrastructure oversight adds to workflows' own
checks) and ``infrastructure`` against ``none``, each as the reduction in
corrupted results standing and committed, the share of per-workflow's
cascades that ``both`` stopped, and the extra cost.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from headwater.study.ledger import COMPUTE
from headwater.study.params import STRATEGIES

BOOTSTRAP = 2000
LEVEL = 0.95


def _interval(num: np.ndarray, den: np.ndarray, *, transform=lambda r: r, seed: int = 0,
              groups: np.ndarray | None = None) -> dict[str, float]:
    """``transform(sum(num) / sum(den))`` and its percentile bootstrap interval over replicates.

    With ``groups`` (one label per replicate), replicates with the same
    label (the same fleet seed in several regimes) are summed first and
    resampled together.
    """
    num, den = np.asarray(num, float), np.asarray(den, float)
    if groups is not None:
        labels, inverse = np.unique(np.asarray(groups), return_inverse=True)
        num = np.bincount(inverse, weights=num, minlength=len(labels))
        den = np.bincount(inverse, weights=den, minlength=len(labels))
    n = len(num)
    total = den.sum()
    point = transform(num.sum() / total) if total else math.nan
    if n < 2 or not total:
        return {"value": float(point), "lo": math.nan, "hi": math.nan, "n": int(n)}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, (BOOTSTRAP, n))
    dn = den[idx].sum(axis=1)
    ok = dn > 0
    ratios = transform(num[idx].sum(axis=1)[ok] / dn[ok])
    lo, hi = np.percentile(ratios, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return {"value": float(point), "lo": float(lo), "hi": float(hi), "n": int(n)}


def _mean(values: np.ndarray, groups: np.ndarray | None = None) -> dict[str, float]:
    return _interval(np.asarray(values, float), np.ones(len(values)), groups=groups)


def _reduction(new: np.ndarray, old: np.ndarray, groups: np.ndarray | None = None) -> dict[str, float]:
    """Share of ``old`` avoided by ``new`` (1 - new/old), with its interval."""
    return _interval(new, old, transform=lambda r: 1.0 - r, groups=groups)


def _shared(rep: dict[str, Any]) -> list[str]:
    return [str(e["id"]) for e in rep["errors"] if e["kind"] != "local"]


def summarize_regime(regime: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one regime (see the module docstring).

    A pooled pseudo-regime (replicates of several regimes) is resampled by
    fleet seed, so that one seed's replicates in different regimes count as
    one draw.
    """
    reps = regime["replicates"]
    outs = {s: [r["outcomes"][s] for r in reps] for s in STRATEGIES}
    g = np.array([r["seed"] for r in reps])

    def mean(values: np.ndarray) -> dict[str, float]:
        return _mean(values, g)

    def reduction(new: np.ndarray, old: np.ndarray) -> dict[str, float]:
        return _reduction(new, old, g)

    def ratio(num: np.ndarray, den: np.ndarray) -> dict[str, float]:
        return _interval(num, den, groups=g)

    def arr(s: str, f) -> np.ndarray:
        return np.array([f(o) for o in outs[s]], float)

    total = {s: arr(s, lambda o: sum(o["compute"][k] for k in COMPUTE)) for s in STRATEGIES}
    corrupt = {s: arr(s, lambda o: o["corrupt"]) for s in STRATEGIES}
    standing = {s: arr(s, lambda o: o["standing"]) for s in STRATEGIES}

    def cascades_of(o) -> set[str]:
        return {e for e, r in o["reach"].items() if r >= 2}

    def stopped(s: str, ref: str) -> tuple[np.ndarray, np.ndarray]:
        num, den = [], []
        for o_ref, o in zip(outs[ref], outs[s]):
            base = {e for e, r in o_ref["standing_reach"].items() if r >= 2} if ref != "none" else cascades_of(o_ref)
            num.append(sum(1 for e in base if o["standing_reach"].get(e, 0) < 2))
            den.append(len(base))
        return np.array(num, float), np.array(den, float)

    strategies = {}
    for s in STRATEGIES:
        lat: list[float] = []
        found = planted = 0
        for rep, o in zip(reps, outs[s]):
            for e in _shared(rep):
                planted += 1
                if e in o["latency"]:
                    found += 1
                    lat.append(o["latency"][e])
        num, den = stopped(s, "none")
        strategies[s] = {
            "corrupt": mean(corrupt[s]),
            "standing": mean(standing[s]),
            "prevented": reduction(corrupt[s], corrupt["none"]),
            "contained": reduction(standing[s], standing["none"]),
            "cascades": mean(arr(s, lambda o: sum(1 for r in o["reach"].values() if r >= 2))),
            "stopped": ratio(num, den),
            "consumed_corrupt": mean(arr(s, lambda o: o["consumed_corrupt"])),
            "overhead": ratio(total[s] - total["none"], total["none"]),
            "compute": {k: float(np.mean(arr(s, lambda o, k=k: o["compute"][k]))) for k in COMPUTE},
            "delay": mean(arr(s, lambda o: sum(o["delay"].values()))),
            "false_alarms": mean(arr(s, lambda o: o["false_alarms"])),
            "false_alarm_hours": mean(arr(s, lambda o: o["false_alarm_hours"])),
            "detected": {"share": found / planted if planted else math.nan, "planted": planted,
                         "median_hours": float(np.median(lat)) if lat else math.nan},
            "workflows_failed": mean(arr(s, lambda o: o["workflows_failed"])),
        }
    num, den = stopped("both", "per-workflow")
    infra = {
        "standing": reduction(standing["both"], standing["per-workflow"]),
        "corrupt": reduction(corrupt["both"], corrupt["per-workflow"]),
        "stopped": ratio(num, den),
        "cost": ratio(total["both"] - total["per-workflow"], total["none"]),
        "delay": mean(arr("both", lambda o: sum(o["delay"].values())) -
                       arr("per-workflow", lambda o: sum(o["delay"].values()))),
        "false_alarms": strategies["both"]["false_alarms"],
        "alone_standing": reduction(standing["infrastructure"], standing["none"]),
        "alone_corrupt": reduction(corrupt["infrastructure"], corrupt["none"]),
        "alone_cost": ratio(total["infrastructure"] - total["none"], total["none"]),
    }
    lo = infra["standing"]["lo"]
    hi = infra["standing"]["hi"]
    infra["verdict"] = ("wins" if lo > 0 else "loses" if hi < 0 else "no clear difference") if not math.isnan(lo) \
        else "too few replicates"
    return {
        "name": regime["name"], "axis": regime["axis"], "label": regime["label"], "changes": regime["changes"],
        "reference": regime.get("reference", "baseline"),
        "replicates": len(reps),
        "top5_reach": float(np.mean([r["top5_reach"] for r in reps])),
        "errors": {"shared": float(np.mean([len(_shared(r)) for r in reps])),
                   "local": float(np.mean([sum(1 for e in r["errors"] if e["kind"] == "local") for r in reps]))},
        "strategies": strategies,
        "infra": infra,
        "cascade_sizes": {s: [v for o in outs[s] for v in o["cascade"].values()] for s in STRATEGIES},
    }


def summarize(sweep: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`summarize_regime` for every regime of a sweep, in order."""
    return [summarize_regime(r) for r in sweep]


def fmt(ci: dict[str, float], pct: bool = True, digits: int = 0) -> str:
    """``12% (95% CI 8% to 15%)`` or ``3.1 (2.0 to 4.2)``."""
    def one(x: float) -> str:
        if math.isnan(x):
            return "n/a"
        return f"{100 * x:.{digits}f}%" if pct else f"{x:.{digits}f}"
    if math.isnan(ci.get("lo", math.nan)):
        return one(ci["value"])
    return f"{one(ci['value'])} ({one(ci['lo'])} to {one(ci['hi'])})"
