"""Canary verdicts and the statistics behind them (checked against SciPy)."""

import random

import pytest

from headwater.oversight import Metric, OversightError, fisher_greater, judge, mann_whitney, verdict


def test_a_canary_passes_when_every_critical_metric_holds():
    metrics = [Metric("height", "tolerance", rtol=0.01), Metric("volume", "mannwhitney", alpha=0.05, min_n=5)]
    rng = random.Random(1)
    base = {"height": [52.0, 52.1], "volume": [rng.gauss(1470, 5) for _ in range(12)]}
    cand = {"height": [52.05], "volume": [rng.gauss(1470, 5) for _ in range(12)]}
    v = verdict(metrics, base, cand)
    assert v.passed and v.outcome == "pass" and [r.outcome for r in v.results] == ["pass", "pass"]
    assert v.to_json()["metrics"][1]["candidate_n"] == 12


def test_a_failed_critical_metric_fails_the_canary():
    rng = random.Random(2)
    base = {"volume": [rng.gauss(1470, 5) for _ in range(12)], "height": [52.0]}
    cand = {"volume": [rng.gauss(1380, 5) for _ in range(12)], "height": [52.0]}
    metrics = [Metric("volume", "mannwhitney", min_n=5), Metric("height")]
    v = verdict(metrics, base, cand)
    assert v.outcome == "fail" and "critical metric failed: volume" in v.reason
    # the same shift on an advisory metric only warns
    v = verdict([Metric("volume", "mannwhitney", min_n=5, critical=False), Metric("height")], base, cand)
    assert v.passed and len(v.warnings) == 1


def test_tolerance_and_missing_data():
    assert judge(Metric("h", rtol=0.01), [100.0], [101.5]).outcome == "fail"
    assert judge(Metric("h", rtol=0.0, atol=2.0), [100.0], [101.5]).outcome == "pass"
    assert judge(Metric("h"), [], [1.0]).outcome == "inconclusive"
    assert judge(Metric("h", "mannwhitney", min_n=3), [1, 2], [1, 2, 3]).outcome == "inconclusive"
    v = verdict([Metric("h")], {"h": [1.0]}, {})
    assert v.outcome == "inconclusive"
    assert verdict([], {}, {}).outcome == "inconclusive"


def test_metric_parsing():
    m = Metric.parse("tower.height:mannwhitney:alpha=0.01:min_n=4:advisory")
    assert (m.key, m.test, m.alpha, m.min_n, m.critical) == ("tower.height", "mannwhitney", 0.01, 4, False)
    assert Metric.parse(m.to_text()) == m
    assert Metric.parse("g:rtol=0.02").rtol == 0.02
    for bad in ("h:ks", "h:beta=2", ":tolerance"):
        with pytest.raises(OversightError):
            Metric.parse(bad)


@pytest.mark.parametrize("n1, n2, ties, shift", [(4, 5, False, 0.0), (6, 7, False, 1.5), (12, 9, False, 0.3),
                                                  (10, 10, True, 0.0), (25, 30, True, 0.5), (3, 3, False, 5.0)])
def test_mann_whitney_matches_scipy(n1, n2, ties, shift):
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(n1 * 100 + n2)
    x = [round(rng.gauss(shift, 1), 0 if ties else 6) for _ in range(n1)]
    y = [round(rng.gauss(0, 1), 0 if ties else 6) for _ in range(n2)]
    ours = mann_whitney(x, y)
    ref = stats.mannwhitneyu(x, y, alternative="two-sided", method="auto")
    assert ours.statistic == pytest.approx(ref.statistic)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)


def test_fisher_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for table in ([[5, 1], [2, 20]], [[0, 5], [5, 0]], [[3, 3], [3, 3]], [[8, 2], [10, 80]]):
        ref = stats.fisher_exact(table, alternative="greater").pvalue
        assert fisher_greater(*table[0], *table[1]) == pytest.approx(ref, rel=1e-9)


def test_degenerate_samples():
    assert mann_whitney([], [1.0]).p_value == 1.0
    assert mann_whitney([1.0] * 10, [1.0] * 10).p_value == 1.0
