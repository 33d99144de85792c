"""What one simulated strategy produced, counted so that it reconciles.

Every committed result is one :class:`Result` in the simulator's list, made
once at its :class:`~headwater.schedule.Commit`; a corrupted one is
attributed to exactly one planted error, its *root* (the earliest planted of
the errors it carries). :class:`Outcome` is the summary of one strategy on
one replicate; :func:`reconcile` checks, from the raw records, that

* every corrupted result is counted once: the cascade sizes of the planted
  errors add up to the corrupted results committed, and each of those is
  either still standing at the end or was retracted;
* the compute categories add up to the compute of every attempt, every
  verification and every monitor, canary and redundant call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

COMPUTE = ("work", "rerun", "squashed", "in_flight", "verification", "monitoring")
"""Compute categories, in stage-hours. ``work``: first executions of stages that
committed; ``rerun``: executions that replaced a retracted result; ``squashed``:
attempts squashed, refuted, cancelled or failed; ``in_flight``: attempts still
running at the horizon; ``verification``: workflows' own verifiers;
``monitoring``: monitors, canaries and redundant calls."""

DELAY = ("paused", "held")
"""Stage-hours of delay: ``paused`` by infrastructure throttles and pins;
``held`` by owners investigating a refutation or fixing a bug."""


@dataclass(slots=True)
class Result:
    """A committed stage result.

    ``origins`` are the planted errors it carries (empty: correct), ``root``
    the one it is attributed to (-1 when correct). ``consumed`` is the
    result whose claim it read (-1 if none) and ``parent`` its chain input's
    result (-1 for a first stage). ``cross`` is True when it read a
    corrupted claim produced by another workflow. ``versions`` are the
    ``(asset, version)`` pairs it used; ``node`` the compute node; ``hours``
    its compute; ``shift`` how far its claim value is off because of errors
    (what a consumer of the claim inherits).
    """

    idx: int
    wf: int
    stage: int
    attempt: int
    time: float
    key: int
    value: float
    origins: frozenset[int]
    root: int
    versions: tuple[tuple[int, int], ...]
    node: int
    consumed: int
    parent: int
    cross: bool
    rerun: bool
    hours: float
    shift: float
    retracted: bool = False


@dataclass
class Outcome:
    """One strategy on one replicate: results, cascades, detection, costs.

    ``cascade[e]`` is the number of corrupted committed results attributed to
    planted error ``e`` and ``reach[e]`` the workflows they belong to; a
    *cascade* is an error whose corrupted results reached two or more
    workflows. ``latency[e]`` is the hours from planting to the first
    correct identification of ``e`` (absent if never identified).
    """

    strategy: str
    results: int = 0
    corrupt: int = 0
    standing: int = 0
    retracted: int = 0
    consumed_corrupt: int = 0
    cascade: dict[int, int] = field(default_factory=dict)
    reach: dict[int, int] = field(default_factory=dict)
    latency: dict[int, float] = field(default_factory=dict)
    compute: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COMPUTE, 0.0))
    delay: dict[str, float] = field(default_factory=lambda: dict.fromkeys(DELAY, 0.0))
    false_alarms: int = 0
    false_alarm_hours: float = 0.0
    workflows_done: int = 0
    workflows_failed: int = 0
    attempt_compute: float = 0.0
    error_kinds: dict[int, str] = field(default_factory=dict)

    @property
    def cascades(self) -> int:
        """Planted errors whose corrupted results reached two or more workflows."""
        return sum(1 for e, r in self.reach.items() if r >= 2)

    @property
    def total_compute(self) -> float:
        return sum(self.compute.values())

    def as_dict(self) -> dict:
        return {
            "strategy": self.strategy, "results": self.results, "corrupt": self.corrupt,
            "standing": self.standing, "retracted": self.retracted, "consumed_corrupt": self.consumed_corrupt,
            "cascades": self.cascades, "cascade": {str(k): v for k, v in self.cascade.items()},
            "reach": {str(k): v for k, v in self.reach.items()},
            "latency": {str(k): v for k, v in self.latency.items()},
            "compute": dict(self.compute), "delay": dict(self.delay), "false_alarms": self.false_alarms,
            "false_alarm_hours": self.false_alarm_hours, "workflows_done": self.workflows_done,
            "workflows_failed": self.workflows_failed,
            "error_kinds": {str(k): v for k, v in self.error_kinds.items()},
        }


class ReconcileError(AssertionError):
    """The counts of an outcome do not add up (a bug in the simulator)."""


def summarize(strategy: str, results: list[Result], error_kinds: dict[int, str]) -> Outcome:
    """The result counts of an :class:`Outcome` from the committed results."""
    out = Outcome(strategy, error_kinds=dict(error_kinds))
    out.cascade = dict.fromkeys(error_kinds, 0)
    wfs: dict[int, set[int]] = {e: set() for e in error_kinds}
    for r in results:
        out.results += 1
        if r.root < 0:
            continue
        out.corrupt += 1
        out.cascade[r.root] += 1
        wfs[r.root].add(r.wf)
        if r.retracted:
            out.retracted += 1
        else:
            out.standing += 1
        if r.cross:
            out.consumed_corrupt += 1
    out.reach = {e: len(s) for e, s in wfs.items()}
    return out


def reconcile(out: Outcome, results: list[Result]) -> None:
    """Raise :class:`ReconcileError` unless every count in ``out`` adds up."""
    ids = [r.idx for r in results]
    if len(set(ids)) != len(ids):
        raise ReconcileError("a result was recorded twice")
    corrupt = [r for r in results if r.origins]
    if any((r.root < 0) != (not r.origins) or (r.origins and r.root != min(r.origins)) for r in results):
        raise ReconcileError("a result's root is not the earliest of its errors")
    if out.corrupt != len(corrupt):
        raise ReconcileError(f"{out.corrupt} corrupted results counted, {len(corrupt)} recorded")
    if sum(out.cascade.values()) != out.corrupt:
        raise ReconcileError(f"cascade sizes add up to {sum(out.cascade.values())}, not {out.corrupt}")
    if out.standing + out.retracted != out.corrupt:
        raise ReconcileError("standing + retracted corrupted results != corrupted results")
    if out.results != len(results):
        raise ReconcileError("result count does not match the records")
    attempts = sum(out.compute[k] for k in ("work", "rerun", "squashed", "in_flight"))
    if abs(attempts - out.attempt_compute) > 1e-6 * max(1.0, out.attempt_compute):
        raise ReconcileError(f"attempt compute {out.attempt_compute:.3f} split into categories adding to {attempts:.3f}")
