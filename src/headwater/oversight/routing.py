"""Which version of a shared asset a dependent gets: pins, canaries, reroutes.

Every use of a shared asset is resolved here, the same way at dispatch (to
predict what a task will be exposed to) and inside the task (``ctx.use`` and
``ctx.call``), so the two agree:

1. retracted versions are never served;
2. revalidating versions (candidates under a canary) are served only to
   dependents tagged ``canary``; everyone else stays on the newest version
   that is not under test;
3. among the rest the default is the preferred implementation (lowest
   ``rank``), newest version (highest ``order``);
4. a :class:`Pin` whose scope matches the dependent's tags holds it on the
   pinned version instead (a freeze: nobody moves to a newer one);
5. a policy may then reroute: to another implementation registered under the
   same asset name, to the last known-good (newest trusted, older) version,
   or to a pinned version.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from headwater.oversight.status import AssetStatus


@dataclass(frozen=True)
class Candidate:
    """One version an asset could be resolved to.

    ``name`` is the asset name (``g``; ``fft/numpy`` for an implementation),
    ``order`` grows with newness (the position in version order, or in the
    order claims were published), ``rank`` is the implementation preference
    (0 is the default implementation).
    """

    name: str
    version: str
    status: AssetStatus = AssetStatus.TRUSTED
    order: float = 0.0
    rank: int = 0


@dataclass(frozen=True)
class Pin:
    """Hold dependents of ``kind:name`` on ``version``.

    ``scope`` is ``*`` (every dependent), a tag (dependents with it) or
    ``!tag`` (dependents without it).
    """

    kind: str
    name: str
    version: str
    scope: str = "*"
    reason: str = ""

    def applies(self, kind: str, name: str, tags: frozenset[str]) -> bool:
        if kind != self.kind or not (name == self.name or name.startswith(self.name + "/")
                                     or self.name.startswith(name + "/")):
            return False
        if self.scope == "*":
            return True
        if self.scope.startswith("!"):
            return self.scope[1:] not in tags
        return self.scope in tags


@dataclass(frozen=True)
class Choice:
    """The version a use resolves to, and why."""

    kind: str
    name: str
    version: str
    status: AssetStatus
    reason: str = "newest"

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.name}@{self.version}"


def choose(
    kind: str,
    candidates: Sequence[Candidate],
    *,
    tags: Iterable[str] = (),
    pins: Iterable[Pin] = (),
    how: str | None = None,
) -> Choice | None:
    """Resolve one use; ``how`` is a policy's reroute target (see below).

    ``how`` is ``auto`` (another implementation, else the last known-good
    version), ``implementation``, ``last-good``, ``pin:VERSION`` or
    ``pin:last-good``. Without ``how`` the default (after pins and canary
    gating) is returned; with it, the healthy alternative, or None when
    there is none. None also when nothing at all can be served.
    """
    tagset = frozenset(tags)
    usable = [c for c in candidates if c.status is not AssetStatus.RETRACTED]
    canary = "canary" in tagset
    if canary:
        testing = [c for c in usable if c.status is AssetStatus.REVALIDATING]
    else:
        testing = []
        usable = [c for c in usable if c.status is not AssetStatus.REVALIDATING]
    if not usable:
        return None
    best = _newest(usable)
    reason = "newest"
    if testing:
        best, reason = _newest(testing), "canary candidate"
    for p in pins:
        if p.applies(kind, best.name, tagset):
            held = [c for c in usable if c.version == p.version and p.applies(kind, c.name, tagset)]
            if held:
                best, reason = _newest(held), f"pinned ({p.scope})"
                break
    if how is None:
        return Choice(kind, best.name, best.version, best.status, reason)
    good = [c for c in usable if c.status is AssetStatus.TRUSTED]
    alt: Candidate | None = None
    label = ""
    if how.startswith("pin:"):
        target = how[4:]
        if target == "last-good":
            alt, label = _last_good(good, best), "pinned to last known-good"
        else:
            same = [c for c in usable if c.version == target and c.name == best.name]
            alt, label = (_newest(same) if same else None), f"pinned to {target}"
    else:
        if how in ("auto", "implementation"):
            other = [c for c in good if c.name != best.name]
            alt, label = (_newest(other) if other else None), "rerouted to implementation"
        if alt is None and how in ("auto", "last-good"):
            alt, label = _last_good(good, best), "rerouted to last known-good"
    if alt is None or alt == best:
        return None
    return Choice(kind, alt.name, alt.version, alt.status, f"{label} {alt.name}@{alt.version}")


def _newest(cands: Sequence[Candidate]) -> Candidate:
    return max(cands, key=lambda c: (-c.rank, c.order, c.version))


def _last_good(good: Sequence[Candidate], current: Candidate) -> Candidate | None:
    older = [c for c in good if c.name == current.name and c.order < current.order]
    return max(older, key=lambda c: (c.order, c.version)) if older else None
