"""The cascade study simulator: the regimes the issue names, determinism, and honest counting."""

from __future__ import annotations

import dataclasses

import pytest

from headwater.oversight import AssetStatus
from headwater.schedule import State
from headwater.study import STRATEGIES, Params, ReconcileError, make_fleet, simulate
from headwater.study.ledger import COMPUTE, reconcile
from headwater.study.sim import Simulation

SMALL = dict(n_workflows=40, horizon_days=40.0, arrival_days=20.0, n_shared=20)
"""A small fleet: fast, and still a fleet."""


def outcomes(params: Params, seed: int) -> dict:
    fleet = make_fleet(params, seed)
    return {s: simulate(fleet, s) for s in STRATEGIES}


def test_no_shared_assets_gives_infrastructure_oversight_no_advantage():
    # nothing shared: no shared core, every workflow on its own compute, its own claim topic, and
    # nobody reads anyone else's claims; only local bugs remain
    params = Params(**SMALL).with_(n_shared=0, n_pools=0, p_consume=0.0, topics_per_workflow=1.0,
                                   p_local_bug=0.3, p_bad_policy=0.0)
    for seed in range(3):
        fleet = make_fleet(params, seed)
        assert fleet.errors and all(e.kind == "local" for e in fleet.errors)
        assert not any(a.shared for a in fleet.assets)
        out = {s: simulate(fleet, s) for s in STRATEGIES}
        for o in out.values():
            assert o.cascades == 0 and o.consumed_corrupt == 0
        assert out["per-workflow"].corrupt > 0
        # infrastructure oversight changes nothing it is meant to change ...
        for with_infra, without in (("infrastructure", "none"), ("both", "per-workflow")):
            a, b = out[with_infra], out[without]
            assert (a.corrupt, a.standing, a.cascade) == (b.corrupt, b.standing, b.cascade)
            assert a.latency == b.latency
            # ... and still costs its monitors
            assert a.compute["monitoring"] > 0
            assert a.total_compute > b.total_compute


def test_one_asset_shared_by_every_workflow_gives_it_a_large_advantage():
    params = Params(**SMALL).with_(
        n_shared=1, shared_kinds={"library": 1.0}, error_kinds={"library": 1.0}, bespoke_share=0.0,
        shared_errors=3.0, p_local_bug=0.0, p_bad_policy=0.0, p_blind=0.0, signal=4.0,
    )
    totals = {s: [0, 0] for s in STRATEGIES}
    for seed in range(4):
        fleet = make_fleet(params, seed)
        users = fleet.users()
        assert len(users[0]) == len(fleet.workflows)  # the one asset is used by every workflow
        for s, o in ((s, simulate(fleet, s)) for s in STRATEGIES):
            totals[s][0] += o.corrupt
            totals[s][1] += o.standing
    none, pw, infra, both = (totals[s] for s in STRATEGIES)
    assert none[0] > 50
    # infrastructure oversight leaves far fewer corrupted results standing than none, or than
    # per-workflow oversight, and added to per-workflow oversight it still cuts them by half
    assert infra[1] < 0.3 * none[1]
    assert infra[1] < 0.5 * pw[1]
    assert both[1] < 0.5 * pw[1]
    assert both[0] < pw[0]


def test_deterministic_per_seed():
    params = Params(**SMALL)
    a, b = make_fleet(params, 7), make_fleet(params, 7)
    assert a == b
    assert make_fleet(params, 8) != a
    for s in STRATEGIES:
        assert simulate(a, s).as_dict() == simulate(b, s).as_dict()


