"""The scheduling core of one run: a pure state machine over a DAG of tasks.

Agents pull work. The runtime asks :class:`Scheduler` for leases on an
agent's behalf, reports what came of them (a result, a failure, a verdict,
an expiry, a lost agent) and applies the actions each report returns. There
is no I/O, no clock (every method takes ``now``), no randomness, no thread
and no global: two schedulers fed the same calls return the same answers.

Policy
------

*Attempts.* A task runs as numbered attempts (task instances); the task's
state is its current attempt's (:class:`~headwater.schedule.State`). An
attempt is claimed (LEASED), finishes (PROVISIONAL), is approved by
``verify`` distinct agents other than its producer (VERIFIED) and is
COMMITTED once every input is committed; commits cascade downward. With
``verify=0`` a finished attempt is verified at once. Every attempt that ends
otherwise is closed and the next attempt number is announced with a
:class:`Requeue`; every attempt number is used at most once, so
``(task, attempt)`` names one execution and one bundle.

*Readiness and speculation.* A task is claimable when each data dep is
COMMITTED, or -- with speculation -- PROVISIONAL or VERIFIED, and the
longest chain of uncommitted attempts it would build on is no longer than
the current depth (:mod:`~headwater.schedule.depth`: fixed 0..8 or
adaptive on the refutation rate). A lease's ``speculative`` lists the
uncommitted ``(task, attempt)`` inputs it was built on; a speculatively
started attempt is never committed before all of them are. Claims are served best first: higher ``priority``, then
longer critical path (sum of ``expected_duration`` down the longest path to a
sink), then declaration order; a retry waits on a delayed heap until its
``not_before``.

*Verification.* ``claim_verification`` hands verify leases on PROVISIONAL
attempts that still need approvals, never to the producer, and never to an
agent that holds one on that attempt or has already voted on (or declined)
it; an agent whose verify lease expired may take it again. ``verify``
approvals verify the attempt (other verify leases on it are cancelled);
``reject`` rejections refute it. An attempt is offered only while its
approvals plus open verify leases are fewer than ``verify``.

*Refutation and flush.* A refuted attempt is closed REFUTED, every live
attempt built on it, transitively, is squashed (running ones get a
:class:`Cancel`, all a :class:`Squash`, and each a :class:`Requeue` once it
is known not to be skipped), and the task is re-queued at once as the next
attempt. The same flush follows any attempt that closes early (failed,
expired, lost). Refutations do not spend ``retries``; they have their own
budget, ``max_refutations``, after which the task FAILS.

*Failures.* A failed attempt spends one of ``retries`` and is retried after
``min(cap, base * factor ** (failures - 1))`` seconds. A failure of an
attempt that was built on uncommitted inputs is not charged (the inputs may
be what was wrong): the task is re-run at once and from then on only on
committed inputs. When retries are exhausted the task FAILS, and so does,
transitively, every task that can now never run (a ``Fail`` each, naming
the input); other work goes on, and the run ends ``"failed"``. FAILED is
chosen over SKIPPED for those dependents: they were wanted and could not be
produced.

*Leases.* A lease lasts ``lease_ttl`` from its grant or last ``renew``.
Expiry takes effect in ``expire(now)`` (or at once in ``agent_lost``): a
verify lease is simply freed; a run lease's attempt is squashed (the holder
gets a ``Cancel``) and the task re-queued as a new attempt, without spending
retries but spending ``max_lost`` (expiries and lost agents together).
Until then a late holder's report is still accepted; after, its token is
unknown and the report is rejected as stale (counted in
``counters["stale_results"]``): a task commits once. Every lease revoked
other than by its holder's own report is announced with a ``Cancel``.

*Branches.* A decider's result names one of its ``branches``; a missing or
unknown name fails the attempt (as does a name from a task without
branches). The alternatives not chosen, the alternatives of a skipped
decider, and tasks all of whose inputs are skipped become SKIPPED --
provisionally while the decider is uncommitted: work built on such a skip
records the decider's attempt as an input and counts it in its depth. A
join whose inputs are partly skipped runs on the others. If the decider's attempt is closed, everything built on its
decision is squashed and the alternatives wait for the next decision,
un-skipping the one chosen then. With ``predict="history"`` (and
speculation on) an undecided decider predicts its most frequent past branch
(``note_history``; ties go to the first declared), so its alternatives can
start before it finishes: a prediction counts as one uncommitted ancestor
and the leases name the decider's current attempt. When that attempt
finishes with another branch, closes early, or the prediction changes, the
predicted path is squashed and the right one loaded; when it confirms the
prediction the work stands. An alternative that lists its decider among its
deps depends on its decision only (its outputs, if it reads them, are there
once the decider has finished).

*End.* The run is done when every task is COMMITTED, FAILED or SKIPPED;
the event that gets it there returns :class:`RunFinished` once.

State
-----

All state lives in one :class:`~headwater.schedule.records.RunState`:

* ``graph`` -- the compiled DAG (:mod:`~headwater.schedule.graph`): tasks are
  ints in declaration order, with data parents, controller (decider),
  children, alternatives, topological positions and queue keys;
* ``tasks`` -- one :class:`~headwater.schedule.records.TaskRecord` each: state,
  current attempt, counters over its incoming edges, spent budgets and the
  current attempt's producer, run token, inputs, dependents, branch, votes
  and verify leases;
* ``leases`` (token -> lease), ``by_agent`` (agent -> its tokens) and
  ``expiry`` (heap of ``(expires, token)``, stale entries skipped);
* ``ready`` (role -> heap of ``(-priority, -critical path, index, seq)``),
  ``delayed`` (heap of ``(not_before, index, seq)``) and ``vqueue``
  (verifier role -> producer -> heap of ``(-priority, -critical path, index,
  attempt)``, split by producer so an agent never wades through its own
  work); an entry is valid while its ``seq`` or ``attempt`` is the task's
  current;
* ``deep`` -- depth -> tasks whose inputs are all available but need that
  speculation depth, so a depth change touches only the tasks it flips;
* ``closed`` -- ``(task, attempt) -> REFUTED | SQUASHED | FAILED`` for every
  closed attempt, for :meth:`Scheduler.attempt_state`;
* ``history`` -- decider -> branch -> past count; ``version`` and
  ``dirty`` for the scoreboard; ``counters``.

Costs: ``claim`` and ``finished`` are O(log n) plus the work they cause, and
propagation touches only tasks whose inputs changed, each in O(1) plus its
out-degree; a flush costs the number of attempts it squashes. Nothing scans
all tasks except ``restore`` and a changed scoreboard's dict copy.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType

from headwater.errors import RunError
from headwater.schedule import core as C
from headwater.schedule.depth import SpeculationDepth
from headwater.schedule.graph import compile_graph
from headwater.schedule.records import LeaseRecord, RunState, TaskRecord
from headwater.schedule.scoreboard import Scoreboard, TaskBoard
from headwater.schedule.states import (
    Action,
    Lease,
    RunFinished,
    Squash,
    State,
    TaskDef,
)

PREDICT = ("provisional", "history")
"""Values of ``predict``."""


def _roles(roles: Iterable[str]) -> dict[str, None]:
    """Roles in the order given, without repeats; a lone string is one role."""
    return {roles: None} if isinstance(roles, str) else dict.fromkeys(roles)


class Scheduler:
    """The scheduling core of one run; the module docstring is its design.

    Every event method (``finished``, ``failed``, ``verdict``, ``expire``,
    ``agent_lost``, ``note_history``) mutates the state atomically and
    returns the actions for the runtime to apply, in order. ``claim`` and
    ``claim_verification`` return leases. Queries are cheap and change
    nothing but ``counters["scoreboard_reads"]``.

    Beyond the run's tasks: ``max_refutations`` bounds how often one task may
    be refuted and re-run, ``max_lost`` how often its run lease may expire or
    its agent be lost, before it fails; ``first_token`` is the first fencing
    token issued (a resumed run passes one above every token issued before).
    """

    def __init__(self, tasks: Iterable[TaskDef], *, speculate: int | str = 0, lease_ttl: float = 60.0,
                 backoff: tuple[float, float, float] = (0.5, 2.0, 30.0), predict: str = "provisional",
                 max_refutations: int = 3, max_lost: int = 3, first_token: int = 1) -> None:
        graph = compile_graph(tasks)
        if predict not in PREDICT:
            raise RunError(f"predict must be one of {', '.join(PREDICT)}, got {predict!r}")
        if not (lease_ttl > 0 and math.isfinite(lease_ttl)):
            raise RunError(f"lease_ttl must be a positive number of seconds, got {lease_ttl!r}")
        base, factor, cap = backoff
        if base < 0 or factor < 1 or cap < 0:
            raise RunError(f"backoff must be (base >= 0, factor >= 1, cap >= 0), got {backoff!r}")
        if max_refutations < 0 or max_lost < 0:
            raise RunError("max_refutations and max_lost must be >= 0")
        self._st: RunState = C.new_state(
            graph, SpeculationDepth(speculate), predict_history=predict == "history", lease_ttl=lease_ttl,
            backoff=(float(base), float(factor), float(cap)), max_refutations=max_refutations,
            max_lost=max_lost, first_token=first_token,
        )
        self._entries: dict[str, TaskBoard | None] = dict.fromkeys(graph.names)
        self._board: Scoreboard | None = None

    # -- resume ---------------------------------------------------------------
    def restore(self, committed: Mapping[str, tuple[int, str | None]], skipped: Iterable[str] = (), *,
                attempts: Mapping[str, int] | None = None) -> None:
        """Start from a previous run's results: ``committed`` maps task -> (attempt, branch).

        Those tasks are COMMITTED at that attempt (a decider with that
        decision); ``skipped`` tasks are SKIPPED for good; ``attempts`` gives
        the last attempt number used by other tasks, so new attempts continue
        after it. Must come before any other event; emits no actions (the
        state and scoreboard show the result). Raises :class:`RunError` for
        an unknown task or branch, or a committed task whose inputs are not
        all committed or skipped.
        """
        st = self._st
        if st.started or st.restored:
            raise RunError("restore() must be called once, before any claim or event")
        decided: list[tuple[TaskRecord, int, str | None]] = []
        for name, (attempt, branch) in committed.items():
            rec = self._rec(name)
            if not isinstance(attempt, int) or attempt < 1:
                raise RunError(f"committed attempt must be an int >= 1, got {attempt!r}", task=name)
            if rec.alternatives and branch not in rec.defn.branches:
                raise RunError(f"committed branch {branch!r} is not one of {list(rec.defn.branches)}", task=name)
            if not rec.alternatives and branch is not None:
                raise RunError(f"task has no branches but a committed branch {branch!r}", task=name)
            decided.append((rec, attempt, branch))
        pinned = [self._rec(name) for name in skipped]
        if any(rec.name in committed for rec in pinned):
            raise RunError("task is both committed and skipped", task=next(r.name for r in pinned if r.name in committed))
        used = [(self._rec(name), int(last)) for name, last in (attempts or {}).items()]
        for rec, attempt, branch in decided:
            rec.state, rec.attempt, rec.branch = State.COMMITTED, attempt, branch
        for rec in pinned:
            rec.pinned = True
        for rec, last in used:
            if rec.state is not State.COMMITTED:
                rec.attempt = max(rec.attempt, last + 1)
        C.rebuild(st)
        st.restored = True
        for rec in st.tasks:
            if rec.state is State.COMMITTED and (
                rec.n_wait or rec.n_fail or rec.n_reject or rec.dh_ok or (rec.n_parents and rec.n_skip == rec.n_parents)
            ):
                raise RunError("restored as committed, but its inputs are not all committed (discard this "
                               "scheduler)", task=rec.name)

    def note_history(self, task: str, branch: str, count: int) -> list[Action]:
        """Record that decider ``task`` chose ``branch`` ``count`` times in past runs.

        Replaces an earlier count for the same pair. With ``predict="history"``
        the prediction of an undecided decider may change: work built on the
        old prediction is squashed (returned as actions).
        """
        st = self._st
        rec = self._rec(task)
        if not rec.alternatives:
            raise RunError("task has no branches to predict", task=task)
        if branch not in rec.defn.branches:
            raise RunError(f"branch {branch!r} is not one of {list(rec.defn.branches)}", task=task)
        if not isinstance(count, int) or count < 0:
            raise RunError(f"count must be an int >= 0, got {count!r}", task=task)
        st.history.setdefault(rec.idx, {})[branch] = count
        predicted = self._prediction(rec)
        if predicted == rec.predicted:
            return []
        out: list[Action] = []
        if rec.dependents and rec.state in (State.PENDING, State.READY, State.LEASED):
            C.squash(st, C.collect(st, [rec]), f"prediction for {task!r} changed", out)
            rec.dependents.clear()
        rec.predicted = predicted
        C.enqueue(st, rec)
        return self._end(out)

    def _prediction(self, rec: TaskRecord) -> str | None:
        st = self._st
        if not st.predict_history or st.depth.off:
            return None
        counts = st.history.get(rec.idx, {})
        best, top = None, 0
        for b in rec.defn.branches:
            if counts.get(b, 0) > top:
                best, top = b, counts[b]
        return best

    # -- claims ---------------------------------------------------------------
    def claim(self, agent: str, roles: Iterable[str], now: float, limit: int = 1,
              accept: Callable[[str], bool] | None = None) -> list[Lease]:
        """Run leases on up to ``limit`` READY tasks of ``roles``, best first.

        ``accept``, when given, is asked about each candidate task by name
        (best first) and a task it refuses is passed over and stays READY:
        the shell's constraints on where a task may run (compute pools). It
        must be a pure function of the task name for the duration of the
        call; each refusal costs O(log n).
        """
        st = self._begin(now)
        if limit <= 0:
            return []
        self._release_delayed(now)
        tasks = st.tasks
        heaps = [st.ready[r] for r in _roles(roles) if r in st.ready]
        leases: list[Lease] = []
        passed: list[tuple[list, tuple]] = []
        while len(leases) < limit:
            best = None
            for h in heaps:
                while h and not (tasks[h[0][2]].state is State.READY and tasks[h[0][2]].seq == h[0][3]):
                    heapq.heappop(h)
                if h and (best is None or h[0] < best[0]):
                    best = h
            if best is None:
                break
            entry = heapq.heappop(best)
            if accept is not None and not accept(tasks[entry[2]].name):
                passed.append((best, entry))
                continue
            leases.append(self._lease_run(tasks[entry[2]], agent, now))
        for h, entry in passed:
            heapq.heappush(h, entry)
        return leases

    def claim_task(self, agent: str, roles: Iterable[str], task: str, now: float) -> Lease | None:
        """A run lease on ``task`` itself, if it is READY (and due) and of one of ``roles``; else None.

        For a shell that already knows which task an agent should take next
        (it ran it ahead, straight after the task it depends on); ordering
        among other READY tasks is not consulted.
        """
        st = self._begin(now)
        rec = self._rec(task)
        if rec.state is not State.READY or rec.defn.role not in _roles(roles) or rec.not_before > now:
            return None
        return self._lease_run(rec, agent, now)

    def _lease_run(self, rec: TaskRecord, agent: str, now: float) -> Lease:
        st = self._st
        inputs = C.inputs_of(st, rec)
        lease = C.new_lease(st, rec, agent, now, "run", inputs)
        rec.run_token, rec.producer, rec.inputs = lease.token, agent, inputs
        for i, a in inputs:
            st.tasks[i].dependents.append((rec.idx, rec.attempt))
        C.set_bucket(st, rec, 0)
        C.transition(st, rec, State.LEASED)
        st.counters["claims"] += 1
        if inputs:
            st.counters["speculative_claims"] += 1
        return lease

    def claim_verification(self, agent: str, roles: Iterable[str], now: float, limit: int = 1) -> list[Lease]:
        """Verify leases on up to ``limit`` PROVISIONAL attempts of ``roles`` that need approvals.

        Never on an attempt ``agent`` produced (those queues are not even
        looked at), voted on, declined or already holds a verify lease on
        (those are skipped, O(log n) each). Each pick compares the heads of
        the other producers' queues.
        """
        st = self._begin(now)
        tasks = st.tasks
        pools = [(queues, producer, heap) for r in _roles(roles) if (queues := st.vqueue.get(r))
                 for producer, heap in queues.items() if producer != agent]
        leases: list[Lease] = []
        stash: list[tuple[list, tuple]] = []
        while len(leases) < limit:
            best = None
            for _, _, h in pools:
                while h:
                    rec = tasks[h[0][2]]
                    if rec.attempt == h[0][3] and C.needs_verifier(rec):
                        break
                    if rec.vq_attempt == h[0][3]:
                        rec.vq_attempt = 0
                    heapq.heappop(h)
                if h and (best is None or h[0] < best[0]):
                    best = h
            if best is None:
                break
            entry = heapq.heappop(best)
            rec = tasks[entry[2]]
            if agent == rec.producer or agent in rec.voters or agent in rec.verifying.values():
                stash.append((best, entry))
                continue
            lease = C.new_lease(st, rec, agent, now, "verify", C.uncommitted(st, rec.inputs))
            rec.verifying[lease.token] = agent
            C.touch(st, rec)
            st.counters["verify_claims"] += 1
            leases.append(lease)
            if C.needs_verifier(rec):
                stash.append((best, entry))
            else:
                rec.vq_attempt = 0
        for h, entry in stash:
            heapq.heappush(h, entry)
        for queues, producer, h in pools:
            if not h and queues.get(producer) is h:
                del queues[producer]
        return leases

    def reassign(self, token: int, agent: str, now: float) -> Lease | None:
        """Move a live lease to ``agent`` (work stolen before it started, or a
        backup copy that finished first); the fencing token stays.

        A run lease makes ``agent`` the attempt's producer, so it may not
        verify it; a verify lease is refused (None) when ``agent`` produced
        the attempt, voted on it or holds another verify lease on it. Returns
        the updated lease, or None when the token is not live or the move is
        refused. Renews the lease from ``now``.
        """
        st = self._st
        lr = st.leases.get(token)
        if lr is None:
            return None
        old = lr.lease.agent
        if agent == old:
            return lr.lease
        rec = st.tasks[lr.task]
        if lr.lease.kind == "verify":
            if agent == rec.producer or agent in rec.voters or agent in rec.verifying.values():
                return None
            rec.verifying[token] = agent
        else:
            rec.producer = agent
        held = st.by_agent.get(old)
        if held is not None:
            held.pop(token, None)
            if not held:
                del st.by_agent[old]
        st.by_agent.setdefault(agent, {})[token] = None
        lr.expires = now + st.lease_ttl
        lr.lease = replace(lr.lease, agent=agent, expires=lr.expires)
        heapq.heappush(st.expiry, (lr.expires, token))
        C.touch(st, rec)
        st.counters["reassigned"] += 1
        return lr.lease

    def renew(self, token: int, now: float) -> bool:
        """Extend a live lease to ``now + lease_ttl``; False if it is no longer valid."""
        st = self._st
        lr = st.leases.get(token)
        if lr is None:
            return False
        lr.expires = now + st.lease_ttl
        heapq.heappush(st.expiry, (lr.expires, token))
        return True

    # -- reports --------------------------------------------------------------
    def finished(self, token: int, now: float, *, branch: str | None = None) -> list[Action]:
        """The attempt run under ``token`` succeeded (a decider names its ``branch``)."""
        st = self._begin(now)
        lr = st.leases.get(token)
        if lr is None or lr.lease.kind != "run":
            return self._stale()
        rec = st.tasks[lr.task]
        C.drop_lease(st, token)
        rec.run_token = 0
        out: list[Action] = []
        if rec.alternatives and branch not in rec.defn.branches:
            self._attempt_failed(rec, now, f"branch {branch!r} is not one of {list(rec.defn.branches)}", out)
            return self._end(out)
        if not rec.alternatives and branch is not None:
            self._attempt_failed(rec, now, f"task has no branches but finished with branch {branch!r}", out)
            return self._end(out)
        if rec.dependents and rec.alternatives:
            if branch != rec.predicted:
                st.counters["mispredictions"] += 1
                C.squash(st, C.collect(st, [rec]), f"{rec.name!r} chose {branch!r}, not the predicted "
                                                   f"{rec.predicted!r}", out)
                rec.dependents.clear()
            else:
                st.counters["predictions_confirmed"] += 1
        rec.branch, rec.since = branch, now
        C.transition(st, rec, State.PROVISIONAL)
        if rec.defn.verify == 0:
            C.transition(st, rec, State.VERIFIED)
            st.counters["verified"] += 1
        else:
            C.offer_verification(st, rec)
        C.enqueue(st, rec)
        return self._end(out)

    def failed(self, token: int, now: float, error: str) -> list[Action]:
        """The attempt run under ``token`` failed; on a verify lease, the verifier declines."""
        st = self._begin(now)
        lr = st.leases.get(token)
        if lr is None:
            return self._stale()
        rec = st.tasks[lr.task]
        C.drop_lease(st, token)
        out: list[Action] = []
        if lr.lease.kind == "verify":
            del rec.verifying[token]
            rec.voters.add(lr.lease.agent)
            C.touch(st, rec)
            C.offer_verification(st, rec)
            return self._end(out)
        rec.run_token = 0
        self._attempt_failed(rec, now, error, out)
        return self._end(out)

    def _attempt_failed(self, rec: TaskRecord, now: float, error: str, out: list[Action]) -> None:
        st = self._st
        st.counters["failures"] += 1
        if C.uncommitted(st, rec.inputs):
            st.counters["speculative_failures"] += 1
            attempt, victims = C.abandon(st, rec, State.FAILED, out)
            rec.no_spec = True
            C.requeue(st, rec, now, f"attempt {attempt} failed on uncommitted inputs ({error}); "
                                    "running again on committed inputs", out)
        else:
            rec.failures += 1
            attempt, victims = C.abandon(st, rec, State.FAILED, out)
            if rec.failures > rec.defn.retries:
                C.fail_for_good(st, rec, attempt, error, out)
            else:
                delay = C.backoff_delay(st, rec.failures)
                C.requeue(st, rec, now + delay, f"attempt {attempt} failed: {error}", out)
        C.squash(st, victims, f"built on {rec.name!r} attempt {attempt}, which failed", out)

    def verdict(self, token: int, now: float, approve: bool, reason: str = "") -> list[Action]:
        """A verifier's vote on the attempt its verify lease ``token`` covers."""
        st = self._begin(now)
        lr = st.leases.get(token)
        if lr is None or lr.lease.kind != "verify":
            return self._stale()
        rec = st.tasks[lr.task]
        agent = lr.lease.agent
        C.drop_lease(st, token)
        del rec.verifying[token]
        rec.voters.add(agent)
        C.touch(st, rec)
        out: list[Action] = []
        if approve:
            rec.approvals.add(agent)
            st.counters["approvals"] += 1
            if len(rec.approvals) >= rec.defn.verify:
                for other in list(rec.verifying):
                    C.cancel_lease(st, other, out)
                rec.verifying.clear()
                C.transition(st, rec, State.VERIFIED)
                st.counters["verified"] += 1
                self._observe(False)
                C.enqueue(st, rec)
        else:
            rec.rejections.add(agent)
            st.counters["rejections"] += 1
            if len(rec.rejections) >= rec.defn.reject:
                self._observe(True)
                rec.refutations += 1
                attempt, victims = C.abandon(st, rec, State.REFUTED, out)
                why = f"attempt {attempt} refuted" + (f": {reason}" if reason else "")
                if rec.refutations > st.max_refutations:
                    C.fail_for_good(st, rec, attempt, f"refuted {rec.refutations} times; last {why}", out)
                else:
                    C.requeue(st, rec, now, why, out)
                C.squash(st, victims, f"built on {rec.name!r} attempt {attempt}, which was refuted", out)
        C.offer_verification(st, rec)
        return self._end(out)

    def _observe(self, refuted: bool) -> None:
        st = self._st
        old = st.depth.value
        if st.depth.observe(refuted):
            C.set_depth_limit(st, old, st.depth.value)

    def expire(self, now: float) -> list[Action]:
        """Revoke every lease whose expiry is at or before ``now``."""
        st = self._begin(now)
        out: list[Action] = []
        heap = st.expiry
        while heap and heap[0][0] <= now:
            expires, token = heapq.heappop(heap)
            lr = st.leases.get(token)
            if lr is not None and lr.expires == expires:
                st.counters["expired"] += 1
                self._revoke(lr, "its lease expired", out)
        return self._end(out)

    def agent_lost(self, agent: str, now: float) -> list[Action]:
        """``agent`` is gone: revoke all its leases at once."""
        st = self._begin(now)
        out: list[Action] = []
        for token in sorted(st.by_agent.get(agent, ())):
            lr = st.leases.get(token)
            if lr is not None:
                st.counters["lost"] += 1
                self._revoke(lr, f"its agent {agent!r} was lost", out)
        return self._end(out)

    def _revoke(self, lr: LeaseRecord, why: str, out: list[Action]) -> None:
        st = self._st
        rec = st.tasks[lr.task]
        token = lr.lease.token
        if lr.lease.kind == "verify":
            C.cancel_lease(st, token, out)
            del rec.verifying[token]
            C.touch(st, rec)
            C.offer_verification(st, rec)
            return
        rec.lost += 1
        attempt, victims = C.abandon(st, rec, State.SQUASHED, out)
        out.append(Squash(rec.name, attempt, why))
        if rec.lost > st.max_lost:
            C.fail_for_good(st, rec, attempt, f"{why} ({rec.lost} lost leases)", out)
        else:
            C.requeue(st, rec, st.now, f"attempt {attempt}: {why}", out)
        C.squash(st, victims, f"built on {rec.name!r} attempt {attempt}, whose lease was lost", out)

    # -- plumbing -------------------------------------------------------------
    def _begin(self, now: float) -> RunState:
        st = self._st
        st.now = now
        st.started = True
        return st

    def _end(self, out: list[Action]) -> list[Action]:
        st = self._st
        C.propagate(st, out)
        if not st.reported and st.n_final == len(st.tasks):
            st.reported = True
            out.append(RunFinished(self.status))
        return out

    def _stale(self) -> list[Action]:
        self._st.counters["stale_results"] += 1
        return self._end([])

    def _release_delayed(self, now: float) -> None:
        st = self._st
        tasks = st.tasks
        while st.delayed and st.delayed[0][0] <= now:
            _, i, seq = heapq.heappop(st.delayed)
            rec = tasks[i]
            if rec.state is State.READY and rec.seq == seq:
                C.push_ready(st, rec)

    def _rec(self, task: str) -> TaskRecord:
        i = self._st.graph.index.get(task)
        if i is None:
            raise RunError("no such task in this run", task=task)
        return self._st.tasks[i]

    # -- queries --------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """The earliest lease expiry or retry ``not_before``; None when there is none."""
        st = self._st
        tasks = st.tasks
        while st.expiry:
            expires, token = st.expiry[0]
            lr = st.leases.get(token)
            if lr is not None and lr.expires == expires:
                break
            heapq.heappop(st.expiry)
        while st.delayed:
            _, i, seq = st.delayed[0]
            if tasks[i].state is State.READY and tasks[i].seq == seq:
                break
            heapq.heappop(st.delayed)
        times = [h[0][0] for h in (st.expiry, st.delayed) if h]
        return min(times) if times else None

    def state_of(self, task: str) -> State:
        """The state of ``task``'s current attempt."""
        return self._rec(task).state

    def attempt_of(self, task: str) -> int:
        """``task``'s current attempt number (the committed or failed one, when final)."""
        return self._rec(task).attempt

    def attempt_state(self, task: str, attempt: int) -> State:
        """The state of one attempt: its closing state, or the task's state for the current one."""
        rec = self._rec(task)
        closed = self._st.closed.get((rec.idx, attempt))
        if closed is not None:
            return closed
        if attempt == rec.attempt:
            return rec.state
        raise RunError(f"no attempt {attempt}", task=task)

    def speculation_depth(self) -> int:
        """The current speculation depth limit (see :mod:`~headwater.schedule.depth`)."""
        return self._st.depth.value

    def stragglers(self, now: float, factor: float = 3.0) -> list[Lease]:
        """Run leases held longer than ``factor * expected_duration``; O(live leases)."""
        st = self._st
        found = []
        for lr in st.leases.values():
            if lr.lease.kind == "run" and now - lr.started > factor * st.tasks[lr.task].defn.expected_duration:
                found.append(replace(lr.lease, expires=lr.expires))
        return found

    def scoreboard(self) -> Scoreboard:
        """The current snapshot; the same object until the version moves."""
        st = self._st
        st.counters["scoreboard_reads"] += 1
        if self._board is not None and self._board.version == st.version:
            return self._board
        entries = self._entries
        for i in st.dirty:
            rec = st.tasks[i]
            entries[rec.name] = TaskBoard(
                state=rec.state, attempt=rec.attempt, executing=1 if rec.state is State.LEASED else 0,
                verifying=len(rec.verifying), approvals=len(rec.approvals), rejections=len(rec.rejections),
                required=rec.defn.verify, branch=rec.branch, provisional_since=rec.since,
            )
        st.dirty.clear()
        self._board = Scoreboard(st.version, MappingProxyType(dict(entries)), st.depth.value, self.status)
        return self._board

    @property
    def counters(self) -> dict[str, int]:
        """Event counts; every key of :data:`~headwater.schedule.core.COUNTERS` is present."""
        return self._st.counters

    @property
    def done(self) -> bool:
        """True when every task is COMMITTED, FAILED or SKIPPED."""
        return self._st.n_final == len(self._st.tasks)

    @property
    def status(self) -> str:
        """``"running"``, then ``"succeeded"`` or ``"failed"`` (some task FAILED)."""
        if not self.done:
            return "running"
        return "failed" if self._st.n_failed else "succeeded"
