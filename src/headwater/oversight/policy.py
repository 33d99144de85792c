"""Policies: what happens to the dependents of an asset in a given status.

A :class:`Policy` is a named, versioned list of :class:`Rule`; each rule
matches (status, asset kind, asset name, workflow tags) and lists actions:

* ``throttle`` (``cap`` N): at most N tasks exposed to the asset run at once
  in one coordinator; ``cap`` 0 (also written ``pause``) dispatches none;
* ``sandbox``: run, but mark the outputs untrusted and refuse them to
  consumers (claims are not served, cache entries not reused);
* ``reroute`` (``to`` ``implementation``, ``last-good`` or ``auto``): use
  another implementation registered under the same asset name, or the last
  known-good version;
* ``pin`` (``to`` a version or ``last-good``): hold dependents on one
  version, so none moves to a newer one (a version-scoped quarantine).
  The actions after a reroute or pin in the same rule are its fallback:
  they apply only when there is no healthy version to go to;
* ``alert``: record an alert in the audit log.

A policy rolls out in :class:`Mode` ``shadow`` (every action is recorded
as what it *would* have done, none is applied), ``staged`` (applied to the
share ``share`` of dependent workflows, chosen by a hash of the policy name
and the workflow name so the choice is stable across runs and grows
monotonically as ``share`` grows; the others are recorded as shadow) and
``enforced``. A bad global policy is itself a correlated failure; the modes
are how one finds out before it acts everywhere.

Policies are written in YAML (or JSON)::

    policy: claim-breaker
    description: stop the spread of bad shared constants
    mode: staged
    share: 0.5
    rules:
      - name: production reroutes
        when: {status: [degraded, retracted], kind: claim, tags: {any: [production]}}
        do: [{reroute: last-good}, pause, alert]
      - name: everyone else waits
        when: {status: [degraded, retracted], kind: claim}
        do: [pause, alert]

or in Python with the same classes (``Policy``, ``Rule``, ``Match``,
``Action``). :func:`evaluate` is pure: it takes the policies, the dependent
and the asset versions it is exposed to, and returns a :class:`Directive`
with one :class:`Effect` per action, enforced or shadow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from headwater.oversight.refs import KINDS, RefError, parse_ref
from headwater.oversight.status import AssetStatus, AuditRecord, OversightError


class Mode(IntEnum):
    """How far a policy has rolled out."""

    SHADOW = 0
    """Record what the policy would do; apply nothing."""

    STAGED = 1
    """Apply to the share ``share`` of dependent workflows; shadow elsewhere."""

    ENFORCED = 2
    """Apply to every dependent."""

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str | Mode) -> Mode:
        if isinstance(text, Mode):
            return text
        try:
            return cls[str(text).strip().upper()]
        except KeyError:
            raise OversightError(f"unknown policy mode {text!r}; expected shadow, staged or enforced") from None


ACTION_KINDS: tuple[str, ...] = ("throttle", "sandbox", "reroute", "pin", "alert")
REROUTE_TARGETS: tuple[str, ...] = ("auto", "implementation", "last-good")


@dataclass(frozen=True)
class Action:
    """One action of a rule; see the module docstring for each ``kind``."""

    kind: str
    cap: int | None = None
    to: str | None = None
    message: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise OversightError(f"unknown action {self.kind!r}; expected one of {', '.join(ACTION_KINDS)}")
        if self.kind == "throttle" and (not isinstance(self.cap, int) or self.cap < 0):
            raise OversightError(f"throttle needs a cap >= 0 (0 pauses), got {self.cap!r}")
        if self.kind == "reroute":
            object.__setattr__(self, "to", self.to or "auto")
            if self.to not in REROUTE_TARGETS:
                raise OversightError(f"reroute to {self.to!r}: expected one of {', '.join(REROUTE_TARGETS)}")
        if self.kind == "pin":
            object.__setattr__(self, "to", self.to or "last-good")

    @property
    def pauses(self) -> bool:
        return self.kind == "throttle" and self.cap == 0

    def __str__(self) -> str:
        if self.pauses:
            return "pause"
        if self.kind == "throttle":
            return f"throttle({self.cap})"
        if self.kind in ("reroute", "pin"):
            return f"{self.kind}({self.to})"
        return self.kind

    def to_doc(self) -> Any:
        if self.pauses:
            return "pause"
        if self.kind == "throttle":
            return {"throttle": self.cap}
        if self.kind in ("reroute", "pin"):
            return {self.kind: self.to}
        if self.kind == "alert" and self.message:
            return {"alert": self.message}
        return self.kind


def pause() -> Action:
    return Action("throttle", cap=0)


def throttle(cap: int) -> Action:
    return Action("throttle", cap=cap)


def sandbox() -> Action:
    return Action("sandbox")


def reroute(to: str = "auto") -> Action:
    return Action("reroute", to=to)


def pin(to: str = "last-good") -> Action:
    return Action("pin", to=to)


def alert(message: str = "") -> Action:
    return Action("alert", message=message)


def _names(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset({value})
    return frozenset(str(v) for v in value)


@dataclass(frozen=True)
class Match:
    """What a rule applies to. Empty fields match anything.

    ``status`` defaults to degraded and retracted. ``assets`` are refs
    (``claim:g``, ``lib:fft``, globs such as ``lib:scipy*``); ``tags_any``,
    ``tags_all`` and ``tags_none`` test the dependent workflow's tags and
    ``campaigns`` its run's campaign. Tags and campaigns are also the scope
    of a rule's throttle: its cap counts the running tasks, across the
    fleet, that use the asset and are in that scope (a quota per campaign
    or tag).
    """

    status: frozenset[AssetStatus] = frozenset({AssetStatus.DEGRADED, AssetStatus.RETRACTED})
    kinds: frozenset[str] = frozenset()
    assets: tuple[str, ...] = ()
    tags_any: frozenset[str] = frozenset()
    tags_all: frozenset[str] = frozenset()
    tags_none: frozenset[str] = frozenset()
    campaigns: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        statuses = self.status
        if isinstance(statuses, (str, AssetStatus)):
            statuses = [statuses]
        object.__setattr__(self, "status", frozenset(AssetStatus.parse(s) for s in statuses))
        kinds = _names(self.kinds)
        bad = sorted(kinds - set(KINDS))
        if bad:
            raise OversightError(f"unknown asset kind(s) {bad}; expected {', '.join(KINDS)}")
        object.__setattr__(self, "kinds", kinds)
        assets = (self.assets,) if isinstance(self.assets, str) else tuple(self.assets)
        try:
            object.__setattr__(self, "_refs", tuple(parse_ref(a) for a in assets))
        except RefError as exc:
            raise OversightError(f"rule asset: {exc}") from None
        object.__setattr__(self, "assets", assets)
        for name in ("tags_any", "tags_all", "tags_none", "campaigns"):
            object.__setattr__(self, name, _names(getattr(self, name)))

    def matches(self, exposure: Exposure, dependent: Dependent) -> bool:
        if exposure.status not in self.status:
            return False
        if self.kinds and exposure.kind not in self.kinds:
            return False
        if self._refs and not any(r.matches(exposure.kind, exposure.name, exposure.version) for r in self._refs):
            return False
        return self.in_scope(dependent)

    def in_scope(self, dependent: Dependent) -> bool:
        """Whether ``dependent``'s tags and campaign are among those this matches."""
        if self.campaigns and dependent.campaign not in self.campaigns:
            return False
        return self.matches_tags(dependent.tags)

    def matches_tags(self, tags: frozenset[str]) -> bool:
        if self.tags_any and not (self.tags_any & tags):
            return False
        if self.tags_all and not self.tags_all <= tags:
            return False
        return not (self.tags_none & tags)

    def to_doc(self) -> dict:
        doc: dict[str, Any] = {"status": sorted(s.label for s in self.status)}
        if self.kinds:
            doc["kind"] = sorted(self.kinds)
        if self.assets:
            doc["asset"] = list(self.assets)
        tags = {k: sorted(v) for k, v in (("any", self.tags_any), ("all", self.tags_all),
                                          ("none", self.tags_none)) if v}
        if tags:
            doc["tags"] = tags
        if self.campaigns:
            doc["campaign"] = sorted(self.campaigns)
        return doc


