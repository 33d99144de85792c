"""Every knob of the cascade study, with its default and where the default comes from.

Time is in hours of simulated time throughout; compute is in stage-hours
(one agent busy for one hour). :class:`Params` is frozen: a regime is a
:func:`dataclasses.replace` of the defaults. ``docs/study.md`` lists each
default with its source, or says plainly that it is an assumption.

The parameters fall into groups:

* *fleet* -- how many workflows, how long, what they use and consume;
* *errors* -- the silent errors planted in shared assets and as local bugs,
  how strongly they show in the claims they corrupt;
* *change* -- benign version changes of shared assets (new data, new
  models), some of which legitimately shift results;
* *per-workflow oversight* -- each workflow's own verification quorum and
  what its owners do after a refutation;
* *infrastructure oversight* -- monitors, canaries, triage, breakers,
  redundancy and their costs;
* *risks* -- what infrastructure oversight itself can get wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

SHARED_KINDS = ("library", "dataset", "model", "claim")
"""Kinds of the shared core's versioned assets (compute pools are separate)."""

ERROR_KINDS = ("library", "dataset", "model", "claim", "compute", "local")
"""Where a planted silent error lives; ``local`` is a bug in one workflow's own code."""

STRATEGIES = ("none", "per-workflow", "infrastructure", "both")
"""The four oversight strategies every replicate runs, on the same fleet and errors."""


def _mix(**kw: float) -> dict[str, float]:
    return field(default_factory=lambda: dict(kw))


