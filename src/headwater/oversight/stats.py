"""The few statistical tests the monitors and canaries need, in pure Python.

The core must not require numpy or scipy, and these tests are small:

* :func:`mann_whitney` -- the two-sided Mann-Whitney U test, exact (by
  counting rank-sum arrangements) for small samples without ties, and the
  normal approximation with tie and continuity corrections otherwise, as
  ``scipy.stats.mannwhitneyu(method="auto")`` does;
* :func:`fisher_greater` -- the one-sided Fisher exact test of a 2x2 table
  (is the first row's rate higher?), from the hypergeometric tail.

The test suite checks both against SciPy where it is installed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

EXACT_LIMIT = 8
"""Samples both smaller than this, with no ties, get the exact distribution."""


@dataclass(frozen=True)
class TestResult:
    statistic: float
    p_value: float
    method: str


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n with ties given their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2 + 1
        for k in range(i, j + 1):
            out[order[k]] = avg
        i = j + 1
    return out


def _exact_cdf_counts(n1: int, n2: int) -> list[int]:
    """counts[u] = number of arrangements with U statistic u (for sample 1)."""
    # f[i][j][u]: arrangements of i x's and j y's with U = u (x's counted over y's below).
    prev = [[1] + [0] * (n1 * n2) for _ in range(n2 + 1)]  # i = 0: U = 0 for any j
    for i in range(1, n1 + 1):
        cur = [[0] * (n1 * n2 + 1) for _ in range(n2 + 1)]
        for j in range(0, n2 + 1):
            for u in range(0, i * j + 1):
                # the largest element is an x (adds j to U) or a y
                total = prev[j][u - j] if u - j >= 0 else 0
                if j > 0:
                    total += cur[j - 1][u]
                cur[j][u] = total
        prev = cur
    return prev[n2]


def mann_whitney(x: Sequence[float], y: Sequence[float]) -> TestResult:
    """Two-sided Mann-Whitney U test of ``x`` against ``y``.

    Returns the U statistic of ``x`` and the p-value. Empty samples give
    p = 1 (no evidence of a difference).
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return TestResult(0.0, 1.0, "empty")
    r = ranks(list(x) + list(y))
    u1 = sum(r[:n1]) - n1 * (n1 + 1) / 2
    ties = len(set(r)) != len(r)
    if n1 < EXACT_LIMIT and n2 < EXACT_LIMIT and not ties:
        counts = _exact_cdf_counts(n1, n2)
        total = math.comb(n1 + n2, n1)
        u = int(round(max(u1, n1 * n2 - u1)))
        upper = sum(counts[u:]) / total
        return TestResult(u1, min(1.0, 2 * upper), "exact")
    mu = n1 * n2 / 2
    n = n1 + n2
    tie_term = 0.0
    values = sorted(r)
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        t = j - i + 1
        tie_term += t**3 - t
        i = j + 1
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    if sigma == 0:
        return TestResult(u1, 1.0, "asymptotic")
    z = (abs(u1 - mu) - 0.5) / sigma
    p = math.erfc(max(z, 0.0) / math.sqrt(2))
    return TestResult(u1, min(1.0, p), "asymptotic")


def fisher_greater(a: int, b: int, c: int, d: int) -> float:
    """One-sided Fisher exact p-value that row 1 (a of a+b) has the higher rate
    than row 2 (c of c+d): P(X >= a) under the hypergeometric null."""
    n1, k, n = a + b, a + c, a + b + c + d
    denom = math.comb(n, n1)
    if denom == 0:
        return 1.0
    top = min(n1, k)
    return min(1.0, sum(math.comb(k, i) * math.comb(n - k, n1 - i) for i in range(a, top + 1)) / denom)


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    if n == 0:
        return math.nan
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
