"""The scheduler's one explicit state and the functions that change it.

:class:`RunState` holds everything (task records, leases, queues, counters);
the functions below mutate it and append the resulting actions to a list.
None of them is safe to interleave with another: each event method of
:class:`~headwater.schedule.Scheduler` runs them to completion, atomically,
ending with :func:`propagate`. The policy they implement, and the meaning of
every field, is described in the module docstring of
:mod:`headwater.schedule.scheduler`; this docstring covers the mechanics.

Edge codes and the per-task counters over them are described in
:mod:`headwater.schedule.records`.

Propagation. Any change enters a work heap keyed by topological position;
:func:`propagate` pops tasks in that order, lets each settle (derive its new
state from its counters, commit when it can) and re-publishes its codes,
which updates its children's counters and queues them. Because a child is
always after its parents, each task settles once per wave with final
counters, and no transient state leaks out as an action.

Flushes. Every claimed attempt records the uncommitted ``(task, attempt)``
inputs it was built on, and each of those attempts lists it among its
``dependents``. Closing an attempt (refuted, failed, expired, lost) or
withdrawing a decision first collects the live attempts that transitively
depend on it (:func:`collect`), closes them all, and only then propagates.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from headwater.errors import RunError
from headwater.schedule.depth import SpeculationDepth
from headwater.schedule.graph import Graph
from headwater.schedule.records import (
    COMMITTED,
    FAILED,
    LEASED,
    PENDING,
    PROVISIONAL,
    READY,
    REFUTED,
    SKIPPED,
    SQUASHED,
    VERIFIED,
    WAIT,
    LeaseRecord,
    RunState,
    TaskRecord,
    apply_edge,
    control_code,
    data_code,
    decision,
    need_depth,
)
from headwater.schedule.states import (
    FINAL_STATES,
    LIVE_STATES,
    Action,
    Cancel,
    Commit,
    Fail,
    Lease,
    Requeue,
    Skip,
    Squash,
    State,
)

ALLOWED: dict[State, frozenset[State]] = {
    PENDING: frozenset({READY, SKIPPED, FAILED}),
    READY: frozenset({PENDING, LEASED, SKIPPED, FAILED}),
    LEASED: frozenset({PROVISIONAL, PENDING, FAILED}),
    PROVISIONAL: frozenset({VERIFIED, PENDING, FAILED}),
    VERIFIED: frozenset({COMMITTED, PENDING}),
    COMMITTED: frozenset(),
    REFUTED: frozenset(),
    SQUASHED: frozenset(),
    FAILED: frozenset({SKIPPED, PENDING, READY}),
    SKIPPED: frozenset({PENDING, READY, FAILED}),
}
"""The task-state transitions :func:`transition` accepts. ``LIVE -> PENDING``
is an attempt closing and its successor starting; ``FAILED -> *`` only
happens to a task failed because of an input, never to one that failed on
its own."""


def new_state(graph: Graph, depth: SpeculationDepth, *, predict_history: bool, lease_ttl: float,
              backoff: tuple[float, float, float], max_refutations: int, max_lost: int,
              first_token: int) -> RunState:
    """A fresh state for ``graph``: nothing run, every root task READY."""
    tasks = [
        TaskRecord(
            idx=i, name=graph.names[i], defn=graph.defs[i], key=graph.keys[i], parents=graph.parents[i],
            controller=graph.controller[i], children=graph.children[i], alternatives=graph.alternatives[i],
            n_parents=len(graph.parents[i]) + (graph.controller[i] >= 0),
        )
        for i in range(len(graph.names))
    ]
    st = RunState(graph=graph, tasks=tasks, depth=depth, predict_history=predict_history,
                  lease_ttl=lease_ttl, backoff=backoff, max_refutations=max_refutations,
                  max_lost=max_lost, next_token=first_token)
    rebuild(st)
    return st


# -- the one transition function ----------------------------------------------

def touch(st: RunState, rec: TaskRecord) -> None:
    """Record that ``rec``'s scoreboard entry changed."""
    st.version += 1
    st.dirty.add(rec.idx)


