"""Asset status: one enum, one transition function, one audit record.

Every version of a shared asset has a status that works like a circuit
breaker::

    (new) --register--> TRUSTED --flag/taint--> SUSPECT --trip--> DEGRADED
                           ^  \\______________trip______________/    |
                           |                                 revalidate
                         pass                                         v
                           \\______________________________ REVALIDATING
    (new) --gate--> REVALIDATING           fail --> RETRACTED (final)
    any non-final --retract--> RETRACTED

* ``TRUSTED`` is the closed breaker: dependents use the version freely.
* ``SUSPECT`` means a signal points at it (a user's flag, a monitor, or taint
  from an upstream asset); policies may already act on it.
* ``DEGRADED`` is the open breaker: the version is believed wrong.
* ``REVALIDATING`` is half-open: a canary set runs on it while every other
  dependent stays on the last known-good version. A new version that
  appears while the asset has an open breaker (or is gated) starts here.
* ``RETRACTED`` is final: the version is withdrawn and never served again.

:func:`transition` is the only way a status changes. It takes the current
status (``None`` for a version not yet known) and an :class:`Event`, and
returns a :class:`Transition` carrying the :class:`AuditRecord` that names
who or what caused it (a user, a monitor and its signal, a policy and its
version, or the upstream asset a taint came from). Events that change
nothing (flagging a version that is already suspect) still return a
transition, with ``changed`` false, so repeated signals stay on record.
Time is passed in; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any

from headwater.errors import HeadwaterError


class OversightError(HeadwaterError):
    """An oversight operation that cannot be done (bad transition, policy, ref).

    ``subject`` names the asset, policy or canary at fault.
    """

    def __init__(self, message: str, *, subject: str | None = None) -> None:
        self.subject = subject
        super().__init__(message)


class AssetStatus(IntEnum):
    """The status of one asset version; ordered by how much it is distrusted,
    except that ``REVALIDATING`` (a candidate under test) sits below
    ``DEGRADED`` in what policies and routing allow."""

    TRUSTED = 0
    """No signal against it: served to every dependent."""

    SUSPECT = 1
    """A flag, monitor signal or upstream taint points at it. Still served
    unless a policy acts on suspect assets."""

    DEGRADED = 2
    """The breaker is open: believed wrong. Taints claims built on it; its
    cache entries are never reused; policies throttle, sandbox, reroute or
    pin its dependents."""

    REVALIDATING = 3
    """Half-open: served only to canary workflows while a canary decides;
    everyone else stays on the last known-good version."""

    RETRACTED = 4
    """Withdrawn for good: never served, taints what was built on it. Final."""

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str | AssetStatus) -> AssetStatus:
        if isinstance(text, AssetStatus):
            return text
        try:
            return cls[str(text).strip().upper()]
        except KeyError:
            raise OversightError(
                f"unknown asset status {text!r}; expected one of {', '.join(s.label for s in cls)}"
            ) from None


FINAL_STATES: frozenset[AssetStatus] = frozenset({AssetStatus.RETRACTED})
"""Statuses a version never leaves."""

BAD_STATES: frozenset[AssetStatus] = frozenset({AssetStatus.DEGRADED, AssetStatus.RETRACTED})
"""Statuses that taint what was built on a version and void its cache entries."""

SERVED_STATES: frozenset[AssetStatus] = frozenset(
    {AssetStatus.TRUSTED, AssetStatus.SUSPECT, AssetStatus.DEGRADED}
)
"""Statuses a version may be served in without a canary tag (policies decide
what happens to dependents of suspect and degraded versions)."""


class Event(str, Enum):
    """What can happen to an asset version; the cause of every transition."""

    REGISTER = "register"
    """A version seen for the first time (or registered by hand)."""
    GATE = "gate"
    """A version put behind a canary before dependents move to it."""
    FLAG = "flag"
    """A user or monitor says it may be wrong."""
    TAINT = "taint"
    """It was built from a degraded or retracted asset."""
    TRIP = "trip"
    """The breaker opens: the signals are strong enough to act on."""
    CLEAR = "clear"
    """A suspicion dismissed."""
    REVALIDATE = "revalidate"
    """A fix is in place; a canary set is to decide."""
    PASS = "pass"
    """The canary passed: the version is promoted."""
    FAIL = "fail"
    """The canary failed: the version is withdrawn."""
    RETRACT = "retract"
    """Withdrawn by hand, or superseded by a fixed version."""
    OVERRIDE = "override"
    """A user forces the version back to trusted without a canary."""


S, E = AssetStatus, Event

TRANSITIONS: dict[tuple[AssetStatus | None, Event], AssetStatus] = {
    (None, E.REGISTER): S.TRUSTED,
    (None, E.GATE): S.REVALIDATING,
    (None, E.FLAG): S.SUSPECT,
    (None, E.TAINT): S.SUSPECT,
    (None, E.TRIP): S.DEGRADED,
    (None, E.RETRACT): S.RETRACTED,
    (S.TRUSTED, E.FLAG): S.SUSPECT,
    (S.TRUSTED, E.TAINT): S.SUSPECT,
    (S.TRUSTED, E.TRIP): S.DEGRADED,
    (S.TRUSTED, E.GATE): S.REVALIDATING,
    (S.SUSPECT, E.TRIP): S.DEGRADED,
    (S.SUSPECT, E.CLEAR): S.TRUSTED,
    (S.DEGRADED, E.REVALIDATE): S.REVALIDATING,
    (S.REVALIDATING, E.PASS): S.TRUSTED,
    (S.REVALIDATING, E.FAIL): S.RETRACTED,
    (S.REVALIDATING, E.TRIP): S.DEGRADED,
}
"""Every status change allowed, as ``(from, event) -> to``; ``None`` is a
version not yet known. RETRACT (from any non-final status) and OVERRIDE
(from any non-final status but trusted) are added below."""

for _s in AssetStatus:
    if _s not in FINAL_STATES:
        TRANSITIONS[(_s, E.RETRACT)] = S.RETRACTED
        if _s is not S.TRUSTED:
            TRANSITIONS[(_s, E.OVERRIDE)] = S.TRUSTED

NOOPS: frozenset[tuple[AssetStatus, Event]] = frozenset({
    (S.TRUSTED, E.REGISTER), (S.TRUSTED, E.CLEAR), (S.TRUSTED, E.PASS),
    (S.SUSPECT, E.REGISTER), (S.SUSPECT, E.FLAG), (S.SUSPECT, E.TAINT),
    (S.DEGRADED, E.REGISTER), (S.DEGRADED, E.FLAG), (S.DEGRADED, E.TAINT), (S.DEGRADED, E.TRIP),
    (S.REVALIDATING, E.REGISTER), (S.REVALIDATING, E.GATE), (S.REVALIDATING, E.FLAG),
    (S.REVALIDATING, E.TAINT),
    (S.RETRACTED, E.REGISTER), (S.RETRACTED, E.FLAG), (S.RETRACTED, E.TAINT),
    (S.RETRACTED, E.TRIP), (S.RETRACTED, E.RETRACT),
})
"""Events that leave the status as it is but are still recorded (a second
flag on a suspect version is a second signal)."""


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the oversight audit log: who did what to what, and why.

    ``actor`` is ``user:NAME``, ``monitor:NAME``, ``policy:NAME``,
    ``canary`` or ``runtime``. Automated actions name the ``policy`` and
    ``policy_version`` that caused them and the ``mode`` they were taken in
    (a ``shadow`` record says what *would* have been done). ``signal`` holds
    the evidence (a monitor's score, the upstream asset of a taint, the
    status that matched a policy rule); ``cause`` is the asset or event it
    stems from.
    """

    ts: float
    actor: str
    action: str
    subject: str
    reason: str = ""
    cause: str | None = None
    policy: str | None = None
    policy_version: int | None = None
    mode: str | None = None
    run_id: str | None = None
    task: str | None = None
    signal: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Transition:
    """The result of :func:`transition`: statuses before and after, and the record."""

    subject: str
    old: AssetStatus | None
    new: AssetStatus
    event: Event
    record: AuditRecord

    @property
    def changed(self) -> bool:
        return self.old is not self.new