@dataclass(frozen=True)
class Params:
    """One regime of the study; see the module docstring for the groups."""

    # -- fleet ---------------------------------------------------------------
    n_workflows: int = 150
    """Workflows in the fleet over the simulated period."""
    stages: int = 6
    """Stages per workflow (a chain), each run by an agent as one task."""
    stage_hours: float = 8.0
    """Mean compute time of a stage (lognormal, sigma 0.5)."""
    arrival_days: float = 45.0
    """Workflows start uniformly at random over this many days."""
    horizon_days: float = 90.0
    """Simulated period; what is not finished by then is cut off."""
    n_shared: int = 40
    """Versioned assets in the shared core (libraries, datasets, models, reference claims)."""
    shared_kinds: dict[str, float] = _mix(library=0.4, dataset=0.2, model=0.2, claim=0.2)
    """Share of each kind in the shared core."""
    zipf: float = 1.1
    """Popularity skew of the shared core: asset of rank r is used with weight r**-zipf.
    0 is uniform; about 1 matches package-ecosystem reuse."""
    assets_per_stage: int = 3
    """Asset slots each stage uses (each shared or bespoke)."""
    bespoke_share: float = 0.3
    """Chance that an asset slot is bespoke to the workflow rather than from the shared core."""
    n_pools: int = 4
    """Shared compute pools (each workflow runs on one, chosen by the same skew)."""
    nodes_per_pool: int = 8
    """Nodes per pool; a bad node hits a task with probability 1/nodes_per_pool."""
    topics_per_workflow: float = 0.1
    """Claim topics per workflow: workflows on one topic produce claims under the same keys."""
    p_consume: float = 0.35
    """Chance that a stage consumes one claim produced by another workflow."""
    claim_noise: float = 1.0
    """Standard deviation of honest claim values around the truth (the unit of ``signal``)."""

    # -- errors --------------------------------------------------------------
    shared_errors: float = 4.0
    """Mean number of silent errors planted in the shared core per replicate (Poisson)."""
    error_kinds: dict[str, float] = _mix(library=0.35, dataset=0.1, model=0.1, claim=0.2, compute=0.25)
    """Which kind of shared asset a planted error lives in."""
    p_local_bug: float = 0.1
    """Chance that a workflow carries a silent bug in one of its own stages."""
    p_manifest: float = 0.7
    """Chance that a buggy asset version corrupts a given stage that uses it (input-dependent)."""
    p_inherit_chain: float = 0.9
    """Chance that a corrupted earlier stage of the same workflow corrupts the next one."""
    p_inherit_claim: float = 0.5
    """Chance that a corrupted claim read from another workflow corrupts the stage reading it
    (errors attenuate: not every use of a wrong number makes the result wrong)."""
    signal: float = 2.0
    """Predictive power of global signals: median shift an error puts on the claims it corrupts,
    in units of ``claim_noise``."""

    # -- change ----------------------------------------------------------------
    change_rate: float = 1.0
    """Benign new versions per shared asset per 30 days."""
    p_benign_shift: float = 0.25
    """Chance that a benign new version legitimately shifts the results that use it."""
    benign_shift: float = 1.0
    """Median size of such a legitimate shift, in units of ``claim_noise``."""
    external_discovery_days: float = 365.0
    """Mean time until someone outside the fleet finds a shared error (exponential)."""
    fix_hours: float = 240.0
    """Time from a report of a shared error (by anyone) to a fixed version."""
    p_heed: float = 0.5
    """Without enforcement, the chance that a workflow acts on an advisory or retraction."""

    # -- per-workflow oversight ---------------------------------------------
    verify_cost: float = 0.3
    """Compute of one verification, as a share of the stage's compute."""
    p_detect: dict[str, float] = _mix(local=0.6, library=0.1, dataset=0.1, model=0.1, claim=0.05, compute=0.5)
    """Chance that a workflow's own verifier catches a corrupted stage, by the error's kind.
    Verifiers share the workflow's libraries, data and claims, so common-mode errors slip by."""
    p_false_reject: float = 0.01
    """Chance that a verifier rejects a correct stage."""
    investigation_hours: float = 48.0
    """Time a workflow's owners spend on a refutation before re-running."""
    p_root_cause: float = 0.3
    """Chance that owners trace a refutation caused by a shared asset to that asset."""
    local_fix_hours: float = 24.0
    """Time to fix a workflow's own bug once it is known."""
    speculate: int = 2
    """Speculation depth of each workflow's scheduler (run-ahead on provisional stages)."""
    max_refutations: int = 3
    """Refutations of one stage before the workflow gives up on it."""

    # -- infrastructure oversight -----------------------------------------
    monitor_period_hours: float = 12.0
    """How often the cross-workflow monitors run."""
    monitor_window_days: float = 30.0
    """Committed claims the inconsistency monitor looks back over."""
    monitor_cost: float = 0.002
    """Cost of global signals: stage-hours per claim examined per monitor run."""
    monitor_threshold: float = 0.5
    """Separation score (Youden's J) at which the inconsistency monitor's top suspect is signalled."""
    monitor_min_workflows: int = 2
    """Workflows the disagreeing cluster must span before an inconsistency is blamed on a shared
    asset (one workflow disagreeing alone points at that workflow, not at what it shares)."""
    canary_hours: float = 24.0
    """How long a new version of a shared asset waits on its canary set."""
    canary_runs: int = 6
    """Canary runs per new version, on the candidate and on the current version each; the
    canary compares their outputs with a Mann-Whitney test (their compute is a cost)."""
    canary_alpha: float = 0.05
    """Level of the canary's Mann-Whitney test."""
    canary_cost: float = 2.0
    """Stage-hours one canary set costs (a few small representative jobs, both versions)."""
    triage_hours: float = 8.0
    """Time people take to confirm or clear a flagged asset (dependents sandboxed meanwhile)."""
    p_confirm: float = 0.9
    """Chance that triage confirms a flagged asset that really is bad."""
    p_triage_clear: float = 0.95
    """Chance that triage clears a flagged asset that is in fact fine."""
    p_redirect: float = 0.5
    """Chance that triage of a wrongly flagged asset finds the error its disagreeing
    dependents do carry (a bug nearby), and degrades that instead."""
    trip_score: float = 2.0
    """Signal score at which the breaker opens at once, before triage. Scores are at most 1, so
    the default lets no single monitor open it: triage, an authoritative report (owners, an
    advisory) or a second independent source does."""
    redundancy_share: float = 0.05
    """Share of library calls also run on a second implementation (N-version redundancy)."""
    cluster_alpha: float = 0.001
    """Level of the clustered verification-failure monitor's Fisher test (it tests every asset
    version in the window each period, so the level is strict)."""
    cluster_refutations: int = 2
    """Distinct workflows whose refutations must share an asset version before the clustered
    verification-failure monitor's finding on it is acted on (strategies with verification)."""

    # -- risks of oversight itself -----------------------------------------
    p_bad_policy: float = 0.2
    """Chance per replicate that a bad global policy is rolled out."""
    bad_policy_share: float = 0.35
    """Share of the fleet a bad policy's tag covers."""
    p_detect_bad_policy: float = 0.5
    """Chance that a bad policy is caught at each rollout gate (after shadow, after staged)."""
    p_blind: float = 0.25
    """Chance per replicate that global monitors are blind to one error kind (drawn at random)."""
    blind_kind: str | None = None
    """When set, the global monitors and canaries are blind to this error kind in every replicate."""
    synchronized: bool = False
    """Roll new versions out to everyone in batches (one canary per batch)."""
    rollout_days: float = 7.0
    """Batch period of synchronized rollouts."""
    reuse_uplift: float = 1.2
    """Claim consumption under infrastructure oversight, relative to without (easier reuse)."""
    auto_upgrade: bool = False
    """Under infrastructure oversight, running workflows move to promoted versions at once
    (without it, a workflow keeps the versions it started with)."""

    def with_(self, **changes: Any) -> Params:
        """A copy with ``changes``; unknown names raise ``TypeError``."""
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Every field, by name (dicts copied)."""
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), dict) else v) for f in fields(self)}

    @property
    def horizon(self) -> float:
        """The simulated period in hours."""
        return self.horizon_days * 24.0


QUICK = dict(n_workflows=50, horizon_days=50.0, arrival_days=25.0, n_shared=25)
"""Overrides for ``--quick``: a smaller fleet over a shorter period."""