def transition(st: RunState, rec: TaskRecord, new: State) -> None:
    """Move ``rec`` to state ``new``: the only place a task's state changes.

    Checks the move against :data:`ALLOWED`, keeps the final/failed counts,
    puts a task that becomes READY on its ready queue (and invalidates the
    entry of one that stops being READY) and bumps the scoreboard version.
    """
    old = rec.state
    if new is old:
        return
    if new not in ALLOWED[old]:
        raise RunError(f"illegal state transition {old.name} -> {new.name}", task=rec.name)
    rec.state = new
    if old in FINAL_STATES:
        st.n_final -= 1
    if new in FINAL_STATES:
        st.n_final += 1
    if old is FAILED:
        st.n_failed -= 1
    elif new is FAILED:
        st.n_failed += 1
    if new is READY:
        push_ready(st, rec)
    elif old is READY:
        rec.seq += 1
    touch(st, rec)


def push_ready(st: RunState, rec: TaskRecord) -> None:
    """Queue a READY task: on its role's heap, or the delayed heap until ``not_before``."""
    rec.seq += 1
    if rec.not_before > st.now:
        heapq.heappush(st.delayed, (rec.not_before, rec.idx, rec.seq))
        return
    heap = st.ready.setdefault(rec.defn.role, [])
    heapq.heappush(heap, (*rec.key, rec.seq))
    if len(heap) > 4 * len(st.tasks) + 64:
        tasks = st.tasks
        heap[:] = [e for e in heap if tasks[e[2]].state is READY and tasks[e[2]].seq == e[3]]
        heapq.heapify(heap)


def set_bucket(st: RunState, rec: TaskRecord, bucket: int) -> None:
    """File ``rec`` under the depth its claim needs (0: not filed)."""
    if rec.bucket == bucket:
        return
    if rec.bucket:
        del st.deep[rec.bucket][rec.idx]
    if bucket:
        st.deep.setdefault(bucket, {})[rec.idx] = None
    rec.bucket = bucket


def derive(st: RunState, rec: TaskRecord) -> State:
    """The state an unclaimed task should be in, from its edge counters."""
    if rec.pinned or rec.n_reject or (rec.n_parents and rec.n_skip == rec.n_parents):
        return SKIPPED
    if rec.n_fail:
        return FAILED
    if rec.n_wait:
        return PENDING
    need = need_depth(rec)
    if need == 0:
        return READY
    if rec.no_spec or need > st.depth.value:
        return PENDING
    return READY


def enqueue(st: RunState, rec: TaskRecord) -> None:
    """Put ``rec`` in the work heap, to settle and re-publish in the next :func:`propagate`."""
    if not rec.queued:
        rec.queued = True
        heapq.heappush(st.work, st.graph.position[rec.idx])


def _skip_reason(st: RunState, rec: TaskRecord) -> str:
    if rec.pinned:
        return "skipped in the run being resumed"
    if rec.n_reject:
        dec = st.tasks[rec.controller]
        if dec.state is SKIPPED:
            return f"its decider {dec.name!r} was skipped"
        choice, _ = decision(dec)
        how = "is predicted to choose" if dec.state in (PENDING, READY, LEASED) else "chose"
        return f"branch not taken: {dec.name!r} {how} {choice!r}"
    return "every input was skipped"


def _fail_reason(st: RunState, rec: TaskRecord) -> str:
    tasks = st.tasks
    for p in (*rec.parents, rec.controller):
        if p >= 0 and tasks[p].state is FAILED:
            return f"input {tasks[p].name!r} failed"
    return "an input failed"


