"""The vocabulary of the scheduling core: states, task definitions, leases, actions.

Everything here is plain frozen data. :class:`State` is the one state enum;
:data:`FINAL_STATES` are the states a task never leaves once the run is over.
:class:`TaskDef` is the core's view of one task of a workflow spec, a
:class:`Lease` is what an agent holds while it runs or verifies an attempt,
and the action classes are what every event method of
:class:`~headwater.schedule.Scheduler` returns for the runtime to apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Union


class State(IntEnum):
    """The state of a task instance (one attempt of one task).

    A task's state is the state of its current attempt. Attempts that end
    as ``REFUTED``, ``SQUASHED`` or (with retries left) ``FAILED`` are
    replaced at once by a new attempt, so those states are seen in
    :meth:`Scheduler.attempt_state` and in actions, while ``state_of`` shows
    the new attempt (``PENDING`` or ``READY``). ``FAILED`` is also a task's
    final state once its retries are exhausted.
    """

    PENDING = 0
    """Not claimable yet: an input is not available, or the speculation
    depth it would need is deeper than the current limit."""

    READY = 1
    """Claimable by an agent of the task's role (from ``not_before`` on)."""

    LEASED = 2
    """An agent holds a run lease and is executing the attempt."""

    PROVISIONAL = 3
    """Executed and checkpointed, awaiting its verification quorum."""

    VERIFIED = 4
    """Approved by ``k`` distinct agents other than its producer; waits for
    every input to be committed."""

    COMMITTED = 5
    """Verified with every input committed: the published result. Final."""

    REFUTED = 6
    """Rejected by ``reject`` verifiers. An attempt state: the task is
    re-queued as a new attempt and everything built on this one squashed."""

    SQUASHED = 7
    """Abandoned: built on an attempt that was refuted or abandoned, on a
    mispredicted branch, or its lease expired. An attempt state."""

    FAILED = 8
    """An attempt that failed; as a task state, retries are exhausted (or an
    input failed for good). Final."""

    SKIPPED = 9
    """A branch alternative not taken, or downstream only of such. Final
    once the deciding task is committed; until then the skip is provisional
    and is undone if the decision changes."""


FINAL_STATES: frozenset[State] = frozenset({State.COMMITTED, State.FAILED, State.SKIPPED})
"""Task states that end a run when every task is in one of them."""

LIVE_STATES: frozenset[State] = frozenset({State.LEASED, State.PROVISIONAL, State.VERIFIED})
"""States of an attempt that has been claimed and is not yet committed."""


@dataclass(frozen=True)
class TaskDef:
    """One task as the scheduling core sees it.

    ``verify`` approvals from distinct agents other than the producer verify
    an attempt; ``reject`` rejections refute it. ``branches`` names the
    alternative tasks this task decides between; the finishing result names
    one of them. ``expected_duration`` (seconds) feeds the critical-path
    ordering and straggler detection.
    """

    name: str
    deps: tuple[str, ...] = ()
    role: str = "worker"
    priority: int = 0
    retries: int = 0
    verify: int = 0
    reject: int = 1
    verifier_role: str = "verifier"
    branches: tuple[str, ...] = ()
    expected_duration: float = 1.0

    @classmethod
    def from_spec(cls, task: Any, expected_duration: float = 1.0) -> TaskDef:
        """The core's view of a workflow spec's task (``headwater.spec.TaskSpec``)."""
        return cls(name=task.name, deps=tuple(task.after), role=task.role, priority=task.priority,
                   retries=task.retries, verify=task.quorum.k, reject=task.quorum.reject,
                   verifier_role=task.verifier_role, branches=tuple(task.branches),
                   expected_duration=expected_duration)


@dataclass(frozen=True)
class Lease:
    """The right to run (``kind="run"``) or verify (``kind="verify"``) one attempt.

    ``token`` is a fencing token, increasing over the scheduler's life: any
    report must carry it, and a report whose lease has been revoked is
    rejected. ``speculative`` lists the uncommitted ``(task, attempt)``
    inputs the attempt was started on (empty: every input was committed).
    For a branch alternative started on a predicted decision it names the
    decider's attempt whose decision was predicted.
    """

    task: str
    attempt: int
    token: int
    agent: str
    expires: float
    speculative: tuple[tuple[str, int], ...] = ()
    kind: str = "run"


@dataclass(frozen=True)
class Commit:
    """Publish ``task``'s ``attempt``: it is verified and all its inputs are committed."""

    task: str
    attempt: int


@dataclass(frozen=True)
class Squash:
    """Abandon ``attempt`` (stop it if running; keep its bundle, marked squashed)."""

    task: str
    attempt: int
    reason: str


@dataclass(frozen=True)
class Requeue:
    """Attempt number ``attempt`` of ``task`` is the next to run, not before ``not_before``.

    It is claimable from then on as soon as its inputs allow (at once, after
    a retry backoff or a refutation; after a flush, when the inputs it needs
    are available again).
    """

    task: str
    attempt: int
    not_before: float
    reason: str


@dataclass(frozen=True)
class Fail:
    """``task`` failed for good at ``attempt`` (retries exhausted or an input failed)."""

    task: str
    attempt: int
    error: str


@dataclass(frozen=True)
class Skip:
    """``task`` will not run: a branch alternative not taken, or only fed by such."""

    task: str
    reason: str


@dataclass(frozen=True)
class Cancel:
    """Tell ``agent`` to stop the work it holds under ``token``; the lease is revoked."""

    agent: str
    task: str
    attempt: int
    token: int


@dataclass(frozen=True)
class RunFinished:
    """Every task is final. ``status`` is ``"succeeded"`` or ``"failed"``. Emitted once."""

    status: str


Action = Union[Commit, Squash, Requeue, Fail, Skip, Cancel, RunFinished]
"""What an event method returns for the runtime to apply, in order."""
