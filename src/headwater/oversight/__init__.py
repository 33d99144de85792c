"""Pure oversight core: asset status, breakers and taint, policies, routing,
blast radius, canaries and monitors.

Nothing here does I/O, reads a clock or imports the store: time is passed
in, and the shell (:mod:`headwater.runtime.guard`, :mod:`headwater.runtime.fleet`
and the store) loads the state, calls these functions and applies what
they return. The public names are listed in ``__all__``.
"""

from headwater.oversight.breaker import Breaker, Signal, taint
from headwater.oversight.canary import CanaryVerdict, Metric, MetricResult, judge, verdict
from headwater.oversight.engine import Decision, Resolution, Snapshot, decide, resolve
from headwater.oversight.lineage import (
    BlastRadius,
    CheckpointInfo,
    EdgeSource,
    Hit,
    Hop,
    LineageGraph,
    blast_radius,
    select_versions,
)
from headwater.oversight.monitors import (
    ClaimObs,
    Cluster,
    Concentration,
    Coverage,
    Disagreement,
    FailureCluster,
    Findings,
    Inconsistency,
    RedundancyObs,
    Shift,
    Suspect,
    VerificationObs,
    concentration,
    coverage,
    inconsistency,
    output_shift,
    redundancy,
    signals,
    values_agree,
    verification_clusters,
)
from headwater.oversight.policy import (
    Action,
    Dependent,
    Directive,
    Effect,
    Exposure,
    Match,
    Mode,
    Policy,
    Rule,
    Running,
    alert,
    evaluate,
    pause,
    pin,
    policy_from_doc,
    reroute,
    sandbox,
    stage_fraction,
    throttle,
)
from headwater.oversight.refs import KINDS, AssetRef, RefError, VersionRange, parse_ref, version_key
from headwater.oversight.registry import Implementation, Implementations, Redundancy, implementation, implementations
from headwater.oversight.routing import Candidate, Choice, Pin, choose
from headwater.oversight.stats import fisher_greater, mann_whitney
from headwater.oversight.status import (
    BAD_STATES,
    FINAL_STATES,
    TRANSITIONS,
    AssetStatus,
    AuditRecord,
    Event,
    OversightError,
    Transition,
    transition,
)

__all__ = [
    "BAD_STATES", "FINAL_STATES", "KINDS", "TRANSITIONS",
    "Action", "AssetRef", "AssetStatus", "AuditRecord", "BlastRadius", "Breaker", "CanaryVerdict",
    "Candidate", "CheckpointInfo", "Choice", "ClaimObs", "Cluster", "Concentration", "Coverage",
    "Decision", "Dependent", "Directive", "Disagreement", "EdgeSource", "Effect", "Event", "Exposure",
    "FailureCluster", "Findings", "Hit", "Hop", "Implementation", "Implementations", "Inconsistency",
    "LineageGraph", "Match", "Metric", "MetricResult", "Mode", "OversightError", "Pin", "Policy",
    "Redundancy", "RedundancyObs", "RefError", "Resolution", "Rule", "Running", "Shift", "Signal", "Snapshot",
    "Suspect", "Transition", "VerificationObs", "VersionRange",
    "alert", "blast_radius", "choose", "concentration", "coverage", "decide", "evaluate",
    "fisher_greater", "implementation", "implementations", "inconsistency", "judge", "mann_whitney",
    "output_shift", "parse_ref", "pause", "pin", "policy_from_doc", "redundancy", "reroute", "resolve",
    "sandbox", "select_versions", "signals", "stage_fraction", "taint", "throttle", "transition",
    "values_agree", "verdict", "verification_clusters", "version_key",
]