def settle(st: RunState, rec: TaskRecord, out: list[Action]) -> None:
    """Bring ``rec`` in line with its counters: commit it, or re-derive an unclaimed task's state."""
    s = rec.state
    if s is VERIFIED:
        if not rec.dh_ok:
            commit(st, rec, out)
        return
    if s in LIVE_STATES or s is COMMITTED or rec.error is not None:
        return
    new = derive(st, rec)
    need = need_depth(rec) if new in (READY, PENDING) and not rec.n_wait and not rec.no_spec else 0
    set_bucket(st, rec, need)
    if rec.announce is not None:
        if new is READY or new is PENDING:
            requeue(st, rec, rec.not_before, rec.announce, out)
        rec.announce = None
    if new is s:
        return
    if new is SKIPPED or new is FAILED:
        if rec.dependents:
            squash(st, collect(st, [rec]), f"{rec.name!r} no longer decides", out)
            rec.dependents.clear()
    transition(st, rec, new)
    if new is SKIPPED:
        st.counters["skipped"] += 1
        out.append(Skip(rec.name, _skip_reason(st, rec)))
    elif new is FAILED:
        out.append(Fail(rec.name, rec.attempt, _fail_reason(st, rec)))
    elif s is SKIPPED or s is FAILED:
        was = "skipped" if s is SKIPPED else "failed"
        requeue(st, rec, max(st.now, rec.not_before), f"no longer {was}: the decision it rested on changed", out)


def propagate(st: RunState, out: list[Action]) -> None:
    """Settle and re-publish every queued task, in topological order, until nothing changes."""
    work, tasks, topo = st.work, st.tasks, st.graph.topo
    while work:
        rec = tasks[topo[heapq.heappop(work)]]
        rec.queued = False
        settle(st, rec, out)
        code = data_code(rec)
        if code != rec.published:
            old, rec.published = rec.published, code
            for c, _ in rec.children:
                child = tasks[c]
                apply_edge(child, old, -1)
                apply_edge(child, code, 1)
                enqueue(st, child)
        for a in rec.alternatives:
            alt = tasks[a]
            code = control_code(rec, alt)
            if code != alt.ctrl_code:
                apply_edge(alt, alt.ctrl_code, -1)
                apply_edge(alt, code, 1)
                alt.ctrl_code = code
                enqueue(st, alt)


def rebuild(st: RunState) -> None:
    """Recompute every counter, derived state and queue from the tasks' states (start, restore)."""
    st.deep.clear()
    st.ready.clear()
    st.delayed.clear()
    st.work.clear()
    for rec in st.tasks:
        rec.n_wait, rec.n_fail, rec.n_skip, rec.n_reject = rec.n_parents, 0, 0, 0
        rec.dh_ok.clear()
        rec.dh_sk.clear()
        rec.ctrl_code = rec.published = WAIT
        rec.bucket = 0
        rec.queued = False
    tasks = st.tasks
    for i in st.graph.topo:
        rec = tasks[i]
        if rec.pinned:
            rec.state = SKIPPED
        elif rec.state is not COMMITTED:
            rec.state = derive(st, rec)
            if rec.state in (READY, PENDING) and not rec.n_wait:
                set_bucket(st, rec, need_depth(rec))
        code = data_code(rec)
        for c, _ in rec.children:
            apply_edge(tasks[c], WAIT, -1)
            apply_edge(tasks[c], code, 1)
        rec.published = code
        for a in rec.alternatives:
            alt = tasks[a]
            alt.ctrl_code = control_code(rec, alt)
            apply_edge(alt, WAIT, -1)
            apply_edge(alt, alt.ctrl_code, 1)
    st.n_final = sum(1 for r in tasks if r.state in FINAL_STATES)
    st.n_failed = sum(1 for r in tasks if r.state is FAILED)
    for rec in tasks:
        if rec.state is READY:
            push_ready(st, rec)
    st.version += 1
    st.dirty.update(range(len(tasks)))


def set_depth_limit(st: RunState, old: int, new: int) -> None:
    """After the speculation depth moved from ``old`` to ``new``: queue the tasks it flips."""
    if old == new:
        return
    st.counters["depth_changes"] += 1
    st.version += 1
    for b in range(min(old, new) + 1, max(old, new) + 1):
        for i in list(st.deep.get(b, ())):
            enqueue(st, st.tasks[i])


# -- commits, flushes, retries ------------------------------------------------