def test_sweep_results_do_not_depend_on_workers():
    from headwater.study.sweep import Regime, run_sweep

    base = Params(n_workflows=20, horizon_days=30.0, arrival_days=15.0, n_shared=10)
    regimes = [Regime("a", "map", {"zipf": 0.0}), Regime("b", "map", {"zipf": 1.6})]
    one = run_sweep(regimes, base=base, replicates=2, seed=3, workers=1)
    two = run_sweep(regimes, base=base, replicates=2, seed=3, workers=2)
    assert one == two
    seeds = [[rep["seed"] for rep in r["replicates"]] for r in one]
    assert seeds[0] == seeds[1] and seeds[0][0] != seeds[0][1]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_metrics_reconcile(strategy):
    params = Params(**SMALL).with_(shared_errors=6.0, p_bad_policy=1.0, signal=4.0)
    for seed in range(3):
        sim = Simulation(make_fleet(params, seed), strategy)
        out = sim.run()
        results = sim.results
        # every corrupted result counted once, and attributed to one planted error
        slots: dict[tuple[int, int], list] = {}
        for r in results:
            slots.setdefault((r.wf, r.stage), []).append(r)
        corrupted = {k: v for k, v in slots.items() if any(r.origins for r in v)}
        assert out.corrupt == len(corrupted) == sum(out.cascade.values())
        assert out.standing + out.contained == out.corrupt
        assert out.standing == sum(1 for v in corrupted.values() if v[-1].origins and not v[-1].retracted)
        firsts = [next(r for r in v if r.origins) for v in corrupted.values()]
        for e, n in out.cascade.items():
            assert n == sum(1 for r in firsts if r.root == e == min(r.origins))
            assert out.reach[e] == len({r.wf for r in firsts if r.root == e})
        # totals add up: each committed version once; compute split into its categories
        assert out.results == len(slots) and out.commits == len(results)
        spent = sum(out.compute[k] for k in ("work", "rerun", "squashed", "in_flight"))
        assert spent == pytest.approx(out.attempt_compute)
        assert out.total_compute == pytest.approx(sum(out.compute[k] for k in COMPUTE))
        if strategy in ("none", "infrastructure"):
            assert out.compute["verification"] == 0
        if strategy in ("none", "per-workflow"):
            assert out.compute["monitoring"] == 0 and out.false_alarms == 0
        if strategy == "none":
            assert out.contained == 0 and out.compute["rerun"] == 0


def test_reconcile_catches_a_miscount():
    sim = Simulation(make_fleet(Params(**SMALL), 1), "none")
    out = sim.run()
    assert out.corrupt > 0
    bad = dataclasses.replace(out, corrupt=out.corrupt + 1)
    with pytest.raises(ReconcileError):
        reconcile(bad, sim.results)
    worse = dataclasses.replace(out, compute={**out.compute, "work": out.compute["work"] + 1.0})
    with pytest.raises(ReconcileError):
        reconcile(worse, sim.results)


def test_runs_are_driven_by_the_scheduling_core():
    sim = Simulation(make_fleet(Params(**SMALL).with_(horizon_days=60.0), 2), "per-workflow")
    out = sim.run()
    assert out.workflows_done + out.workflows_failed == len(sim.fleet.workflows)
    for run in sim.runs.values():
        if run.done and not run.failed:
            assert run.sched.status == "succeeded"
            assert all(run.sched.state_of(f"s{j}") is State.COMMITTED for j in range(len(run.wf.stages)))
        counters = run.sched.counters
        assert counters["claims"] >= counters["committed"] and counters["verify_claims"] >= counters["approvals"]
    # one approval per committed stage, in the scheduler of the run (or re-run) that committed it
    runs = list(sim.runs.values()) + sim.retired
    assert sum(r.sched.counters["approvals"] for r in runs) >= len(sim.results)
    assert sum(r.sched.counters["committed"] for r in runs) == len(sim.results)


def test_infrastructure_degrades_the_bad_version_and_retracts_its_blast_radius():
    # canaries that pass everything and no redundancy, with running workflows moving to new
    # versions: the bugs reach the fleet and are caught only after results were built on them
    params = Params(**SMALL).with_(
        n_shared=1, shared_kinds={"library": 1.0}, error_kinds={"library": 1.0}, bespoke_share=0.0,
        shared_errors=3.0, p_local_bug=0.0, p_bad_policy=0.0, p_blind=0.0, signal=4.0, canary_alpha=0.0,
        redundancy_share=0.0, auto_upgrade=True,
    )
    fleet = make_fleet(params, 2)
    sim = Simulation(fleet, "infrastructure")
    out = sim.run()
    infra = sim.infra
    bad = {(e.asset, v.no) for e in fleet.errors for v in sim.versions[e.asset] if e.idx in v.errors}
    assert bad
    seen = {infra.st(a, v) for a, v in bad}
    assert seen & {AssetStatus.DEGRADED, AssetStatus.RETRACTED}
    assert infra.audit > 0 and out.contained > 0
    # every result built on a version the breaker opened is retracted, however it got there
    opened = bad & infra.opened
    assert opened
    for r in sim.results:
        if opened.intersection(r.versions):
            assert r.retracted
