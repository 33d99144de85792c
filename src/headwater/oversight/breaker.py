"""Signals, the breaker that turns them into status changes, and taint.

A :class:`Signal` is evidence against one asset version: a user's flag, a
monitor's finding (with a score in [0, 1]), a failed canary. The
:class:`Breaker` decides what a new signal does to the version's status:

* any signal marks a trusted version suspect;
* the breaker trips (suspect -> degraded) when a signal is marked
  ``trip``, when its score reaches ``trip_score``, or when ``trip_sources``
  distinct sources have signalled against the version.

:func:`taint` carries a bad status downstream: every claim committed by a
checkpoint in the blast radius of a degraded or retracted version becomes
suspect, with the path that links it to the cause. The blast radius is
transitive, so a claim two hops away (built on a claim built on the bad
asset) is tainted in the same pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from headwater.oversight.lineage import BlastRadius
from headwater.oversight.status import AssetStatus, Event, Transition, transition


@dataclass(frozen=True)
class Signal:
    """Evidence against ``subject`` (``kind:name@version``) from ``source``.

    ``source`` is ``user:NAME``, ``monitor:NAME`` or ``canary``; ``score``
    in [0, 1] is how strongly the source believes the version is wrong
    (1 for a user's flag); ``trip`` asks the breaker to open at once.
    """

    subject: str
    source: str
    reason: str
    score: float = 1.0
    trip: bool = False
    evidence: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"subject": self.subject, "source": self.source, "reason": self.reason,
                "score": round(self.score, 4), "trip": self.trip, "evidence": self.evidence}


@dataclass(frozen=True)
class Breaker:
    """When signals open the breaker on a version."""

    trip_score: float = 0.9
    trip_sources: int = 2

    def react(
        self,
        status: AssetStatus | None,
        signal: Signal,
        *,
        now: float,
        earlier_sources: Iterable[str] = (),
    ) -> list[Transition]:
        """The transitions ``signal`` causes on a version in ``status``.

        ``earlier_sources`` are the sources of signals already on record for
        this version (from the audit log). Returns a flag (or a recorded
        no-op) and, when the breaker trips, the trip.
        """
        out = [transition(signal.subject, status, Event.FLAG, now=now, actor=signal.source,
                          reason=signal.reason, signal=signal.to_json())]
        current = out[0].new
        sources = set(earlier_sources) | {signal.source}
        tripping = signal.trip or signal.score >= self.trip_score or len(sources) >= self.trip_sources
        if current is AssetStatus.SUSPECT and tripping:
            why = ("asked to trip" if signal.trip else
                   f"score {signal.score:.2f} >= {self.trip_score}" if signal.score >= self.trip_score else
                   f"{len(sources)} independent sources")
            out.append(transition(signal.subject, current, Event.TRIP, now=now, actor="breaker",
                                  reason=f"breaker tripped: {why}", cause=signal.source,
                                  signal=signal.to_json()))
        return out


def taint(
    radius: BlastRadius,
    statuses: Mapping[str, AssetStatus | None],
    *,
    now: float,
    cause: str,
    cause_status: AssetStatus,
) -> list[Transition]:
    """Suspect every committed claim in ``radius``; ``statuses`` by claim ref
    (a claim missing or None has no status on record: trusted).

    ``cause`` is the degraded or retracted version the radius was computed
    from. Claims that are already suspect or worse are left alone (their
    status is recorded as is); each transition's record carries the path.
    """
    out: list[Transition] = []
    for label, hit in sorted(radius.claims.items(), key=lambda kv: (kv[1].depth, kv[0])):
        if hit.status != "committed" or label == cause:
            continue
        current = statuses.get(label)
        if current is not None and current is not AssetStatus.TRUSTED:
            continue
        hops = sum(1 for p in hit.path[1:] if p.startswith("claim:"))
        out.append(transition(
            label, current, Event.TAINT, now=now, actor="taint",
            reason=f"built on {cause} ({cause_status.label}), {hops} claim hop(s) away",
            cause=cause, signal={"path": list(hit.path), "hops": hops},
        ))
    return out