def commit(st: RunState, rec: TaskRecord, out: list[Action]) -> None:
    """Publish a VERIFIED attempt whose inputs are all committed."""
    transition(st, rec, COMMITTED)
    rec.dependents.clear()
    st.counters["committed"] += 1
    out.append(Commit(rec.name, rec.attempt))


def collect(st: RunState, roots: Iterable[TaskRecord]) -> list[TaskRecord]:
    """The live attempts built, transitively, on the current attempts of ``roots``, in topological order."""
    tasks = st.tasks
    seen = {r.idx for r in roots}
    found: list[TaskRecord] = []
    stack = list(roots)
    while stack:
        rec = stack.pop()
        for c, attempt in rec.dependents:
            child = tasks[c]
            if c not in seen and child.attempt == attempt and child.state in LIVE_STATES:
                seen.add(c)
                found.append(child)
                stack.append(child)
    position = st.graph.position
    found.sort(key=lambda r: position[r.idx])
    return found


def drop_lease(st: RunState, token: int) -> LeaseRecord | None:
    """Forget a lease (its expiry-heap entry goes stale); return it, or None if unknown."""
    lr = st.leases.pop(token, None)
    if lr is not None:
        held = st.by_agent.get(lr.lease.agent)
        if held is not None:
            held.pop(token, None)
            if not held:
                del st.by_agent[lr.lease.agent]
    return lr


def cancel_lease(st: RunState, token: int, out: list[Action]) -> None:
    """Revoke a live lease and tell its holder with a :class:`Cancel`."""
    lr = drop_lease(st, token)
    if lr is not None:
        st.counters["cancelled"] += 1
        out.append(Cancel(lr.lease.agent, lr.lease.task, lr.lease.attempt, token))


def close_attempt(st: RunState, rec: TaskRecord, outcome: State, out: list[Action]) -> int:
    """End ``rec``'s current attempt as ``outcome`` and start the next one, PENDING.

    Any lease still held on the attempt is revoked with a :class:`Cancel`.
    Returns the closed attempt's number. The caller queues the task.
    """
    if rec.run_token:
        cancel_lease(st, rec.run_token, out)
    for token in list(rec.verifying):
        cancel_lease(st, token, out)
    closed = rec.attempt
    st.closed[(rec.idx, closed)] = outcome
    if outcome is SQUASHED:
        st.counters["squashed"] += 1
    elif outcome is REFUTED:
        st.counters["refuted"] += 1
    rec.run_token = 0
    rec.producer = None
    rec.inputs = ()
    rec.branch = None
    rec.since = None
    rec.dependents = []
    rec.approvals.clear()
    rec.rejections.clear()
    rec.voters.clear()
    rec.verifying.clear()
    rec.attempt = closed + 1
    transition(st, rec, PENDING)
    return closed


def requeue(st: RunState, rec: TaskRecord, not_before: float, reason: str, out: list[Action]) -> None:
    """Announce ``rec``'s current attempt as the next to run, from ``not_before`` on."""
    rec.not_before = not_before
    st.counters["requeued"] += 1
    out.append(Requeue(rec.name, rec.attempt, not_before, reason))


def squash(st: RunState, victims: list[TaskRecord], reason: str, out: list[Action]) -> None:
    """Squash the current attempts of ``victims`` and queue their successors.

    Each successor is announced with a :class:`Requeue` when it settles,
    unless it settles SKIPPED or FAILED.
    """
    for rec in victims:
        attempt = close_attempt(st, rec, SQUASHED, out)
        out.append(Squash(rec.name, attempt, reason))
        rec.not_before = st.now
        rec.announce = reason
        enqueue(st, rec)


def fail_for_good(st: RunState, rec: TaskRecord, attempt: int, error: str, out: list[Action]) -> None:
    """Mark ``rec`` FAILED on its own account (no more attempts); dependents follow on propagation."""
    rec.error = error
    rec.attempt = attempt
    set_bucket(st, rec, 0)
    if rec.state is not FAILED:
        transition(st, rec, FAILED)
    st.counters["failed"] += 1
    out.append(Fail(rec.name, attempt, error))
    enqueue(st, rec)


