"""Monitors: inconsistency (ranking a planted bad asset first), output shift,
clustered verification failures, N-version redundancy, concentration, coverage."""

import random

from headwater.oversight import (
    ClaimObs,
    Findings,
    RedundancyObs,
    VerificationObs,
    concentration,
    coverage,
    inconsistency,
    output_shift,
    redundancy,
    signals,
    values_agree,
    verification_clusters,
)


def fleet_of_claims(seed=0):
    """Twelve workflows estimate one constant. Three use the planted bad version
    bad@2 of a shared claim; the rest use good@1. Distractors: a library used by
    half of all workflows (including two of the bad three), and one used by all."""
    rng = random.Random(seed)
    obs = []
    for i in range(12):
        bad = i < 3
        assets = {"lib:numpy@2.0", "compute:local@hw"}
        assets.add("claim:k@bad2" if bad else "claim:k@good1")
        if i % 2 == 0:
            assets.add("lib:fft/pocket@1.0")
        if i in (1, 5):
            assets.add("dataset:survey@3")
        value = (1.10 if bad else 1.00) + rng.gauss(0, 0.004)
        obs.append(ClaimObs("const", value, 0.005, f"ck{i}", f"run{i}", f"wf{i}", frozenset(assets)))
    return obs


def test_inconsistency_ranks_the_planted_bad_asset_first():
    found = inconsistency(fleet_of_claims())
    assert len(found) == 1
    inc = found[0]
    assert [len(c.members) for c in inc.clusters] == [9, 3] and inc.majority == 0
    assert inc.suspects[0].asset == "claim:k@bad2" and inc.suspects[0].score == 1.0
    assert inc.suspects[0].used_by == ("wf0", "wf1", "wf2")
    others = {s.asset: s.score for s in inc.suspects[1:]}
    assert all(score < 0.5 for score in others.values())
    assert "lib:numpy@2.0" not in others  # used by everyone: separates nothing
    sig = signals(Findings(inconsistencies=found))
    assert [(s.subject, s.source) for s in sig] == [("claim:k@bad2", "monitor:inconsistency")]
    assert sig[0].score == 1.0 and "separates them" in sig[0].reason


def test_agreeing_claims_and_single_workflow_drift_are_not_inconsistencies():
    good = [o for o in fleet_of_claims() if "claim:k@good1" in o.assets]
    assert inconsistency(good) == []
    drift = [ClaimObs("g", v, 0.001, f"c{i}", f"r{i}", "gravimetry") for i, v in enumerate((9.81, 9.18))]
    assert inconsistency(drift) == []
    # without uncertainties, only equal values agree
    exact = [ClaimObs("n", 3.0, None, "a", "r1", "w1"), ClaimObs("n", 3.0, None, "b", "r2", "w2"),
             ClaimObs("n", 4.0, None, "c", "r3", "w3")]
    assert len(inconsistency(exact)[0].clusters) == 2


def test_output_shift():
    rng = random.Random(3)
    before = [rng.gauss(10, 0.1) for _ in range(10)]
    after = [rng.gauss(10.5, 0.1) for _ in range(10)]
    s = output_shift("lib:solver", "energy", "1.0", "1.1", before, after)
    assert s.significant and s.p_value < 0.01 and s.median_after > s.median_before
    same = output_shift("lib:solver", "energy", "1.0", "1.1", before, [rng.gauss(10, 0.1) for _ in range(10)])
    assert not same.significant
    assert not output_shift("lib:solver", "energy", "1", "2", before[:3], after[:3]).significant
    sig = signals(Findings(shifts=[s]))
    assert sig[0].subject == "lib:solver@1.1" and sig[0].source == "monitor:output-shift"


def test_verification_failures_clustered_on_one_asset():
    obs = []
    for i in range(40):
        uses_bad = i < 8
        failed = uses_bad and i < 6 or i == 30
        assets = {"lib:solver@2.1" if uses_bad else "lib:solver@2.0", "lib:numpy@2"}
        obs.append(VerificationObs(f"c{i}", f"wf{i % 5}", failed, frozenset(assets)))
    found = verification_clusters(obs)
    assert [c.asset for c in found] == ["lib:solver@2.1"]
    assert (found[0].failures, found[0].dependents) == (6, 8) and found[0].p_value < 0.001
    assert signals(Findings(failure_clusters=found))[0].source == "monitor:verification"


def test_redundancy_disagreement_names_the_odd_implementation_out():
    obs = [RedundancyObs("lib:fft", "fft/a@1", "fft/b@1", True)] * 5
    assert redundancy(obs) == []
    two = obs + [RedundancyObs("lib:fft", "fft/a@1", "fft/b@1", False)] * 2
    d = redundancy(two)
    assert d[0].disagreements == 2 and d[0].calls == 7 and d[0].odd_one_out is None
    assert [(x.subject, x.score) for x in signals(Findings(disagreements=d))] == [("lib:fft/a@1", 0.5),
                                                                                 ("lib:fft/b@1", 0.5)]
    three = [RedundancyObs("lib:fft", "fft/a@1", "fft/b@1", True),
             RedundancyObs("lib:fft", "fft/a@1", "fft/c@2", False),
             RedundancyObs("lib:fft", "fft/b@1", "fft/c@2", False)]
    d = redundancy(three)
    assert d[0].odd_one_out == "fft/c@2"
    assert [x.subject for x in signals(Findings(disagreements=d))] == ["lib:fft/c@2"]
    assert redundancy(two, max_rate=0.5) == []


def test_values_agree_on_numbers_arrays_and_containers():
    np = __import__("pytest").importorskip("numpy")
    assert values_agree(1.0, 1.0 + 1e-12) and not values_agree(1.0, 1.1)
    assert values_agree({"a": [1.0, 2.0]}, {"a": [1.0, 2.0]}) and not values_agree([1, 2], [1, 2, 3])
    assert values_agree(np.arange(1.0, 4.0), np.arange(1.0, 4.0) + 1e-12)
    assert not values_agree(np.zeros(3), np.zeros(4))
    assert values_agree("x", "x") and not values_agree(None, 0)


def test_concentration_and_coverage_reports():
    deps = {"lib:numpy": {"a", "b", "c", "d"}, "claim:g": {"a", "b"}, "lib:rare": {"d"}}
    rows, hhi = concentration(deps, 4)
    assert [(r.asset, r.share) for r in rows] == [("lib:numpy", 1.0), ("claim:g", 0.5), ("lib:rare", 0.25)]
    assert 0 < hhi < 1
    cov = coverage(deps, {"claim:g": ["inconsistency"], "lib:numpy": ["redundancy", "canary"]})
    assert [(c.asset, c.watched) for c in cov] == [("lib:rare", False), ("claim:g", True), ("lib:numpy", True)]
    assert cov[2].monitors == ("canary", "redundancy")
