"""Regimes, replicates and the parallel run of a sweep.

A :class:`Regime` is the default :class:`~headwater.study.params.Params`
with some fields changed, and a place on one axis of the study:

* ``map`` -- the regime map: concentration of the shared core (``zipf``)
  crossed with the predictive power of global signals (``signal``);
* ``change`` -- how fast shared assets change (``change_rate``);
* ``cost`` -- the cost of global signals (``monitor_cost``);
* ``bespoke`` -- the share of bespoke assets (``bespoke_share``);
* ``length`` -- workflow length (``stages``);
* ``errors`` -- where the silent errors are: mostly local bugs, or mostly
  in shared assets (``p_local_bug``, ``shared_errors``);
* ``risk`` -- the risks oversight adds, each switched on for sure (a bad
  global policy that the rollout gates miss, monitors blind to library
  bugs, synchronized rollouts, monoculture) or all off, with strong global
  signals (where the monitors matter), against the map's cell there.

:func:`plan` lists the regimes of the default run or of ``--quick``.
:func:`run_sweep` runs ``replicates`` replicates of each regime; a
replicate draws one fleet (:func:`~headwater.study.fleet.make_fleet`) and
plays it under the four strategies. Replicate ``k``'s seed is derived from
the sweep seed and ``k`` with :class:`numpy.random.SeedSequence` and is the
same in every regime (common random numbers: regimes differ by their
parameters, not by their luck), so results do not depend on how many worker
processes ran them or in which order they finished.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headwater.study.fleet import make_fleet
from headwater.study.params import QUICK, STRATEGIES, Params
from headwater.study.sim import simulate


@dataclass(frozen=True)
class Regime:
    """A named set of parameter changes on one axis of the study."""

    name: str
    axis: str
    changes: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    reference: str = "baseline"
    """The regime this one is compared with in the report."""

    def params(self, base: Params) -> Params:
        return base.with_(**self.changes)


MAP_ZIPF = (0.0, 0.6, 1.1, 1.6)
MAP_SIGNAL = (0.5, 2.0, 8.0)


def plan(quick: bool = False) -> list[Regime]:
    """The regimes of a run: the default sweep, or a small one for ``--quick``."""
    regimes: list[Regime] = []
    zipfs, sigs = ((0.0, 1.6), (0.5, 8.0)) if quick else (MAP_ZIPF, MAP_SIGNAL)
    default = Params()
    for z in zipfs:
        for sgl in sigs:
            if (z, sgl) != (default.zipf, default.signal):
                regimes.append(Regime(f"map z={z:g} s={sgl:g}", "map", {"zipf": z, "signal": sgl},
                                      f"zipf {z:g}, signal {sgl:g}"))
    # the defaults are also the regime map's cell at the default concentration and signal
    regimes.append(Regime("baseline", "baseline", {"zipf": default.zipf, "signal": default.signal}, "defaults"))
    if quick:
        return regimes
    for v in (0.25, 4.0):
        regimes.append(Regime(f"change {v:g}", "change", {"change_rate": v}, f"{v:g} versions/asset/month"))
    for v in (0.0005, 0.01):
        regimes.append(Regime(f"cost {v:g}", "cost", {"monitor_cost": v}, f"{v:g} stage-h/claim"))
    for v in (0.0, 0.6, 0.9):
        regimes.append(Regime(f"bespoke {v:g}", "bespoke", {"bespoke_share": v}, f"{v:.0%} bespoke"))
    for v in (3, 12):
        regimes.append(Regime(f"length {v}", "length", {"stages": v}, f"{v} stages"))
    regimes.append(Regime("errors mostly local", "errors", {"p_local_bug": 0.3, "shared_errors": 2.0},
                          "mostly local bugs"))
    regimes.append(Regime("errors mostly shared", "errors", {"p_local_bug": 0.03, "shared_errors": 8.0},
                          "mostly shared-asset errors"))
    # risks matter where infrastructure oversight works: with strong global signals
    strong = {"zipf": default.zipf, "signal": 8.0}
    risks = {
        "no risks": {"p_bad_policy": 0.0, "p_blind": 0.0, "reuse_uplift": 1.0},
        "bad policy past the gates": {"p_bad_policy": 1.0, "p_detect_bad_policy": 0.0},
        "monitors blind to library bugs": {"blind_kind": "library"},
        "synchronized rollouts": {"synchronized": True},
        "monoculture": {"reuse_uplift": 1.5, "auto_upgrade": True},
    }
    for name, ch in risks.items():
        regimes.append(Regime(f"risk {name}", "risk", {**strong, **ch}, f"{name} (signal 8)",
                              reference=f"map z={default.zipf:g} s=8"))
    return regimes


def base_params(quick: bool = False) -> Params:
    """The defaults every regime starts from (a smaller fleet with ``--quick``)."""
    return Params(**QUICK) if quick else Params()


def replicate_seed(seed: int, rep: int) -> int:
    """The fleet seed of replicate ``rep`` in a sweep seeded ``seed`` (the same in every regime)."""
    ss = np.random.SeedSequence([seed, rep])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def run_replicate(params: Params, seed: int) -> dict[str, Any]:
    """One fleet under every strategy: the outcomes and what describes the fleet."""
    fleet = make_fleet(params, seed)
    out = {s: simulate(fleet, s).as_dict() for s in STRATEGIES}
    errors = [{"id": e.idx, "kind": e.kind, "time": e.time, "asset": fleet.assets[e.asset].name}
              for e in fleet.errors]
    return {
        "seed": seed, "outcomes": out, "errors": errors, "top5_reach": fleet.top_reach(5),
        "bad_policy": None if fleet.bad_policy is None else fleet.bad_policy.kind, "blind": fleet.blind,
    }


def _job(args: tuple[int, int, dict[str, Any], int]) -> tuple[int, int, dict[str, Any]]:
    i, rep, params, seed = args
    return i, rep, run_replicate(Params(**params), seed)


def default_workers() -> int:
    """The machine's cores (as many as this process may use)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def run_sweep(regimes: Iterable[Regime], *, base: Params, replicates: int, seed: int, workers: int,
              progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Run every replicate of every regime; ``progress(done, total)`` after each.

    Returns one entry per regime: its name, axis, label, parameters and the
    list of replicates in replicate order. With ``workers`` > 1 the
    replicates run in a :class:`~concurrent.futures.ProcessPoolExecutor`.
    """
    regimes = list(regimes)
    jobs = []
    for i, r in enumerate(regimes):
        p = r.params(base).as_dict()
        for rep in range(replicates):
            jobs.append((i, rep, p, replicate_seed(seed, rep)))
    done: dict[tuple[int, int], dict[str, Any]] = {}
    total = len(jobs)
    if progress:
        progress(0, total)
    # the slow regimes first, so the last replicates to finish are short ones
    jobs.sort(key=lambda j: -(j[2]["stages"] * j[2]["n_workflows"]))
    if workers <= 1 or total <= 1:
        for job in jobs:
            i, rep, res = _job(job)
            done[(i, rep)] = res
            if progress:
                progress(len(done), total)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_job, job) for job in jobs]
            for fut in as_completed(futures):
                i, rep, res = fut.result()
                done[(i, rep)] = res
                if progress:
                    progress(len(done), total)
    out = []
    for i, r in enumerate(regimes):
        out.append({
            "name": r.name, "axis": r.axis, "label": r.label, "changes": dict(r.changes), "reference": r.reference,
            "params": r.params(base).as_dict(),
            "replicates": [done[(i, rep)] for rep in range(replicates)],
        })
    return out