def transition(
    subject: str,
    current: AssetStatus | None,
    event: Event | str,
    *,
    now: float,
    actor: str,
    reason: str = "",
    cause: str | None = None,
    policy: str | None = None,
    policy_version: int | None = None,
    signal: dict | None = None,
) -> Transition:
    """Apply ``event`` to a version whose status is ``current``.

    ``subject`` is the version as ``kind:name@version``. Returns the
    transition (``changed`` false for a recorded no-op); raises
    :class:`OversightError` for a change the breaker does not allow (say,
    passing a canary on a version that is not revalidating), naming the
    subject, the status and what would be allowed instead.
    """
    event = Event(event)
    new = TRANSITIONS.get((current, event))
    if new is None and current is not None and (current, event) in NOOPS:
        new = current
    if new is None:
        allowed = sorted(e.value for (s, e) in TRANSITIONS if s is current)
        where = current.label if current is not None else "unknown"
        raise OversightError(
            f"{subject} is {where}: cannot {event.value} it (allowed: {', '.join(allowed) or 'nothing'})",
            subject=subject,
        )
    action = event.value if new is not current else f"{event.value} (no change)"
    record = AuditRecord(
        ts=now, actor=actor, action=action, subject=subject, reason=reason, cause=cause,
        policy=policy, policy_version=policy_version,
        signal=dict(signal or {}),
        data={"from": current.label if current is not None else None, "to": new.label},
    )
    return Transition(subject, current, new, event, record)