def abandon(st: RunState, rec: TaskRecord, outcome: State, out: list[Action]) -> tuple[int, list[TaskRecord]]:
    """Close ``rec``'s live attempt as ``outcome``; return its number and the live attempts built on it.

    ``rec`` is left PENDING with its next attempt, queued. The caller
    announces that attempt (or fails the task) and then passes the returned
    victims to :func:`squash`, so the root's actions come before theirs.
    """
    victims = collect(st, [rec])
    attempt = close_attempt(st, rec, outcome, out)
    enqueue(st, rec)
    return attempt, victims


def uncommitted(st: RunState, inputs: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """The entries of ``inputs`` whose task is not committed."""
    tasks = st.tasks
    return tuple(x for x in inputs if tasks[x[0]].state is not COMMITTED)


def skip_basis(st: RunState, rec: TaskRecord, acc: dict[tuple[int, int], None]) -> None:
    """Add to ``acc`` the uncommitted decider attempts that ``rec``'s skip rests on."""
    tasks = st.tasks
    stack, seen = [rec], {rec.idx}
    while stack:
        s = stack.pop()
        if s.pinned or not s.published >> 3:
            continue
        if s.n_reject:
            dec = tasks[s.controller]
            if dec.state is SKIPPED:
                if dec.idx not in seen:
                    seen.add(dec.idx)
                    stack.append(dec)
            else:
                acc[(dec.idx, dec.attempt)] = None
        else:
            for p in s.parents:
                if p not in seen:
                    seen.add(p)
                    stack.append(tasks[p])


def inputs_of(st: RunState, rec: TaskRecord) -> tuple[tuple[int, int], ...]:
    """The uncommitted ``(task, attempt)`` inputs a claim of ``rec`` would build on now."""
    if not rec.dh_ok:
        return ()
    tasks = st.tasks
    acc: dict[tuple[int, int], None] = {}
    for p in rec.parents:
        parent = tasks[p]
        if parent.published >> 3:
            if parent.state is SKIPPED:
                skip_basis(st, parent, acc)
            else:
                acc[(p, parent.attempt)] = None
    if rec.controller >= 0 and rec.ctrl_code >> 3:
        acc[(rec.controller, tasks[rec.controller].attempt)] = None
    position = st.graph.position
    return tuple(sorted(acc, key=lambda x: position[x[0]]))


def new_lease(st: RunState, rec: TaskRecord, agent: str, now: float, kind: str,
              speculative: tuple[tuple[int, int], ...]) -> Lease:
    """Issue a lease with the next fencing token and register it."""
    token = st.next_token
    st.next_token += 1
    names = st.graph.names
    expires = now + st.lease_ttl
    lease = Lease(rec.name, rec.attempt, token, agent, expires,
                  tuple((names[i], a) for i, a in speculative), kind)
    st.leases[token] = LeaseRecord(lease, rec.idx, expires, now)
    st.by_agent.setdefault(agent, {})[token] = None
    heapq.heappush(st.expiry, (expires, token))
    return lease


def needs_verifier(rec: TaskRecord) -> bool:
    """True while a PROVISIONAL attempt has fewer approvals plus verify leases than it needs."""
    return rec.state is PROVISIONAL and len(rec.approvals) + len(rec.verifying) < rec.defn.verify


def offer_verification(st: RunState, rec: TaskRecord) -> None:
    """Put ``rec``'s attempt on its verifier role's queue if it needs verifiers and is not there."""
    if needs_verifier(rec) and rec.vq_attempt != rec.attempt:
        rec.vq_attempt = rec.attempt
        by_producer = st.vqueue.setdefault(rec.defn.verifier_role, {})
        heapq.heappush(by_producer.setdefault(rec.producer or "", []), (*rec.key, rec.attempt))


def backoff_delay(st: RunState, failures: int) -> float:
    """Delay before the retry that follows the ``failures``-th failure."""
    base, factor, cap = st.backoff
    try:
        return min(cap, base * factor ** (failures - 1))
    except OverflowError:
        return cap
