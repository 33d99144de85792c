"""Intervals, the report directory and ``headwater study`` itself."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from headwater.cli import app
from headwater.study.analysis import _interval, _reduction, fmt
from headwater.study.sweep import plan, replicate_seed


def test_bootstrap_interval_brackets_the_ratio_of_sums_and_is_deterministic():
    num = np.array([3.0, 5.0, 4.0, 6.0, 2.0])
    den = np.array([10.0, 10.0, 10.0, 10.0, 10.0])
    ci = _interval(num, den)
    assert ci["value"] == pytest.approx(0.4)
    assert ci["lo"] < 0.4 < ci["hi"] and ci["n"] == 5
    assert _interval(num, den) == ci
    cut = _reduction(num, den)
    assert cut["value"] == pytest.approx(0.6) and cut["lo"] < 0.6 < cut["hi"]
    # replicates sharing a fleet seed are one draw: summed, then resampled together
    grouped = _interval(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 2.0, 2.0, 2.0]), groups=[7, 7, 9, 9])
    assert grouped["value"] == pytest.approx(1.25) and grouped["n"] == 2
    one = _interval(np.array([1.0]), np.array([2.0]))
    assert one["value"] == 0.5 and math.isnan(one["lo"])
    assert fmt(ci) == "40% (" + f"{100 * ci['lo']:.0f}% to {100 * ci['hi']:.0f}%)"


def test_the_plan_covers_every_axis_and_replicates_share_seeds_across_regimes():
    regimes = plan()
    assert {r.axis for r in regimes} == {"map", "baseline", "change", "cost", "bespoke", "length", "errors", "risk"}
    assert {r.axis for r in plan(quick=True)} == {"map", "baseline"}
    names = [r.name for r in regimes]
    assert len(names) == len(set(names))
    # the baseline is the map's cell at the defaults, not a second copy of it
    assert not [r for r in regimes if r.axis == "map" and r.changes == {"zipf": 1.1, "signal": 2.0}]
    assert len({replicate_seed(0, k) for k in range(10)}) == 10
    assert replicate_seed(0, 3) != replicate_seed(1, 3)


def test_headwater_study_writes_the_report_and_prints_json(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["study", "--quick", "--replicates", "1", "--workers", "1", "--seed", "5",
                                   "--out", str(out), "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["meta"]["replicates"] == 1 and data["meta"]["quick"] is True
    assert {s["name"] for s in data["regimes"]} >= {"baseline"}
    base = data["baseline"]["strategies"]
    assert set(base) == {"none", "per-workflow", "infrastructure", "both"}
    for name in ("report.md", "summary.json", "replicates.json", "cascade_sizes.png", "regime_map.png"):
        assert (out / name).stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "## Baseline" in report and "Regime map" in report
    json.loads((out / "summary.json").read_text())


def test_missing_matplotlib_names_the_extra(monkeypatch):
    import builtins

    from headwater.errors import OptionalDependency
    from headwater.study.report import require_plots

    real = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(OptionalDependency) as exc:
        require_plots()
    assert exc.value.extra == "study" and "headwater[study]" in str(exc.value)
