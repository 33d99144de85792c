"""The records the scheduler's state is made of, and the edge codes they keep.

:class:`TaskRecord` is one task, :class:`LeaseRecord` one live lease and
:class:`RunState` the whole run (see :mod:`headwater.schedule.scheduler` for
the meaning of each field and :mod:`headwater.schedule.core` for the
functions that change them). The functions here only read a record, or
update one record's counters.

Edge codes. What a parent offers a child is a small int ``depth << 3 | kind``
with ``kind`` one of :data:`OK` (an available result or decision), :data:`SKIP`
(a skipped data parent), :data:`WAIT` (not available yet), :data:`REJECT`
(the decider chose another alternative, or was itself skipped) and
:data:`FAIL` (failed for good); ``depth`` is the number of uncommitted
attempts behind the offer (0: committed, or skipped for good). A parent
stores the data code its children last saw in ``published``; a decider's
alternatives store the control code they last saw in ``ctrl_code``. Each
task keeps counters over its incoming edges (``n_wait``, ``n_fail``,
``n_skip``, ``n_reject``) and histograms of their non-zero depths (``dh_ok``
over available edges, ``dh_sk`` over skipped ones), so its readiness, the
depth a claim would need, its own depth once finished and whether it may
commit are all O(1) to read, whatever its fan-in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from headwater.schedule.depth import SpeculationDepth
from headwater.schedule.graph import Graph
from headwater.schedule.states import Lease, State, TaskDef

OK, SKIP, WAIT, REJECT, FAIL = 0, 1, 2, 3, 4
"""Edge kinds; a code is ``depth << 3 | kind``."""

PENDING, READY, LEASED = State.PENDING, State.READY, State.LEASED
PROVISIONAL, VERIFIED, COMMITTED = State.PROVISIONAL, State.VERIFIED, State.COMMITTED
REFUTED, SQUASHED, FAILED, SKIPPED = State.REFUTED, State.SQUASHED, State.FAILED, State.SKIPPED

COUNTERS = (
    "claims", "speculative_claims", "verify_claims", "committed", "verified", "refuted", "squashed",
    "requeued", "failures", "speculative_failures", "failed", "skipped", "expired", "lost",
    "cancelled", "approvals", "rejections", "stale_results", "scoreboard_reads",
    "mispredictions", "predictions_confirmed", "depth_changes", "reassigned",
)
"""Every key of ``Scheduler.counters``, all present from the start."""


@dataclass(slots=True, eq=False)
class TaskRecord:
    """One task: static links, edge counters, budgets and its current attempt.

    The first block is fixed at construction (from the :class:`Graph`). The
    edge block is described in the module docstring. ``bucket`` is the
    depth a claim would need when that is what keeps the task waiting (see
    :attr:`RunState.deep`), ``queued`` marks it in the work heap and ``seq``
    invalidates stale ready-queue entries. ``failures``, ``refutations`` and
    ``lost`` are spent budgets; ``no_spec`` makes the next attempts wait for
    committed inputs; ``pinned`` is a skip restored from a previous run;
    ``error`` is set when the task failed on its own (for good);
    ``predicted`` is a decider's predicted branch; ``announce`` holds the
    reason of a flush whose :class:`Requeue` waits until the task has
    settled (a squashed task that turns out skipped is not re-queued). The
    last block describes the current attempt and is reset when it closes.
    """

    idx: int
    name: str
    defn: TaskDef
    key: tuple[int, float, int]
    parents: tuple[int, ...]
    controller: int
    children: tuple[tuple[int, int], ...]
    alternatives: tuple[int, ...]
    n_parents: int
    state: State = PENDING
    attempt: int = 1
    ctrl_code: int = WAIT
    n_wait: int = 0
    n_fail: int = 0
    n_skip: int = 0
    n_reject: int = 0
    dh_ok: dict[int, int] = field(default_factory=dict)
    dh_sk: dict[int, int] = field(default_factory=dict)
    published: int = WAIT
    bucket: int = 0
    queued: bool = False
    seq: int = 0
    not_before: float = 0.0
    failures: int = 0
    refutations: int = 0
    lost: int = 0
    no_spec: bool = False
    pinned: bool = False
    error: str | None = None
    predicted: str | None = None
    announce: str | None = None
    run_token: int = 0
    producer: str | None = None
    inputs: tuple[tuple[int, int], ...] = ()
    branch: str | None = None
    since: float | None = None
    dependents: list[tuple[int, int]] = field(default_factory=list)
    approvals: set[str] = field(default_factory=set)
    rejections: set[str] = field(default_factory=set)
    voters: set[str] = field(default_factory=set)
    verifying: dict[int, str] = field(default_factory=dict)
    vq_attempt: int = 0


@dataclass(slots=True, eq=False)
class LeaseRecord:
    """A live lease: the public :class:`Lease`, its current expiry and start."""

    lease: Lease
    task: int
    expires: float
    started: float


@dataclass(slots=True, eq=False)
class RunState:
    """Everything the scheduler knows about one run; see the scheduler's module docstring."""

    graph: Graph
    tasks: list[TaskRecord]
    depth: SpeculationDepth
    predict_history: bool
    lease_ttl: float
    backoff: tuple[float, float, float]
    max_refutations: int
    max_lost: int
    next_token: int
    now: float = 0.0
    history: dict[int, dict[str, int]] = field(default_factory=dict)
    closed: dict[tuple[int, int], State] = field(default_factory=dict)
    leases: dict[int, LeaseRecord] = field(default_factory=dict)
    by_agent: dict[str, dict[int, None]] = field(default_factory=dict)
    expiry: list[tuple[float, int]] = field(default_factory=list)
    ready: dict[str, list[tuple[int, float, int, int]]] = field(default_factory=dict)
    delayed: list[tuple[float, int, int]] = field(default_factory=list)
    vqueue: dict[str, dict[str, list[tuple[int, float, int, int]]]] = field(default_factory=dict)
    deep: dict[int, dict[int, None]] = field(default_factory=dict)
    work: list[int] = field(default_factory=list)
    version: int = 0
    dirty: set[int] = field(default_factory=set)
    n_final: int = 0
    n_failed: int = 0
    started: bool = False
    restored: bool = False
    reported: bool = False
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))