@dataclass(frozen=True)
class Rule:
    """``when`` this matches, ``do`` these actions (in order; see ``reroute``)."""

    when: Match
    do: tuple[Action, ...]
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "do", tuple(self.do))
        if not self.do:
            raise OversightError(f"rule {self.name or '(unnamed)'} has no actions")

    def to_doc(self) -> dict:
        doc: dict[str, Any] = {"when": self.when.to_doc(), "do": [a.to_doc() for a in self.do]}
        if self.name:
            doc = {"name": self.name, **doc}
        return doc


@dataclass(frozen=True)
class Policy:
    """A named, versioned set of rules with a rollout mode.

    ``version`` is assigned by the store when a changed policy is applied;
    ``share`` is the fraction of dependent workflows a ``staged`` policy
    applies to.
    """

    name: str
    rules: tuple[Rule, ...]
    mode: Mode = Mode.SHADOW
    share: float = 0.0
    version: int = 0
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise OversightError("a policy needs a name")
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "mode", Mode.parse(self.mode))
        share = float(self.share)
        if not 0.0 <= share <= 1.0:
            raise OversightError(f"policy {self.name}: share must be within [0, 1], got {share}", subject=self.name)
        object.__setattr__(self, "share", share)
        if not self.rules:
            raise OversightError(f"policy {self.name} has no rules", subject=self.name)

    def applies_to(self, dependent: Dependent) -> bool:
        """Whether this policy's actions take effect for ``dependent`` (mode and share)."""
        if self.mode is Mode.ENFORCED:
            return True
        if self.mode is Mode.SHADOW:
            return False
        return stage_fraction(self.name, dependent.workflow) < self.share

    def with_rollout(self, mode: Mode | str, share: float | None = None, version: int | None = None) -> Policy:
        mode = Mode.parse(mode)
        if share is None:
            share = 1.0 if mode is Mode.ENFORCED else (0.0 if mode is Mode.SHADOW else self.share)
        return Policy(self.name, self.rules, mode, share, self.version if version is None else version,
                      self.description)

    def body(self) -> dict:
        """The rules and description only: what defines a new policy version."""
        return {"policy": self.name, "description": self.description,
                "rules": [r.to_doc() for r in self.rules]}

    def to_doc(self) -> dict:
        return {**self.body(), "mode": self.mode.label, "share": self.share, "version": self.version}

    def digest(self) -> str:
        import json

        return hashlib.sha256(json.dumps(self.body(), sort_keys=True).encode()).hexdigest()


