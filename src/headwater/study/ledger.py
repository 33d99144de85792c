"""What one simulated strategy produced, counted so that it reconciles.

A *result* is the output of one stage of one workflow. It is committed
once, and again each time a retraction makes the workflow re-run that
stage: each commit is one :class:`Record` (a version of the result).
A result is *corrupted* when any of its committed versions carried a
planted error, and it is counted once, however many corrupted versions it
had, and attributed to exactly one planted error, its *root*: the earliest
planted error of its first corrupted version. At the end a corrupted
result is either *standing* (its last committed version is corrupted and
not retracted) or *contained* (retracted, or replaced by a correct version).

:class:`Outcome` is the summary of one strategy on one replicate;
:func:`reconcile` checks, from the raw commit records, that

* every corrupted result is counted once: the cascade sizes of the planted
  errors add up to the corrupted results, and each is standing or contained;
* every corrupted commit belongs to a corrupted result;
* the compute categories of attempts add up to the compute of every attempt.
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
class Record:
    """One committed version of a stage's result.

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

    ``results`` counts results (stage outputs) committed at least once,
    ``commits`` their committed versions; ``corrupt`` the corrupted results
    (see the module docstring) and ``corrupt_commits`` the corrupted
    versions. ``consumed_corrupt`` counts results that read a corrupted
    claim produced by another workflow. ``cascade[e]`` is the number of
    corrupted results attributed to planted error ``e`` and ``reach[e]``
    the workflows they belong to; a *cascade* is an error whose corrupted
    results reached two or more workflows; ``standing_reach[e]`` counts the
    workflows where ``e``'s corrupted results still stand at the end (a
    cascade is *stopped* when that is below two). ``latency[e]`` is the hours from
    planting to the first correct identification of ``e`` (absent if never
    identified).
    """

    strategy: str
    results: int = 0
    commits: int = 0
    corrupt: int = 0
    corrupt_commits: int = 0
    standing: int = 0
    contained: int = 0
    consumed_corrupt: int = 0
    cascade: dict[int, int] = field(default_factory=dict)
    reach: dict[int, int] = field(default_factory=dict)
    standing_reach: dict[int, int] = field(default_factory=dict)
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
            "strategy": self.strategy, "results": self.results, "commits": self.commits, "corrupt": self.corrupt,
            "corrupt_commits": self.corrupt_commits, "standing": self.standing, "contained": self.contained,
            "consumed_corrupt": self.consumed_corrupt,
            "cascades": self.cascades, "cascade": {str(k): v for k, v in self.cascade.items()},
            "reach": {str(k): v for k, v in self.reach.items()},
            "standing_reach": {str(k): v for k, v in self.standing_reach.items()},
            "latency": {str(k): v for k, v in self.latency.items()},
            "compute": dict(self.compute), "delay": dict(self.delay), "false_alarms": self.false_alarms,
            "false_alarm_hours": self.false_alarm_hours, "workflows_done": self.workflows_done,
            "workflows_failed": self.workflows_failed,
            "error_kinds": {str(k): v for k, v in self.error_kinds.items()},
        }


class ReconcileError(AssertionError):
    """The counts of an outcome do not add up (a bug in the simulator)."""


def _slots(commits: list[Record]) -> dict[tuple[int, int], list[Record]]:
    slots: dict[tuple[int, int], list[Record]] = {}
    for c in commits:
        slots.setdefault((c.wf, c.stage), []).append(c)
    return slots


def summarize(strategy: str, commits: list[Record], error_kinds: dict[int, str]) -> Outcome:
    """The result counts of an :class:`Outcome` from the commit records (in commit order)."""
    out = Outcome(strategy, error_kinds=dict(error_kinds))
    out.cascade = dict.fromkeys(error_kinds, 0)
    wfs: dict[int, set[int]] = {e: set() for e in error_kinds}
    stand: dict[int, set[int]] = {e: set() for e in error_kinds}
    for (wf, _), versions in _slots(commits).items():
        out.results += 1
        out.commits += len(versions)
        bad = [c for c in versions if c.root >= 0]
        if not bad:
            continue
        out.corrupt += 1
        out.corrupt_commits += len(bad)
        root = bad[0].root
        out.cascade[root] += 1
        wfs[root].add(wf)
        last = versions[-1]
        if last.root >= 0 and not last.retracted:
            out.standing += 1
            stand[root].add(wf)
        else:
            out.contained += 1
        if any(c.cross for c in versions):
            out.consumed_corrupt += 1
    out.reach = {e: len(s) for e, s in wfs.items()}
    out.standing_reach = {e: len(s) for e, s in stand.items()}
    return out


def reconcile(out: Outcome, commits: list[Record]) -> None:
    """Raise :class:`ReconcileError` unless every count in ``out`` adds up."""
    ids = [c.idx for c in commits]
    if len(set(ids)) != len(ids) or ids != sorted(ids):
        raise ReconcileError("a commit was recorded twice or out of order")
    if any((c.root < 0) != (not c.origins) or (c.origins and c.root != min(c.origins)) for c in commits):
        raise ReconcileError("a commit's root is not the earliest of its errors")
    slots = _slots(commits)
    corrupt_slots = {k for k, vs in slots.items() if any(c.origins for c in vs)}
    if out.corrupt != len(corrupt_slots):
        raise ReconcileError(f"{out.corrupt} corrupted results counted, {len(corrupt_slots)} recorded")
    if sum(out.cascade.values()) != out.corrupt:
        raise ReconcileError(f"cascade sizes add up to {sum(out.cascade.values())}, not {out.corrupt}")
    if out.standing + out.contained != out.corrupt:
        raise ReconcileError("standing + contained corrupted results != corrupted results")
    if out.corrupt_commits != sum(1 for c in commits if c.origins):
        raise ReconcileError("a corrupted commit is outside every corrupted result")
    if out.results != len(slots) or out.commits != len(commits):
        raise ReconcileError("result or commit count does not match the records")
    if sum(out.reach.values()) < min(1, out.corrupt):
        raise ReconcileError("corrupted results reach no workflow")
    attempts = sum(out.compute[k] for k in ("work", "rerun", "squashed", "in_flight"))
    if abs(attempts - out.attempt_compute) > 1e-6 * max(1.0, out.attempt_compute):
        raise ReconcileError(f"attempt compute {out.attempt_compute:.3f} split into categories adding to {attempts:.3f}")
