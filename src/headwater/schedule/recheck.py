"""Recheck policies: when an agent that ran ahead looks at the scoreboard again.

An agent that built on provisional results must, sooner or later, learn
whether they were committed or flushed. There is no global clock and no
mandated polling: after each of its own steps the agent asks its policy
``policy.next_check(now, info)`` for the time of its next look, and looks
then (or later). Policies are strategy objects, pure functions of the time
and :class:`RecheckInfo` passed in, plus what they have been told through
``observe``:

* :class:`Eager` -- recheck at once, after every step. Cheapest flushes,
  most scoreboard reads.
* :class:`Backoff` -- exponential: ``base * factor ** checks``, capped.
* :class:`Adaptive` -- wait about as long as verification is expected to
  still take. The expectation is an EWMA of observed provisional-to-verified
  latencies (``observe(latency)``), minus the time already waited; it is
  stretched when the scoreboard shows fewer verifiers on the awaited attempt
  than approvals it still needs (``needed / verifiers``), and by
  ``idle_factor`` when it shows none at all, since then nobody has even
  started. Once overdue it rechecks at a fraction of the expected latency.

:func:`recheck_policy` builds one by name, for configuration files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from headwater.schedule.scoreboard import TaskBoard


@dataclass(frozen=True, slots=True)
class RecheckInfo:
    """What the agent knows about the attempt it waits for.

    ``since`` is when the wait began (the attempt became provisional),
    ``checks`` how many rechecks it has made for it, ``verifiers`` how many
    verifiers the scoreboard showed on it, ``needed`` how many approvals it
    still lacked.
    """

    since: float
    checks: int = 0
    verifiers: int = 0
    needed: int = 1

    @classmethod
    def from_board(cls, board: TaskBoard, now: float, checks: int = 0) -> RecheckInfo:
        """Read the awaited attempt's scoreboard entry (``since`` falls back to ``now``)."""
        since = board.provisional_since if board.provisional_since is not None else now
        return cls(since=since, checks=checks, verifiers=board.verifying,
                   needed=max(0, board.required - board.approvals))


class RecheckPolicy(Protocol):
    """What every recheck policy offers."""

    def next_check(self, now: float, info: RecheckInfo) -> float:
        """The time of the next scoreboard read (``>= now``)."""
        ...

    def observe(self, latency: float) -> None:
        """Learn one observed provisional-to-verified latency, in seconds."""
        ...


def capped_growth(base: float, factor: float, exponent: int, cap: float) -> float:
    """``min(cap, base * factor ** exponent)`` without overflowing for large exponents."""
    try:
        return min(cap, base * factor ** max(0, exponent))
    except OverflowError:
        return cap


def _finite_nonneg(name: str, value: float) -> float:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class Eager:
    """Recheck immediately after every own step."""

    def next_check(self, now: float, info: RecheckInfo) -> float:
        return now

    def observe(self, latency: float) -> None:
        _finite_nonneg("latency", latency)

    def __repr__(self) -> str:
        return "Eager()"


class Backoff:
    """Recheck after ``min(cap, base * factor ** info.checks)`` seconds."""

    def __init__(self, base: float = 0.5, factor: float = 2.0, cap: float = 30.0) -> None:
        self.base = _finite_nonneg("base", base)
        self.cap = _finite_nonneg("cap", cap)
        if not (factor >= 1 and math.isfinite(factor)):
            raise ValueError(f"factor must be a finite number >= 1, got {factor!r}")
        self.factor = float(factor)

    def next_check(self, now: float, info: RecheckInfo) -> float:
        return now + capped_growth(self.base, self.factor, info.checks, self.cap)

    def observe(self, latency: float) -> None:
        _finite_nonneg("latency", latency)

    def __repr__(self) -> str:
        return f"Backoff(base={self.base}, factor={self.factor}, cap={self.cap})"


class Adaptive:
    """Wait for the expected remaining verification latency, scaled by verifier coverage.

    ``initial`` is the expected latency before anything was observed,
    ``alpha`` the EWMA weight of a new observation, ``idle_factor`` the
    stretch when no verifier is assigned, ``overdue_fraction`` the fraction
    of the expected latency between rechecks once overdue, and every wait
    is clamped to ``[min_wait, max_wait]``.
    """

    def __init__(self, initial: float = 5.0, alpha: float = 0.2, idle_factor: float = 4.0,
                 overdue_fraction: float = 0.25, min_wait: float = 0.05, max_wait: float = 300.0) -> None:
        self.expected = _finite_nonneg("initial", initial)
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        self.alpha = float(alpha)
        if not (idle_factor >= 1 and math.isfinite(idle_factor)):
            raise ValueError(f"idle_factor must be a finite number >= 1, got {idle_factor!r}")
        self.idle_factor = float(idle_factor)
        if not 0 < overdue_fraction <= 1:
            raise ValueError(f"overdue_fraction must be in (0, 1], got {overdue_fraction!r}")
        self.overdue_fraction = float(overdue_fraction)
        self.min_wait = _finite_nonneg("min_wait", min_wait)
        self.max_wait = _finite_nonneg("max_wait", max_wait)
        if self.max_wait < self.min_wait:
            raise ValueError("max_wait must be >= min_wait")
        self.observed = 0

    def observe(self, latency: float) -> None:
        latency = _finite_nonneg("latency", latency)
        if self.observed == 0:
            self.expected = latency
        else:
            self.expected += self.alpha * (latency - self.expected)
        self.observed += 1

    def next_check(self, now: float, info: RecheckInfo) -> float:
        remaining = self.expected - max(0.0, now - info.since)
        if remaining <= 0:
            remaining = self.expected * self.overdue_fraction
        if info.needed <= 0:
            scale = 1.0
        elif info.verifiers <= 0:
            scale = self.idle_factor
        else:
            scale = max(1.0, info.needed / info.verifiers)
        return now + min(self.max_wait, max(self.min_wait, remaining * scale))

    def __repr__(self) -> str:
        return f"Adaptive(expected={self.expected:.3g}, observed={self.observed})"


def recheck_policy(name: str, **params: float) -> RecheckPolicy:
    """Build a policy by name: ``"eager"``, ``"backoff"`` or ``"adaptive"``, with its parameters."""
    kinds = {"eager": Eager, "backoff": Backoff, "adaptive": Adaptive}
    kind = kinds.get(name.lower())
    if kind is None:
        raise ValueError(f"unknown recheck policy {name!r}; choose one of {', '.join(kinds)}")
    return kind(**params)