def stage_fraction(policy: str, workflow: str) -> float:
    """Where a workflow falls in [0, 1) for a staged policy: stable, uniform."""
    h = hashlib.sha256(f"{policy}\x00{workflow}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


# ------------------------------------------------------------- parsing


def _action(item: Any, where: str) -> Action:
    if isinstance(item, Action):
        return item
    if isinstance(item, str):
        word = item.strip()
        if word == "pause":
            return pause()
        if word in ("sandbox", "alert", "reroute", "pin"):
            return Action(word)
        if word == "throttle":
            raise OversightError(f"{where}: throttle needs a cap, e.g. {{throttle: 2}} (or 'pause')")
        raise OversightError(f"{where}: unknown action {word!r}; expected pause, {', '.join(ACTION_KINDS)}")
    if isinstance(item, Mapping) and len(item) == 1:
        (kind, arg), = item.items()
        if kind == "throttle":
            return Action("throttle", cap=int(arg))
        if kind in ("reroute", "pin"):
            return Action(kind, to=str(arg))
        if kind == "alert":
            return Action("alert", message=str(arg or ""))
        if kind in ("pause", "sandbox"):
            return pause() if kind == "pause" else sandbox()
    raise OversightError(f"{where}: cannot read action {item!r}")


def _match(doc: Mapping[str, Any] | None, where: str) -> Match:
    doc = dict(doc or {})
    unknown = set(doc) - {"status", "kind", "kinds", "asset", "assets", "tags", "campaign", "campaigns"}
    if unknown:
        raise OversightError(f"{where}: unknown field(s) {sorted(unknown)} in 'when'")
    tags = doc.get("tags") or {}
    if isinstance(tags, (str, list, tuple)):
        tags = {"any": tags}
    unknown_tags = set(tags) - {"any", "all", "none"}
    if unknown_tags:
        raise OversightError(f"{where}: tags take any/all/none, not {sorted(unknown_tags)}")
    kwargs: dict[str, Any] = {
        "kinds": doc.get("kind", doc.get("kinds")),
        "assets": doc.get("asset", doc.get("assets", ())) or (),
        "tags_any": tags.get("any"), "tags_all": tags.get("all"), "tags_none": tags.get("none"),
        "campaigns": doc.get("campaign", doc.get("campaigns")),
    }
    if "status" in doc:
        kwargs["status"] = doc["status"]
    return Match(**kwargs)


def policy_from_doc(doc: Mapping[str, Any], *, source: str = "policy") -> Policy:
    """Build a policy from its YAML/JSON form (see the module docstring)."""
    if not isinstance(doc, Mapping):
        raise OversightError(f"{source}: a policy is a mapping with 'policy' and 'rules'")
    name = doc.get("policy") or doc.get("name")
    if not name:
        raise OversightError(f"{source}: the policy needs a name ('policy: NAME')")
    rules = []
    for i, r in enumerate(doc.get("rules") or []):
        where = f"{source}: rule {i + 1}"
        if not isinstance(r, Mapping):
            raise OversightError(f"{where}: a rule is a mapping with 'when' and 'do'")
        actions = r.get("do", r.get("actions"))
        if isinstance(actions, (str, Mapping)):
            actions = [actions]
        if not actions:
            raise OversightError(f"{where}: no actions ('do: [...]')")
        rules.append(Rule(_match(r.get("when", r.get("match")), where),
                          tuple(_action(a, where) for a in actions), str(r.get("name", ""))))
    if not rules:
        raise OversightError(f"{source}: policy {name} has no rules", subject=str(name))
    return Policy(str(name), tuple(rules), Mode.parse(doc.get("mode", "shadow")),
                  float(doc.get("share", 0.0)), int(doc.get("version", 0)), str(doc.get("description", "")))


# ----------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Dependent:
    """A task about to run (or that ran): the subject of a policy's actions."""

    run_id: str
    workflow: str
    task: str | None = None
    tags: frozenset[str] = frozenset()
    campaign: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", _names(self.tags))


@dataclass(frozen=True)
class Exposure:
    """One asset version a dependent uses (directly or ``via`` an input)."""

    kind: str
    name: str
    version: str
    status: AssetStatus
    via: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.name}@{self.version}"

    @property
    def asset(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Effect:
    """One action of one policy rule on one dependent, for one exposure."""

    policy: str
    policy_version: int
    mode: Mode
    rule: str
    action: Action
    exposure: Exposure
    enforced: bool
    rerouted_to: str | None = None

    def audit(self, now: float, dependent: Dependent) -> AuditRecord:
        applied = "" if self.enforced else " (shadow)"
        what = str(self.action) + (f" -> {self.rerouted_to}" if self.rerouted_to else "")
        return AuditRecord(
            ts=now, actor=f"policy:{self.policy}", action=f"{what}{applied}", subject=self.exposure.ref,
            reason=f"{self.exposure.ref} is {self.exposure.status.label}"
                   + (f" (via {self.exposure.via})" if self.exposure.via else ""),
            cause=self.exposure.ref, policy=self.policy, policy_version=self.policy_version,
            mode=self.mode.label if self.enforced or self.mode is Mode.SHADOW else "staged-out",
            run_id=dependent.run_id, task=dependent.task,
            signal={"status": self.exposure.status.label, "rule": self.rule, "via": self.exposure.via},
            data={"workflow": dependent.workflow, "enforced": self.enforced, "action": self.action.to_doc()},
        )


@dataclass
class Directive:
    """What all policies together say about one dependent.

    Only enforced effects shape the fields; shadow effects are in
    ``effects`` for the audit log. ``scopes`` holds, per capped asset, the
    match of the rule whose cap is the smallest: the dependents that cap
    counts (see :meth:`over_cap`).
    """

    effects: list[Effect] = field(default_factory=list)
    caps: dict[str, int] = field(default_factory=dict)
    scopes: dict[str, Match] = field(default_factory=dict)
    sandbox: bool = False
    routes: dict[str, str] = field(default_factory=dict)
    alerts: list[Effect] = field(default_factory=list)

    @property
    def pause(self) -> bool:
        return any(cap == 0 for cap in self.caps.values())

    @property
    def enforced(self) -> list[Effect]:
        return [e for e in self.effects if e.enforced]

    def reasons(self) -> list[str]:
        return [f"{e.policy} v{e.policy_version}: {e.action} ({e.exposure.ref} {e.exposure.status.label})"
                for e in self.enforced]

    def cap(self, asset: str, cap: int, scope: Match) -> None:
        """Cap ``asset`` at ``cap`` running dependents in ``scope`` (the smallest cap wins)."""
        prev = self.caps.get(asset)
        if prev is None or cap < prev:
            self.caps[asset], self.scopes[asset] = cap, scope

    def over_cap(self, running: Iterable[Running]) -> tuple[str, int, int] | None:
        """The first capped asset (by name) whose cap the running tasks fill,
        as ``(asset, cap, running)``, or None: the task may start.

        ``running`` lists every task running now that uses a capped asset,
        in every run of the fleet; each cap counts those that use its asset
        and fall in its rule's scope (tags, campaign), so a throttle is
        fleet-wide and a rule scoped to a campaign is that campaign's quota.
        """
        running = list(running)
        for asset in sorted(self.caps):
            cap = self.caps[asset]
            scope = self.scopes.get(asset)
            n = sum(1 for r in running if asset in r.assets and (scope is None or scope.in_scope(r.dependent)))
            if n >= cap:
                return asset, cap, n
        return None


@dataclass(frozen=True)
class Running:
    """A task running somewhere in the fleet, with the ``kind:name`` assets it
    was admitted as using (what fleet-wide throttles count)."""

    dependent: Dependent
    assets: frozenset[str]


Rerouter = Callable[[Exposure, str], "Exposure | None"]
"""Given an exposure and a reroute target, the healthy exposure it would be
replaced by, or None when there is no healthy alternative."""


def evaluate(
    policies: Iterable[Policy],
    dependent: Dependent,
    exposures: Sequence[Exposure],
    reroute: Rerouter | None = None,
) -> Directive:
    """The :class:`Directive` for ``dependent`` exposed to ``exposures``.

    Policies are read in name order; in each, the first rule that matches an
    exposure decides the actions for it. A ``reroute`` that ``reroute``
    resolves to a healthy exposure makes the rest of that rule's actions
    moot for the exposure (they are its fallback); a pin names the version
    dependents stay on. Caps combine by minimum.
    """
    out = Directive()
    for policy in sorted(policies, key=lambda p: p.name):
        enforced = policy.applies_to(dependent)
        for exp in exposures:
            rule = next((r for r in policy.rules if r.when.matches(exp, dependent)), None)
            if rule is None:
                continue
            rerouted = False
            for action in rule.do:
                if rerouted and action.kind != "alert":
                    continue
                target = None
                if action.kind in ("reroute", "pin"):
                    how = action.to if action.kind == "reroute" else f"pin:{action.to}"
                    alt = reroute(exp, how or "auto") if reroute else None
                    if alt is None:
                        continue
                    target, rerouted = alt.ref, True
                eff = Effect(policy.name, policy.version, policy.mode, rule.name, action, exp, enforced, target)
                out.effects.append(eff)
                if not enforced:
                    continue
                if action.kind == "throttle":
                    out.cap(exp.asset, action.cap or 0, rule.when)
                elif action.kind == "sandbox":
                    out.sandbox = True
                elif action.kind == "reroute":
                    out.routes.setdefault(exp.asset, action.to or "auto")
                elif action.kind == "pin":
                    out.routes.setdefault(exp.asset, f"pin:{action.to}")
                elif action.kind == "alert":
                    out.alerts.append(eff)
    return out
