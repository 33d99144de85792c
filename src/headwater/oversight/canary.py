"""Canary verdicts: does a new asset version change what dependents compute?

While a new version is revalidating, the workflows tagged ``canary`` run on
it and everyone else stays on the old one. The verdict compares, for each
tracked scalar (a claim key the canaries publish), the values computed with
the candidate version against those computed with the baseline version:

* ``tolerance``: the candidate's median lies within ``atol + rtol *
  |baseline median|`` of the baseline's median (works with one value each);
* ``mannwhitney``: a two-sided Mann-Whitney U test finds no shift at level
  ``alpha`` (needs ``min_n`` values on each side, else the metric is
  inconclusive).

A metric is ``critical`` unless declared ``advisory``. The canary fails when
any critical metric fails; it passes when every critical metric passed;
otherwise (a critical metric without data) the verdict is inconclusive and
the version stays under test. Advisory failures are reported as warnings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from headwater.oversight.stats import mann_whitney, median
from headwater.oversight.status import OversightError

TESTS = ("tolerance", "mannwhitney")


@dataclass(frozen=True)
class Metric:
    """A tracked scalar and how it is judged; see the module docstring."""

    key: str
    test: str = "tolerance"
    rtol: float = 0.01
    atol: float = 0.0
    alpha: float = 0.05
    min_n: int = 3
    critical: bool = True

    def __post_init__(self) -> None:
        if self.test not in TESTS:
            raise OversightError(f"metric {self.key}: test {self.test!r}; expected one of {', '.join(TESTS)}")

    @classmethod
    def parse(cls, text: str) -> Metric:
        """``KEY[:TEST][:rtol=R][:atol=A][:alpha=P][:min_n=N][:critical|advisory]``."""
        key, *parts = text.split(":")
        kwargs: dict = {}
        for part in parts:
            part = part.strip()
            if part in TESTS:
                kwargs["test"] = part
            elif part in ("critical", "advisory"):
                kwargs["critical"] = part == "critical"
            elif "=" in part:
                name, _, value = part.partition("=")
                if name not in ("rtol", "atol", "alpha", "min_n"):
                    raise OversightError(f"metric {text!r}: unknown setting {name!r}")
                kwargs[name] = int(value) if name == "min_n" else float(value)
            else:
                raise OversightError(f"metric {text!r}: cannot read {part!r}")
        if not key:
            raise OversightError(f"metric {text!r} needs a claim key")
        return cls(key, **kwargs)

    def to_text(self) -> str:
        bits = [self.key, self.test]
        if self.test == "tolerance":
            bits += [f"rtol={self.rtol:g}", f"atol={self.atol:g}"]
        else:
            bits += [f"alpha={self.alpha:g}", f"min_n={self.min_n}"]
        bits.append("critical" if self.critical else "advisory")
        return ":".join(bits)


@dataclass(frozen=True)
class MetricResult:
    metric: Metric
    outcome: str  # "pass" | "fail" | "inconclusive"
    baseline: tuple[float, ...]
    candidate: tuple[float, ...]
    detail: str

    def to_json(self) -> dict:
        return {"metric": self.metric.to_text(), "outcome": self.outcome, "detail": self.detail,
                "baseline_n": len(self.baseline), "candidate_n": len(self.candidate)}


@dataclass(frozen=True)
class CanaryVerdict:
    outcome: str  # "pass" | "fail" | "inconclusive"
    results: tuple[MetricResult, ...]
    reason: str

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    @property
    def warnings(self) -> list[str]:
        return [r.detail for r in self.results if not r.metric.critical and r.outcome == "fail"]

    def to_json(self) -> dict:
        return {"outcome": self.outcome, "reason": self.reason, "warnings": self.warnings,
                "metrics": [r.to_json() for r in self.results]}


def judge(metric: Metric, baseline: Sequence[float], candidate: Sequence[float]) -> MetricResult:
    """One metric's outcome."""
    b, c = tuple(float(v) for v in baseline), tuple(float(v) for v in candidate)
    if not b or not c:
        return MetricResult(metric, "inconclusive", b, c,
                            f"{metric.key}: no values ({len(b)} baseline, {len(c)} candidate)")
    if metric.test == "tolerance":
        mb, mc = median(b), median(c)
        allowed = metric.atol + metric.rtol * abs(mb)
        ok = abs(mc - mb) <= allowed
        return MetricResult(metric, "pass" if ok else "fail", b, c,
                            f"{metric.key}: {mc:.6g} vs {mb:.6g} (|diff| {abs(mc - mb):.3g} "
                            f"{'<=' if ok else '>'} {allowed:.3g})")
    if len(b) < metric.min_n or len(c) < metric.min_n:
        return MetricResult(metric, "inconclusive", b, c,
                            f"{metric.key}: Mann-Whitney needs {metric.min_n} values a side "
                            f"({len(b)} baseline, {len(c)} candidate)")
    res = mann_whitney(c, b)
    ok = res.p_value >= metric.alpha
    return MetricResult(metric, "pass" if ok else "fail", b, c,
                        f"{metric.key}: Mann-Whitney U={res.statistic:g}, p={res.p_value:.3g} "
                        f"({'no shift' if ok else 'shifted'} at alpha {metric.alpha:g})")


def verdict(metrics: Sequence[Metric], baseline: Mapping[str, Sequence[float]],
            candidate: Mapping[str, Sequence[float]]) -> CanaryVerdict:
    """The canary's verdict over every metric (see the module docstring)."""
    if not metrics:
        return CanaryVerdict("inconclusive", (), "no metrics declared for this canary")
    results = tuple(judge(m, baseline.get(m.key, ()), candidate.get(m.key, ())) for m in metrics)
    failed = [r for r in results if r.metric.critical and r.outcome == "fail"]
    if failed:
        return CanaryVerdict("fail", results, "critical metric failed: " + "; ".join(r.detail for r in failed))
    pending = [r for r in results if r.metric.critical and r.outcome == "inconclusive"]
    if pending:
        return CanaryVerdict("inconclusive", results, "; ".join(r.detail for r in pending))
    return CanaryVerdict("pass", results, "every critical metric within tolerance")