# -- edge codes ---------------------------------------------------------------

def _hist(h: dict[int, int], d: int, sign: int) -> None:
    v = h.get(d, 0) + sign
    if v:
        h[d] = v
    else:
        del h[d]


def apply_edge(rec: TaskRecord, code: int, sign: int) -> None:
    """Add (``sign=1``) or remove (``-1``) one incoming edge's code from ``rec``'s counters."""
    kind, d = code & 7, code >> 3
    if kind == OK:
        if d:
            _hist(rec.dh_ok, d, sign)
    elif kind == SKIP:
        rec.n_skip += sign
        if d:
            _hist(rec.dh_ok, d, sign)
            _hist(rec.dh_sk, d, sign)
    elif kind == WAIT:
        rec.n_wait += sign
    elif kind == REJECT:
        rec.n_reject += sign
    else:
        rec.n_fail += sign


def own_depth(rec: TaskRecord) -> int:
    """Uncommitted attempts on the longest chain ending at ``rec``'s finished, uncommitted attempt."""
    return 1 + (max(rec.dh_ok) if rec.dh_ok else 0)


def need_depth(rec: TaskRecord) -> int:
    """The speculation depth a claim of ``rec`` needs now (0: all inputs final)."""
    return max(rec.dh_ok) if rec.dh_ok else 0


def skip_depth(rec: TaskRecord) -> int:
    """Uncommitted decisions behind ``rec``'s skip (0: skipped for good)."""
    if rec.pinned:
        return 0
    if rec.n_reject:
        return rec.ctrl_code >> 3
    return max(rec.dh_sk) if rec.dh_sk else 0


def data_code(rec: TaskRecord) -> int:
    """What ``rec`` offers its data children now."""
    s = rec.state
    if s is COMMITTED:
        return OK
    if s is PROVISIONAL or s is VERIFIED:
        return own_depth(rec) << 3 | OK
    if s is SKIPPED:
        return skip_depth(rec) << 3 | SKIP
    if s is FAILED:
        return FAIL
    return WAIT


def decision(dec: TaskRecord) -> tuple[str | None, int]:
    """A decider's current choice and its depth: finished, committed or predicted."""
    s = dec.state
    if s is COMMITTED:
        return dec.branch, 0
    if s is PROVISIONAL or s is VERIFIED:
        return dec.branch, own_depth(dec)
    if s is SKIPPED or s is FAILED:
        return None, 0
    return dec.predicted, 1


def control_code(dec: TaskRecord, alt: TaskRecord) -> int:
    """What decider ``dec`` offers its alternative ``alt`` now."""
    if dec.state is SKIPPED:
        return skip_depth(dec) << 3 | REJECT
    if dec.state is FAILED:
        return FAIL
    choice, d = decision(dec)
    if choice is None:
        return WAIT
    return d << 3 | (OK if choice == alt.name else REJECT)
