"""The decision a dependent gets: which versions it uses, and what policies do.

:class:`Snapshot` is the oversight state the shell loads from the store
(statuses of the versions that have one, pins, active policies);
:func:`resolve` decides one use of an asset (the version after pins,
canaries and any policy reroute, and the policy effects on that exposure);
:func:`decide` combines every use of one task with the exposures it
inherits through its inputs into one :class:`Decision`.

The runtime calls :func:`decide` at dispatch, with the uses it predicts
for the task, and :func:`resolve` again inside the task for each actual
``ctx.use`` / ``ctx.call``; both see the same snapshot rules, so the
version a task was admitted for is the version it gets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from headwater.oversight.policy import Dependent, Directive, Exposure, Policy, evaluate
from headwater.oversight.refs import VersionRange, parse_range
from headwater.oversight.routing import Candidate, Choice, Pin, choose
from headwater.oversight.status import AssetStatus


@dataclass(frozen=True)
class Snapshot:
    """The oversight state decisions are made against.

    ``statuses`` maps ``kind:name@version`` to a status for every version
    that has one on record. ``ranges`` are version-scoped statuses
    (``kind``, ``name``, range, status) that also cover versions first seen
    later; a version's own status wins over a range's, and among ranges the
    most severe. ``gated`` are ``kind:name`` assets whose new versions
    start under a canary: a version of one (or of an implementation under
    it) that has no status on record is revalidating; ``known`` lists, per
    gated asset, the ``name@version`` that do have one. Any other version
    is trusted.
    """

    statuses: Mapping[str, AssetStatus] = field(default_factory=dict)
    pins: tuple[Pin, ...] = ()
    policies: tuple[Policy, ...] = ()
    gated: frozenset[str] = frozenset()
    ranges: tuple[tuple[str, str, VersionRange, AssetStatus], ...] = ()
    known: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def status(self, kind: str, name: str, version: str) -> AssetStatus:
        own = self.statuses.get(f"{kind}:{name}@{version}")
        if own is not None:
            return own
        gate = self.gate_of(kind, name)
        if gate is not None and f"{name}@{version}" not in self.known.get(gate, frozenset()):
            return AssetStatus.REVALIDATING
        worst = AssetStatus.TRUSTED
        for k, n, rng, status in self.ranges:
            if k == kind and (n == name or name.startswith(n + "/")) and rng.contains(version):
                if SEVERITY[status] > SEVERITY[worst]:
                    worst = status
        return worst

    def with_statuses(self, kind: str, candidates: Iterable[Candidate]) -> list[Candidate]:
        return [replace(c, status=self.status(kind, c.name, c.version)) for c in candidates]

    def gate_of(self, kind: str, name: str) -> str | None:
        """The gated asset ``kind:name`` falls under (itself or its group), if any."""
        if not self.gated:
            return None
        for key in (f"{kind}:{name}", f"{kind}:{name.split('/', 1)[0]}"):
            if key in self.gated:
                return key
        return None

    @property
    def quiet(self) -> bool:
        """Nothing on record that could change any decision."""
        return not self.statuses and not self.pins and not self.policies and not self.ranges and not self.gated

    def open_breaker(self, kind: str, name: str) -> bool:
        """Whether some version of ``kind:name`` is degraded or retracted."""
        prefix = f"{kind}:{name}@"
        bad = (AssetStatus.DEGRADED, AssetStatus.RETRACTED)
        return any(k.startswith(prefix) and s in bad for k, s in self.statuses.items()) or \
            any(k == kind and n == name and s in bad for k, n, _, s in self.ranges)


SEVERITY: dict[AssetStatus, int] = {
    AssetStatus.TRUSTED: 0, AssetStatus.REVALIDATING: 1, AssetStatus.SUSPECT: 2,
    AssetStatus.DEGRADED: 3, AssetStatus.RETRACTED: 4,
}
"""How bad a status is, for combining version-scoped statuses."""

RANGE_PREFIX = "range:"
"""Version strings of version-scoped status rows: ``range:*``, ``range:>=1.2,<1.4``."""


def range_of(version: str) -> VersionRange | None:
    """The range a ``range:...`` version string stands for, or None for a plain version."""
    if not version.startswith(RANGE_PREFIX):
        return None
    text = version[len(RANGE_PREFIX):]
    return VersionRange.between() if text in ("", "*") else parse_range(text)


@dataclass(frozen=True)
class Resolution:
    """One use decided: the version served, the exposure before any reroute,
    and the policy directive for it."""

    choice: Choice
    exposure: Exposure
    directive: Directive

    @property
    def rerouted(self) -> bool:
        return (self.choice.name, self.choice.version) != (self.exposure.name, self.exposure.version)


def resolve(snapshot: Snapshot, dependent: Dependent, kind: str,
            candidates: Sequence[Candidate]) -> Resolution | None:
    """Decide one use; None when no version can be served at all."""
    cands = snapshot.with_statuses(kind, candidates)
    first = choose(kind, cands, tags=dependent.tags, pins=snapshot.pins)
    if first is None:
        return None
    exposure = Exposure(kind, first.name, first.version, first.status)

    def reroute(exp: Exposure, how: str) -> Exposure | None:
        alt = choose(kind, cands, tags=dependent.tags, pins=snapshot.pins, how=how)
        return None if alt is None else Exposure(kind, alt.name, alt.version, alt.status)

    directive = evaluate(snapshot.policies, dependent, [exposure], reroute)
    route = directive.routes.get(exposure.asset)
    choice = first
    if route is not None:
        alt = choose(kind, cands, tags=dependent.tags, pins=snapshot.pins, how=route)
        choice = alt or first
    return Resolution(choice, exposure, directive)


@dataclass
class Decision:
    """Everything policies say about dispatching one task."""

    resolutions: dict[str, Resolution] = field(default_factory=dict)
    inherited: list[Exposure] = field(default_factory=list)
    directive: Directive = field(default_factory=Directive)

    @property
    def pause(self) -> bool:
        return self.directive.pause

    @property
    def sandbox(self) -> bool:
        return self.directive.sandbox

    @property
    def caps(self) -> dict[str, int]:
        return self.directive.caps

    def exposures(self) -> list[Exposure]:
        """Every exposure after routing: the versions the task will really use."""
        out = [Exposure(r.choice.kind, r.choice.name, r.choice.version, r.choice.status)
               for r in self.resolutions.values()]
        return out + list(self.inherited)


def decide(snapshot: Snapshot, dependent: Dependent,
           uses: Mapping[str, tuple[str, Sequence[Candidate]]],
           inherited: Sequence[Exposure] = ()) -> Decision:
    """Decide a task: ``uses`` maps each ``kind:name`` it uses to its kind and
    candidates; ``inherited`` are exposures that reach it through inputs
    (they cannot be rerouted, so only a rule's fallback applies to them)."""
    out = Decision(inherited=list(inherited))
    merged = out.directive
    for key in sorted(uses):
        kind, cands = uses[key]
        res = resolve(snapshot, dependent, kind, cands)
        if res is None:
            continue
        out.resolutions[key] = res
        _merge(merged, res.directive)
    bad = [e for e in inherited if e.status is not AssetStatus.TRUSTED]
    if bad:
        _merge(merged, evaluate(snapshot.policies, dependent, bad, None))
    return out


def _merge(into: Directive, other: Directive) -> None:
    into.effects.extend(other.effects)
    for asset, cap in other.caps.items():
        into.cap(asset, cap, other.scopes[asset])
    into.sandbox = into.sandbox or other.sandbox
    for asset, route in other.routes.items():
        into.routes.setdefault(asset, route)
    into.alerts.extend(other.alerts)
